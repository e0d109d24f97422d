package natskv

import (
	"context"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// entry is a bucket entry for apply; it embeds the interface and overrides what apply reads.
type entry struct {
	jetstream.KeyValueEntry
	key   string
	op    jetstream.KeyValueOp
	value []byte
}

func (e entry) Key() string                     { return e.key }
func (e entry) Operation() jetstream.KeyValueOp { return e.op }
func (e entry) Value() []byte                   { return e.value }

func TestHeartbeatHealth(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var h heartbeatHealth
	if got := h.healthyFor(t0); got != 0 {
		t.Fatalf("new: healthy for %v", got)
	}
	h.record(t0, nil)
	h.record(t0.Add(time.Second), nil)
	if got := h.healthyFor(t0.Add(2 * time.Second)); got != 2*time.Second {
		t.Fatalf("after two writes: %v, want 2s (since the first)", got)
	}
	h.record(t0.Add(3*time.Second), errors.New("no leader"))
	if got := h.healthyFor(t0.Add(4 * time.Second)); got != 0 {
		t.Fatalf("after a failure: %v", got)
	}
	h.record(t0.Add(5*time.Second), nil)
	if got := h.healthyFor(t0.Add(6 * time.Second)); got != time.Second {
		t.Fatalf("after recovery: %v, want 1s", got)
	}
}

// Regression: when the NATS server leading the members bucket dies, nobody can heartbeat until
// JetStream elects a new leader (4–9 s with nats-server's timing, above the TTL), and then every key
// expires at once. A member
// whose own heartbeats were failing must not drop peers on those expiries (protoactor would block
// them forever); a graceful delete still removes a peer at once, and expiry is trusted again after
// a TTL of successful heartbeats.
func TestExpiryIgnoredWhileOwnHeartbeatsFail(t *testing.T) {
	const ttl = time.Second
	tests := []struct {
		name        string
		healthyFor  time.Duration // 0 = heartbeats failing now
		op          jetstream.KeyValueOp
		wantRemoved bool
	}{
		{name: "expiry while failing", op: jetstream.KeyValuePurge, wantRemoved: false},
		{name: "expiry soon after recovery", healthyFor: ttl / 2, op: jetstream.KeyValuePurge, wantRemoved: false},
		{name: "expiry when healthy for a TTL", healthyFor: 2 * ttl, op: jetstream.KeyValuePurge, wantRemoved: true},
		{name: "graceful delete while failing", op: jetstream.KeyValueDelete, wantRemoved: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := New(nil, Options{TTL: ttl, Logger: zerolog.Nop()})
			p.health = &heartbeatHealth{}
			if tt.healthyFor > 0 {
				p.health.record(time.Now().Add(-tt.healthyFor), nil)
			}
			w := &watch{p: p, prefix: "c.", self: &record{ID: "s"}, log: p.log}
			members := map[string]record{"x": {ID: "x"}}
			changed := w.apply(members, entry{key: "c.x", op: tt.op})
			if _, still := members["x"]; still == tt.wantRemoved || changed != tt.wantRemoved {
				t.Fatalf("removed=%v changed=%v, want removed=%v", !still, changed, tt.wantRemoved)
			}
		})
	}
}

// reconcile does not even look at the bucket while expiry is not trusted: its kv is nil here, so a
// lookup would panic.
func TestReconcileWaitsForHealthyHeartbeats(t *testing.T) {
	p := New(nil, Options{TTL: time.Second, Logger: zerolog.Nop()})
	p.health = &heartbeatHealth{}
	w := &watch{p: p, prefix: "c.", self: &record{ID: "s"}, members: map[string]record{"x": {ID: "x"}}, log: p.log}
	if w.reconcile(context.Background()) || len(w.members) != 1 {
		t.Fatalf("reconcile removed members while heartbeats fail: %v", w.members)
	}
}

// A peer whose remote port refuses connections has no process behind it: probe removes it at once,
// even while expiry is not trusted (the members bucket had no leader), and a snapshot read before
// its key expires does not bring it back. A peer that accepts connections stays.
func TestProbeRemovesPeerWhoseRemoteRefuses(t *testing.T) {
	alive, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer alive.Close()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()

	p := New(nil, Options{TTL: time.Second, Logger: zerolog.Nop()})
	p.health = &heartbeatHealth{} // heartbeats failing: expiry not trusted
	w := &watch{p: p, prefix: "c.", self: &record{ID: "s"}, log: p.log, members: map[string]record{
		"up":   {ID: "up", Host: "127.0.0.1", Port: alive.Addr().(*net.TCPAddr).Port},
		"dead": {ID: "dead", Host: "127.0.0.1", Port: deadPort},
	}}
	if !w.probe(context.Background()) {
		t.Fatal("probe reported no change")
	}
	if _, ok := w.members["dead"]; ok {
		t.Error("peer with a refusing remote kept")
	}
	if _, ok := w.members["up"]; !ok {
		t.Error("live peer removed")
	}
	value := []byte(`{"id":"dead","host":"127.0.0.1","port":` + strconv.Itoa(deadPort) + `}`)
	if w.apply(w.members, entry{key: "c.dead", op: jetstream.KeyValuePut, value: value}) {
		t.Error("a late heartbeat of the dead peer brought it back")
	}
}
