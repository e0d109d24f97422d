package actors_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/crispy-enigma/crispy/actors"
	"github.com/crispy-enigma/crispy/cluster"
	"github.com/crispy-enigma/crispy/cluster/natsserver"
	"github.com/crispy-enigma/crispy/test/probe"
)

// env is one node: embedded NATS on a store dir and a one-member cluster hosting the grains.
type env struct {
	js     jetstream.JetStream
	node   *cluster.Node
	client *actors.Client
	after  *actors.AfterWork // what the grains do after answering (retention removals)
	stop   func()
}

func startEnv(t testing.TB, dir string, idle time.Duration) *env {
	t.Helper()
	return startEnvWith(t, dir, actors.Deps{IdleTimeout: idle})
}

// startEnvWith is startEnv with the grains' dependencies (JS and Logger are filled in).
func startEnvWith(t testing.TB, dir string, deps actors.Deps) *env {
	t.Helper()
	if deps.AfterWork == nil {
		deps.AfterWork = &actors.AfterWork{}
	}
	srv, err := natsserver.Start(natsserver.Options{StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := srv.Connect("client-test")
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := actors.EnsureStreams(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	node, err := cluster.Start(ctx, cluster.Options{
		NodeName: "test",
		Kinds:    actors.Kinds(withJS(deps, js)),
		Logger:   zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	e := &env{js: js, node: node, client: actors.NewClient(node.Cluster(), 5*time.Second), after: deps.AfterWork}
	e.stop = func() {
		once.Do(func() {
			node.Stop(false)
			nc.Close()
			srv.Shutdown()
		})
	}
	t.Cleanup(e.stop)
	return e
}

func withJS(d actors.Deps, js jetstream.JetStream) actors.Deps {
	d.JS, d.Logger = js, zerolog.Nop()
	return d
}

func subjectCount(t testing.TB, js jetstream.JetStream, subject string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, actors.StreamChat)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects[subject]
}

func contents(msgs []actors.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.Content
	}
	return out
}

// TestClient shares one node between subtests: a cluster member takes about a second to start.
func TestClient(t *testing.T) {
	e := startEnv(t, t.TempDir(), 0)
	ctx := context.Background()

	t.Run("N parallel Allow calls admit exactly the limit", func(t *testing.T) {
		lim := actors.RateLimit{PerMinute: 20, Burst: 20, WindowSec: 60, BurstWindowSec: 60}
		var allowed atomic.Int32
		var wg sync.WaitGroup
		errs := make(chan error, 100)
		for range 100 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d, err := e.client.Allow(ctx, "acme", "exact-user", lim)
				if err != nil {
					errs <- err
					return
				}
				if d.Allowed {
					allowed.Add(1)
				} else if d.Remaining != 0 || d.RetryAfter <= 0 {
					errs <- fmt.Errorf("denied decision %+v: want remaining 0 and a retry-after", d)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if got := allowed.Load(); got != 20 {
			t.Fatalf("admitted %d of 100, want exactly 20", got)
		}
	})

	t.Run("history order under 50 concurrent appends to one session", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 50)
		for i := range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- e.client.Append(ctx, "acme", "busy", []actors.Message{
					{Role: "user", Content: fmt.Sprintf("q%d", i)},
					{Role: "assistant", Content: fmt.Sprintf("a%d", i)},
				}, actors.Retention{})
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		msgs, err := e.client.History(ctx, "acme", "busy", actors.Retention{}, 0, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != 100 {
			t.Fatalf("history has %d messages, want 100", len(msgs))
		}
		seen := map[string]bool{}
		for i := 0; i < len(msgs); i += 2 {
			q, a := msgs[i], msgs[i+1]
			if q.Role != "user" || a.Role != "assistant" || "a"+q.Content[1:] != a.Content {
				t.Fatalf("messages %d,%d = %q,%q: a batch was interleaved", i, i+1, q.Content, a.Content)
			}
			if seen[q.Content] {
				t.Fatalf("%s stored twice", q.Content)
			}
			seen[q.Content] = true
			if i > 0 && q.Timestamp.Before(msgs[i-1].Timestamp) {
				t.Fatalf("timestamps go backwards at %d", i)
			}
		}
		if n := subjectCount(t, e.js, "chat.acme.busy"); n != 50 {
			t.Fatalf("stream holds %d, want 50 (one per exchange)", n)
		}
	})

	t.Run("retention by cap removes from the stream", func(t *testing.T) {
		r := actors.Retention{MaxAge: 30 * 24 * time.Hour, MaxMessages: 4}
		for i := range 6 {
			if err := e.client.Append(ctx, "acme", "capped", []actors.Message{{Role: "user", Content: fmt.Sprint(i)}}, r); err != nil {
				t.Fatal(err)
			}
		}
		msgs, err := e.client.History(ctx, "acme", "capped", r, 0, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"2", "3", "4", "5"}, contents(msgs)); diff != "" {
			t.Fatalf("(-want +got):\n%s", diff)
		}
		// The removals run beside the grain: once a second read is answered, those the first
		// started are tracked.
		if _, err := e.client.History(ctx, "acme", "capped", r, 0, time.Time{}); err != nil {
			t.Fatal(err)
		}
		if err := e.after.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		if n := subjectCount(t, e.js, "chat.acme.capped"); n != 4 {
			t.Fatalf("stream holds %d, want 4", n)
		}
	})

	t.Run("clear and cross-tenant isolation", func(t *testing.T) {
		for _, tenant := range []string{"acme", "globex"} {
			if err := e.client.Append(ctx, tenant, "shared-id", []actors.Message{{Role: "user", Content: "from " + tenant}}, actors.Retention{}); err != nil {
				t.Fatal(err)
			}
		}
		for _, tenant := range []string{"acme", "globex"} {
			msgs, err := e.client.History(ctx, tenant, "shared-id", actors.Retention{}, 0, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]string{"from " + tenant}, contents(msgs)); diff != "" {
				t.Fatalf("tenant %s sees (-want +got):\n%s", tenant, diff)
			}
		}
		if err := e.client.Clear(ctx, "acme", "shared-id"); err != nil {
			t.Fatal(err)
		}
		msgs, err := e.client.History(ctx, "acme", "shared-id", actors.Retention{}, 0, time.Time{})
		if err != nil || len(msgs) != 0 {
			t.Fatalf("acme after clear: %v %v", contents(msgs), err)
		}
		if n := subjectCount(t, e.js, "chat.acme.shared-id"); n != 0 {
			t.Fatalf("stream holds %d after clear", n)
		}
		msgs, err = e.client.History(ctx, "globex", "shared-id", actors.Retention{}, 0, time.Time{})
		if err != nil || len(msgs) != 1 {
			t.Fatalf("globex lost its session to acme's clear: %v %v", contents(msgs), err)
		}
	})

	t.Run("invalid IDs and a cancelled context are refused", func(t *testing.T) {
		if err := e.client.Append(ctx, "Acme", "s", nil, actors.Retention{}); !errors.Is(err, actors.ErrInvalidID) {
			t.Errorf("uppercase tenant: %v", err)
		}
		if _, err := e.client.History(ctx, "acme", "a.b", actors.Retention{}, 0, time.Time{}); !errors.Is(err, actors.ErrInvalidID) {
			t.Errorf("session with a dot: %v", err)
		}
		if _, err := e.client.Allow(ctx, "acme", "", actors.RateLimit{PerMinute: 1}); !errors.Is(err, actors.ErrInvalidID) {
			t.Errorf("empty user: %v", err)
		}
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		if err := e.client.Clear(cancelled, "acme", "s"); !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled ctx: %v", err)
		}
	})
}

// TestPassivationAndReactivationKeepHistory: an idle ChatSession stops itself and comes back from
// JetStream with its history on the next request.
func TestPassivationAndReactivationKeepHistory(t *testing.T) {
	e := startEnv(t, t.TempDir(), 100*time.Millisecond)
	ctx := context.Background()
	if err := e.client.Append(ctx, "acme", "sleepy", []actors.Message{{Role: "user", Content: "remember me"}}, actors.Retention{}); err != nil {
		t.Fatal(err)
	}
	c := e.node.Cluster()
	first := c.Get("acme:sleepy", actors.KindChatSession)
	p := probe.New(t, c.ActorSystem, 10*time.Second)
	p.Watch(first)
	probe.Expect[*actor.Terminated](t, p) // passivated after the idle timeout

	msgs, err := e.client.History(ctx, "acme", "sleepy", actors.Retention{}, 0, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"remember me"}, contents(msgs)); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	if second := c.Get("acme:sleepy", actors.KindChatSession); second.Equal(first) {
		t.Fatalf("same PID %v after passivation: the grain did not stop", second)
	}
}

// TestRestartKeepsHistory stops the whole node (cluster and NATS) and starts a new one on the same
// store directory.
func TestRestartKeepsHistory(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	e := startEnv(t, dir, 0)
	want := []actors.Message{
		{Role: "user", Content: "before restart", Timestamp: time.UnixMilli(1_700_000_000_000), TokenCount: 3},
		{Role: "assistant", Content: "noted", Timestamp: time.UnixMilli(1_700_000_000_500), TokenCount: 1},
	}
	if err := e.client.Append(ctx, "acme", "durable", want, actors.Retention{}); err != nil {
		t.Fatal(err)
	}
	e.stop()

	e2 := startEnv(t, dir, 0)
	got, err := e2.client.History(ctx, "acme", "durable", actors.Retention{}, 0, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("history after restart (-want +got):\n%s", diff)
	}
}
