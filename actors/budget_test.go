package actors_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/crispy-enigma/crispy/actors"
	"github.com/crispy-enigma/crispy/cluster"
	"github.com/crispy-enigma/crispy/cluster/natsserver"
)

// budgetClock is a settable clock shared by the grains of a test node.
type budgetClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *budgetClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *budgetClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// budgetNode is NATS (JetStream on dir) plus a one-member cluster whose grains use clock.
type budgetNode struct {
	js     jetstream.JetStream
	client *actors.Client
	stop   func()
}

func startBudgetNode(t *testing.T, dir string, clock *budgetClock) *budgetNode {
	t.Helper()
	srv, err := natsserver.Start(natsserver.Options{StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := srv.Connect("budget-test")
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	node, err := cluster.Start(ctx, cluster.Options{
		NodeName: "budget",
		Kinds:    actors.Kinds(actors.Deps{JS: js, Now: clock.Now, Logger: zerolog.Nop()}),
		Logger:   zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	n := &budgetNode{js: js, client: actors.NewClient(node.Cluster(), 5*time.Second)}
	n.stop = func() {
		once.Do(func() {
			node.Stop(false)
			nc.Close()
			srv.Shutdown()
		})
	}
	t.Cleanup(n.stop)
	return n
}

// TestBudget shares one node between subtests (a member takes about a second to start); each
// subtest uses its own tenant.
func TestBudget(t *testing.T) {
	clock := &budgetClock{now: time.Date(2026, 1, 31, 22, 0, 0, 0, time.UTC)}
	dir := t.TempDir()
	n := startBudgetNode(t, dir, clock)
	ctx := context.Background()
	var ids atomic.Int64
	newID := func() string { return fmt.Sprintf("r%d", ids.Add(1)) }

	t.Run("500 concurrent reservations against a budget for 100 admit exactly 100", func(t *testing.T) {
		// docs/api.md "Token budgets" (ours): exact under any concurrency.
		lim := actors.TokenBudget{Daily: 1000, Monthly: 100000}
		var admitted atomic.Int32
		var wg sync.WaitGroup
		errs := make(chan error, 500)
		for range 500 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id := newID()
				d, err := n.client.Reserve(ctx, "exact", id, 10, lim)
				if err != nil {
					errs <- err
					return
				}
				if !d.Allowed {
					if d.ResetAt.IsZero() {
						errs <- fmt.Errorf("denied without a reset time: %+v", d)
					}
					return
				}
				admitted.Add(1)
				// Commit exactly the reservation, as a call whose estimate was right.
				if err := n.client.Commit(ctx, "exact", id, 10); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if got := admitted.Load(); got != 100 {
			t.Fatalf("admitted %d of 500, want exactly 100", got)
		}
		st, err := n.client.BudgetStatus(ctx, "exact")
		if err != nil {
			t.Fatal(err)
		}
		if st.DayUsed != 1000 || st.MonthUsed != 1000 || st.Reservations != 0 || st.DayReserved != 0 {
			t.Fatalf("status after the burst = %+v, want 1000 used and nothing reserved", st)
		}
	})

	t.Run("commit charges the actual tokens and frees the rest; release frees all", func(t *testing.T) {
		lim := actors.TokenBudget{Daily: 150}
		a := newID()
		d, err := n.client.Reserve(ctx, "commit", a, 100, lim)
		if err != nil || !d.Allowed || d.DailyRemaining != 50 || d.MonthlyRemaining != -1 {
			t.Fatalf("first reserve = %+v, %v; want allowed, 50 left today, no monthly limit", d, err)
		}
		if d, _ := n.client.Reserve(ctx, "commit", newID(), 100, lim); d.Allowed {
			t.Fatal("100 more admitted while 100 of 150 are reserved")
		}
		if err := n.client.Commit(ctx, "commit", a, 30); err != nil {
			t.Fatal(err)
		}
		b := newID()
		if d, _ := n.client.Reserve(ctx, "commit", b, 100, lim); !d.Allowed || d.DailyRemaining != 20 {
			t.Fatalf("after committing 30 of 100: reserve 100 = %+v, want allowed with 20 left", d)
		}
		if err := n.client.Release(ctx, "commit", b); err != nil {
			t.Fatal(err)
		}
		if d, _ := n.client.Reserve(ctx, "commit", newID(), 120, lim); !d.Allowed || d.DailyRemaining != 0 {
			t.Fatalf("after release: reserve 120 = %+v, want allowed with 0 left", d)
		}
		if d, _ := n.client.Reserve(ctx, "commit", newID(), 1, lim); d.Allowed {
			t.Fatal("a token past the limit was admitted")
		}
	})

	t.Run("a batch of commits charges each tenant once per commit", func(t *testing.T) {
		lim := actors.TokenBudget{Daily: 1000, Monthly: 10000}
		tenants := map[string][]int64{"batch-a": {10, 20, 30}, "batch-b": {5}, "batch-c": {1, 2}}
		for tenant, charges := range tenants {
			var commits []actors.BudgetCommit
			for _, tokens := range charges {
				id := newID()
				if d, err := n.client.Reserve(ctx, tenant, id, 50, lim); err != nil || !d.Allowed {
					t.Fatalf("reserve for %s = %+v, %v", tenant, d, err)
				}
				commits = append(commits, actors.BudgetCommit{ReservationID: id, Actual: tokens})
			}
			batchID := newID()
			for range 2 { // the second send is a retry of the same batch: not charged again
				if err := n.client.CommitBatch(ctx, tenant, batchID, commits); err != nil {
					t.Fatal(err)
				}
			}
		}
		for tenant, charges := range tenants {
			var want int64
			for _, tokens := range charges {
				want += tokens
			}
			st, err := n.client.BudgetStatus(ctx, tenant)
			if err != nil {
				t.Fatal(err)
			}
			if st.DayUsed != want || st.MonthUsed != want || st.Reservations != 0 {
				t.Errorf("%s after its batch = %+v, want %d used and nothing reserved", tenant, st, want)
			}
		}
	})

	t.Run("a forgotten reservation expires", func(t *testing.T) {
		lim := actors.TokenBudget{Daily: 10}
		if d, _ := n.client.Reserve(ctx, "expire", newID(), 10, lim); !d.Allowed {
			t.Fatal("first reserve denied")
		}
		if d, _ := n.client.Reserve(ctx, "expire", newID(), 1, lim); d.Allowed {
			t.Fatal("admitted past a held reservation")
		}
		clock.Set(clock.Now().Add(actors.ReservationTTL))
		if d, _ := n.client.Reserve(ctx, "expire", newID(), 10, lim); !d.Allowed {
			t.Fatalf("after the reservation TTL the budget is still held: %+v", d)
		}
	})

	t.Run("counters roll over at the UTC day and month", func(t *testing.T) {
		clock.Set(time.Date(2026, 2, 27, 23, 0, 0, 0, time.UTC))
		lim := actors.TokenBudget{Daily: 100, Monthly: 150}
		use := func(tokens int64) actors.BudgetDecision {
			t.Helper()
			id := newID()
			d, err := n.client.Reserve(ctx, "roll", id, tokens, lim)
			if err != nil {
				t.Fatal(err)
			}
			if d.Allowed {
				if err := n.client.Commit(ctx, "roll", id, tokens); err != nil {
					t.Fatal(err)
				}
			}
			return d
		}
		if !use(100).Allowed {
			t.Fatal("first 100 denied")
		}
		d := use(1)
		if d.Allowed || !d.ResetAt.Equal(time.Date(2026, 2, 28, 0, 0, 0, 0, time.UTC)) {
			t.Fatalf("over the daily limit: %+v, want denied until the next UTC midnight", d)
		}
		clock.Set(time.Date(2026, 2, 28, 0, 0, 1, 0, time.UTC)) // next day, same month
		if !use(50).Allowed {
			t.Fatal("new day: 50 denied")
		}
		d = use(1)
		if d.Allowed || !d.ResetAt.Equal(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)) || d.MonthlyRemaining != 0 {
			t.Fatalf("over the monthly limit: %+v, want denied until March 1st", d)
		}
		clock.Set(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)) // new month
		if d := use(100); !d.Allowed || d.DailyRemaining != 0 || d.MonthlyRemaining != 50 {
			t.Fatalf("new month: %+v, want allowed with 0 left today and 50 this month", d)
		}
	})

	t.Run("counters survive a restart of NATS and the cluster", func(t *testing.T) {
		clock.Set(time.Date(2026, 4, 10, 12, 0, 0, 0, time.UTC))
		lim := actors.TokenBudget{Daily: 100, Monthly: 1000}
		id := newID()
		if d, _ := n.client.Reserve(ctx, "durable", id, 70, lim); !d.Allowed {
			t.Fatal("reserve denied")
		}
		if err := n.client.Commit(ctx, "durable", id, 70); err != nil {
			t.Fatal(err)
		}
		n.stop()
		n = startBudgetNode(t, dir, clock)
		st, err := n.client.BudgetStatus(ctx, "durable")
		if err != nil {
			t.Fatal(err)
		}
		if st.DayUsed != 70 || st.MonthUsed != 70 || st.Day != "2026-04-10" || st.Month != "2026-04" {
			t.Fatalf("status after restart = %+v, want 70 used on 2026-04-10 / 2026-04", st)
		}
		if d, _ := n.client.Reserve(ctx, "durable", newID(), 31, lim); d.Allowed {
			t.Fatal("after restart: 31 admitted with 70 of 100 used")
		}
		kv, err := n.js.KeyValue(ctx, actors.BucketBudgets)
		if err != nil {
			t.Fatal(err)
		}
		e, err := kv.Get(ctx, "durable.2026-04-10")
		if err != nil || string(e.Value()) != "70" {
			t.Fatalf("KV durable.2026-04-10 = %v, %v; want 70", e, err)
		}
	})
}
