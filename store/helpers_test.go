package store

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/crispy-enigma/crispy/cluster/natsserver"
)

// startNATS starts an embedded NATS server with JetStream on dir and returns a JetStream context on
// an in-process connection, plus a stop function that closes the connection and shuts the server
// down (flushing JetStream to dir). The stop also runs at cleanup; calling it twice is safe.
func startNATS(t testing.TB, dir string) (jetstream.JetStream, func()) {
	t.Helper()
	srv, err := natsserver.Start(natsserver.Options{StoreDir: dir})
	if err != nil {
		t.Fatalf("start nats: %v", err)
	}
	nc, err := srv.Connect(t.Name())
	if err != nil {
		srv.Shutdown()
		t.Fatalf("connect: %v", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		srv.Shutdown()
		t.Fatalf("jetstream: %v", err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		nc.Close()
		srv.Shutdown()
	}
	t.Cleanup(stop)
	return js, stop
}
