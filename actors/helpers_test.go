package actors

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/crispy-enigma/crispy/actors/pb"
	"github.com/crispy-enigma/crispy/cluster/natsserver"
	"github.com/crispy-enigma/crispy/test/probe"
)

func pbRateLimit(perMinute, burst, windowSec, burstWindowSec int32) *pb.RateLimitRequest {
	return &pb.RateLimitRequest{PerMinute: perMinute, Burst: burst, WindowSec: windowSec, BurstWindowSec: burstWindowSec}
}

// fakeClock is a settable clock for retention and rate-limit tests.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// startNATS starts an embedded NATS server with JetStream on dir and returns a JetStream handle
// with the CHAT stream ensured. The server stops when the test ends (or earlier with the returned stop).
func startNATS(t testing.TB, dir string) (jetstream.JetStream, func()) {
	t.Helper()
	srv, err := natsserver.Start(natsserver.Options{StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := srv.Connect("actors-test")
	if err != nil {
		srv.Shutdown()
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() { once.Do(func() { nc.Close(); srv.Shutdown() }) }
	t.Cleanup(stop)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := EnsureStreams(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	return js, stop
}

// settled returns once grain has done what it does after answering: retention's removals, which
// run beside the grain under deps.AfterWork. A bare history read is answered only after what the
// requests before it started (removals are tracked from then on); a removal's report is taken by
// the grain before the removal counts as done, and a removal it starts then is tracked before.
func settled(t testing.TB, deps Deps, p *probe.Probe, grain *actor.PID) {
	t.Helper()
	if h := probe.Ask[*pb.HistoryResponse](t, p, grain, &pb.HistoryRequest{}); h.GetError() != "" {
		t.Fatalf("history: %s", h.GetError())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := deps.AfterWork.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

// chatStreamOf is the CHAT stream (for a test to wrap).
func chatStreamOf(t testing.TB, js jetstream.JetStream) jetstream.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, StreamChat)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// storedCount is the number of messages the CHAT stream really holds for subject.
func storedCount(t testing.TB, js jetstream.JetStream, subject string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := chatStreamOf(t, js).Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects[subject]
}
