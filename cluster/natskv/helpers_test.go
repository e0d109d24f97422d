package natskv

import (
	"context"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/cluster"
	"github.com/crispy-enigma/crispy/cluster/natsserver"
	"github.com/nats-io/nats.go/jetstream"
)

// waitLimit bounds every wait in these tests. It is far above what anything needs (the longest wait
// is one short TTL plus a heartbeat); reaching it means the behaviour is missing, not slow.
const waitLimit = 15 * time.Second

// startNATS starts an embedded NATS server with JetStream for one test and returns a connect
// function giving each caller (each simulated node) its own connection.
func startNATS(t *testing.T) func(name string) jetstream.JetStream {
	t.Helper()
	srv, err := natsserver.Start(natsserver.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatalf("start nats: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	return func(name string) jetstream.JetStream {
		t.Helper()
		nc, err := srv.Connect(name)
		if err != nil {
			t.Fatalf("connect %s: %v", name, err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatalf("jetstream %s: %v", name, err)
		}
		return js
	}
}

// recorder stands in for protoactor's MemberList: it records every published topology as the sorted
// member IDs.
type recorder struct{ updates chan []string }

func newRecorder() *recorder { return &recorder{updates: make(chan []string, 256)} }

func (r *recorder) UpdateClusterTopology(ms cluster.Members) {
	ids := make([]string, 0, len(ms))
	for _, m := range ms {
		ids = append(ids, m.Id)
	}
	sort.Strings(ids)
	r.updates <- ids
}

// next returns the next published topology.
func (r *recorder) next(t *testing.T) []string {
	t.Helper()
	select {
	case ids := <-r.updates:
		return ids
	case <-time.After(waitLimit):
		t.Fatalf("no topology published within %v", waitLimit)
		return nil
	}
}

// until reads published topologies until one equals want.
func (r *recorder) until(t *testing.T, want ...string) {
	t.Helper()
	sort.Strings(want)
	deadline := time.After(waitLimit)
	var last []string
	for {
		select {
		case ids := <-r.updates:
			if slices.Equal(ids, want) {
				return
			}
			last = ids
		case <-deadline:
			t.Fatalf("topology never became [%s] within %v; last [%s]", strings.Join(want, " "), waitLimit, strings.Join(last, " "))
		}
	}
}

// startWatch runs the provider's watch loop against rec, as start does for a cluster, and stops it
// when the test ends.
func startWatch(t *testing.T, p *Provider, self *record, rec *recorder) *watch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	initCtx, cancelInit := context.WithTimeout(ctx, waitLimit)
	defer cancelInit()
	kv, err := p.openBucket(initCtx)
	if err != nil {
		t.Fatal(err)
	}
	w := &watch{p: p, kv: kv, ml: rec, prefix: "c.", self: self, members: map[string]record{}, log: p.log}
	watcher, err := w.snapshot(initCtx, ctx)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.run(ctx, watcher)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return w
}

// remotePorts holds one open listener's port per test: the port put gives every member, so the
// watcher's probe finds the members' remotes alive (a closed port would make them leave at once).
var remotePorts sync.Map // *testing.T → int

// put writes member id's key, as that member's heartbeat does.
func put(t *testing.T, kv jetstream.KeyValue, id string) {
	t.Helper()
	p, ok := remotePorts.Load(t)
	if !ok {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close(); remotePorts.Delete(t) })
		p = ln.Addr().(*net.TCPAddr).Port
		remotePorts.Store(t, p)
	}
	port := p.(int)
	value := []byte(`{"id":"` + id + `","host":"127.0.0.1","port":` + strconv.Itoa(port) + `,"kinds":["k"]}`)
	if _, err := kv.Put(context.Background(), "c."+id, value); err != nil {
		t.Fatalf("put %s: %v", id, err)
	}
}
