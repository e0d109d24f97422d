package natsserver

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/crispy-enigma/crispy/internal/freeport"
)

// waitJetStream retries AccountInfo until the meta leader is elected.
func waitJetStream(ctx context.Context, t *testing.T, js jetstream.JetStream) {
	t.Helper()
	for {
		// Each attempt gets its own deadline: without a meta leader the request gets no answer.
		attempt, cancel := context.WithTimeout(ctx, time.Second)
		_, err := js.AccountInfo(attempt)
		cancel()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("jetstream not ready: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Three servers given the same route list (each including itself) form one JetStream cluster: a
// replicated bucket written through one server is read through another.
func TestThreeRoutedServersShareJetStream(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	ports := []int{freeport.Port(t), freeport.Port(t), freeport.Port(t)}
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	var srvs []*Server
	for i, p := range ports {
		s, err := Start(Options{StoreDir: t.TempDir(), ServerName: fmt.Sprintf("n%d", i),
			ClusterName: "test", ClusterPort: p, Routes: routes})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Shutdown()
		if got := s.Servers(); got != 3 {
			t.Errorf("server %d: Servers() = %d, want 3 (own route excluded)", i, got)
		}
		if !s.Clustered() {
			t.Errorf("server %d not clustered", i)
		}
		srvs = append(srvs, s)
	}
	var kvs []jetstream.KeyValue
	for i, s := range srvs {
		nc, err := s.Connect(fmt.Sprintf("c%d", i))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		waitJetStream(ctx, t, js)
		var kv jetstream.KeyValue
		for {
			attempt, cancelAttempt := context.WithTimeout(ctx, 2*time.Second)
			kv, err = js.CreateOrUpdateKeyValue(attempt, jetstream.KeyValueConfig{Bucket: "shared", Replicas: 3})
			cancelAttempt()
			if err == nil || ctx.Err() != nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("bucket via server %d: %v", i, err)
		}
		kvs = append(kvs, kv)
	}
	if _, err := kvs[0].Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	e, err := kvs[2].Get(ctx, "k")
	if err != nil || string(e.Value()) != "v" {
		t.Fatalf("read through another server: %v %v", e, err)
	}
	kv, _ := kvs[1].Status(ctx)
	if kv.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.Replicas != 3 {
		t.Fatalf("bucket replicas: %+v", kv)
	}
}

func TestClusteredServerNeedsName(t *testing.T) {
	if _, err := Start(Options{StoreDir: t.TempDir(), ClusterName: "x"}); err == nil {
		t.Fatal("clustered server without a name started")
	}
	if _, err := Start(Options{StoreDir: t.TempDir(), ServerName: "a", ClusterName: "x", Routes: []string{"nats://%zz"}}); err == nil {
		t.Fatal("bad route accepted")
	}
}
