package metering

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/crispy-enigma/crispy/actors"
)

// ledgerBudget keeps one tenant's daily budget by the Budget grain's rules (used + reserved never
// passes the limit; a commit charges at most its reservation and frees it) and counts what it is
// asked, so the tests can see how many calls reached it.
type ledgerBudget struct {
	mu                     sync.Mutex
	used                   int64
	res                    map[string]int64
	reserves, commits      int
	batches, batchedCommit int
}

func newLedgerBudget() *ledgerBudget { return &ledgerBudget{res: map[string]int64{}} }

func (b *ledgerBudget) reservedLocked() int64 {
	var n int64
	for _, r := range b.res {
		n += r
	}
	return n
}

func (b *ledgerBudget) Reserve(_ context.Context, _, id string, tokens int64, lim actors.TokenBudget) (actors.BudgetDecision, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reserves++
	if b.used+b.reservedLocked()+tokens > lim.Daily {
		return actors.BudgetDecision{DailyRemaining: lim.Daily - b.used - b.reservedLocked(), MonthlyRemaining: -1}, nil
	}
	b.res[id] = tokens
	return actors.BudgetDecision{Allowed: true, DailyRemaining: lim.Daily - b.used - b.reservedLocked(), MonthlyRemaining: -1}, nil
}

func (b *ledgerBudget) commitLocked(id string, actual int64) error {
	r, ok := b.res[id]
	if !ok {
		return fmt.Errorf("commit of unknown reservation %s", id)
	}
	delete(b.res, id)
	b.used += min(actual, r)
	return nil
}

func (b *ledgerBudget) Commit(_ context.Context, _, id string, actual int64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.commits++
	return b.commitLocked(id, actual)
}

func (b *ledgerBudget) Release(_ context.Context, _, id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.res, id)
	return nil
}

func (b *ledgerBudget) CommitBatch(_ context.Context, _, _ string, commits []actors.BudgetCommit) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.batches++
	for _, cm := range commits {
		b.batchedCommit++
		if err := b.commitLocked(cm.ReservationID, cm.Actual); err != nil {
			return err
		}
	}
	return nil
}

func (b *ledgerBudget) state() (used, reserved int64, reserves int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used, b.reservedLocked(), b.reserves
}

// waitCommitted waits until the budget has used tokens charged and nothing reserved: what a lease
// commits in the background.
func waitCommitted(t *testing.T, b *ledgerBudget, used int64, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		u, reserved, _ := b.state()
		if u == used && reserved == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: used %d reserved %d, want %d and 0", what, u, reserved, used)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// leaseCall reserves tokens and, when admitted, commits actual (or releases when actual < 0).
func leaseCall(t *testing.T, b *budgetLeases, id string, tokens, actual int64, lim actors.TokenBudget) bool {
	t.Helper()
	ctx := context.Background()
	d, err := b.Reserve(ctx, "t1", id, tokens, lim)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Allowed {
		return false
	}
	if actual < 0 {
		err = b.Release(ctx, "t1", id)
	} else {
		err = b.Commit(ctx, "t1", id, actual)
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

func TestBudgetLeases(t *testing.T) {
	opts := LeaseOptions{Calls: 8, Life: time.Hour, Headroom: 4}
	big := actors.TokenBudget{Daily: 1_000_000}
	tests := []struct {
		name  string
		lim   actors.TokenBudget
		calls int
		// estimate and actual of each call (actual < 0: released)
		estimate, actual int64
		wantAdmitted     int
		wantUsed         int64
		wantReserves     int
	}{
		// The first call learns the remaining budget on its own; then one lease of 8 estimates
		// takes 8 calls at a time: 1 + ceil(39/8) = 6 reservations for 40 calls.
		{name: "calls charged their estimate share a lease 8 at a time", lim: big, calls: 40, estimate: 10, actual: 10,
			wantAdmitted: 40, wantUsed: 400, wantReserves: 6},
		// What a call does not use goes back to its lease: calls charged 2 of their 10 leave room
		// for the next, so a lease of 80 takes 36 calls (the 36th finds 80-70 free), not 8.
		{name: "unused tokens go back to the lease", lim: big, calls: 40, estimate: 10, actual: 2,
			wantAdmitted: 40, wantUsed: 80, wantReserves: 3},
		{name: "released calls charge nothing", lim: big, calls: 20, estimate: 10, actual: -1,
			wantAdmitted: 20, wantUsed: 0, wantReserves: 2},
		// A call charged above its estimate is charged the estimate, as the grain charges a
		// reservation.
		{name: "a charge above the estimate is capped", lim: big, calls: 9, estimate: 10, actual: 50,
			wantAdmitted: 9, wantUsed: 90, wantReserves: 2},
		// Near the limit (remaining under 4 leases of 80), every call reserves alone, and
		// admission is exact: 300 / 10 = 30 of 50.
		{name: "near the limit every call reserves alone", lim: actors.TokenBudget{Daily: 300}, calls: 50, estimate: 10, actual: 10,
			wantAdmitted: 30, wantUsed: 300, wantReserves: 50},
		// Leases while the remaining budget is at least 4 leases (9 leases, from 990 down to 270
		// remaining), then calls alone; admission stays exact: 100 of 150, 1 + 9 + 77 reservations.
		{name: "leases until the remaining budget is under the headroom", lim: actors.TokenBudget{Daily: 1000}, calls: 150, estimate: 10, actual: 10,
			wantAdmitted: 100, wantUsed: 1000, wantReserves: 87},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inner := newLedgerBudget()
			b := newBudgetLeases(inner, opts, time.Now, zerolog.Nop())
			admitted := 0
			for i := range tc.calls {
				if leaseCall(t, b, fmt.Sprint("r", i), tc.estimate, tc.actual, tc.lim) {
					admitted++
				}
			}
			b.closeAll()
			used, reserved, reserves := inner.state()
			if admitted != tc.wantAdmitted || used != tc.wantUsed || reserved != 0 || reserves != tc.wantReserves {
				t.Fatalf("admitted %d, used %d, reserved %d, %d reservations on the grain; want %d, %d, 0, %d",
					admitted, used, reserved, reserves, tc.wantAdmitted, tc.wantUsed, tc.wantReserves)
			}
		})
	}
}

// A lease is committed when its life ends, without closeAll, once its open calls settled; a
// change of the tenant's limits retires it at once.
func TestBudgetLeaseEnds(t *testing.T) {
	lim := actors.TokenBudget{Daily: 1_000_000}
	t.Run("life", func(t *testing.T) {
		inner := newLedgerBudget()
		b := newBudgetLeases(inner, LeaseOptions{Calls: 8, Life: 20 * time.Millisecond, Headroom: 4}, time.Now, zerolog.Nop())
		leaseCall(t, b, "first", 10, 10, lim) // alone: learns the remaining budget
		leaseCall(t, b, "leased", 10, 7, lim)
		ctx := context.Background()
		if d, err := b.Reserve(ctx, "t1", "open", 10, lim); err != nil || !d.Allowed {
			t.Fatalf("reserve: %+v %v", d, err)
		}
		time.Sleep(60 * time.Millisecond) // past the life: retired, but a call is open
		if used, reserved, _ := inner.state(); used != 10 || reserved != 80 {
			t.Fatalf("a lease with an open call: used %d reserved %d, want 10 and the lease's 80", used, reserved)
		}
		if err := b.Commit(ctx, "t1", "open", 4); err != nil { // the last call commits the lease
			t.Fatal(err)
		}
		if used, reserved, _ := inner.state(); used != 21 || reserved != 0 {
			t.Fatalf("after the lease's last call: used %d reserved %d, want 21 and 0", used, reserved)
		}
		leaseCall(t, b, "later", 10, 10, lim) // a new lease, ended by its life alone
		waitCommitted(t, inner, 31, "an idle lease past its life")
	})
	t.Run("a call that never settles", func(t *testing.T) {
		inner := newLedgerBudget()
		b := newBudgetLeases(inner, LeaseOptions{Calls: 8, Life: 20 * time.Millisecond, Headroom: 4, Hold: 30 * time.Millisecond},
			time.Now, zerolog.Nop())
		leaseCall(t, b, "first", 10, 10, lim)
		leaseCall(t, b, "settled", 10, 6, lim)
		ctx := context.Background()
		if d, err := b.Reserve(ctx, "t1", "lost", 10, lim); err != nil || !d.Allowed {
			t.Fatalf("reserve: %+v %v", d, err)
		}
		// Past the life and the hold, the lease is committed with what its settled call used.
		waitCommitted(t, inner, 16, "a lease holding a call that never settles")
		// The lost call settling after all is charged on its own: the grain no longer knows it
		// (ledgerBudget refuses an unknown reservation, so it reaches the grain as one).
		if err := b.Commit(ctx, "t1", "lost", 5); err == nil {
			t.Fatal("a call of an abandoned lease was settled against the lease, not sent on its own")
		}
	})
	t.Run("limits change", func(t *testing.T) {
		inner := newLedgerBudget()
		b := newBudgetLeases(inner, LeaseOptions{Calls: 8, Life: time.Hour, Headroom: 4}, time.Now, zerolog.Nop())
		leaseCall(t, b, "first", 10, 10, lim)
		leaseCall(t, b, "leased", 10, 10, lim)
		other := actors.TokenBudget{Daily: 2_000_000}
		leaseCall(t, b, "new limits", 10, 10, other)
		b.mu.Lock()
		defer b.mu.Unlock()
		if l := b.tenants["t1"].cur; l == nil || l.lim != other {
			t.Fatalf("after a change of limits the lease is %+v, want one under the new limits", l)
		}
	})
}

// Calls from many goroutines at once share leases and are charged exactly; calls that arrive while
// a lease is being reserved wait for it instead of each reserving one.
func TestBudgetLeasesConcurrent(t *testing.T) {
	inner := newLedgerBudget()
	b := newBudgetLeases(inner, LeaseOptions{Calls: 64, Life: time.Hour, Headroom: 4}, time.Now, zerolog.Nop())
	lim := actors.TokenBudget{Daily: 100_000_000}
	leaseCall(t, b, "first", 10, 10, lim)
	const workers, each = 16, 200
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				leaseCall(t, b, fmt.Sprintf("w%d-%d", w, i), 10, 3, lim)
			}
		})
	}
	wg.Wait()
	b.closeAll()
	used, reserved, reserves := inner.state()
	if want := int64(10 + workers*each*3); used != want || reserved != 0 {
		t.Fatalf("used %d reserved %d, want %d and 0", used, reserved, want)
	}
	// 3,200 calls of which at most 16 hold 10 at once and each keeps 3: a lease of 640 takes
	// about 200; more than a few dozen reservations means calls reserved beside a lease.
	if reserves > 60 {
		t.Fatalf("%d reservations on the grain for %d calls", reserves, workers*each)
	}
}

// Over a budget without batches, CommitBatch commits one by one and a failed commit does not keep
// the rest of the batch from being charged.
func TestBudgetLeasesCommitBatchOneByOne(t *testing.T) {
	inner := newLedgerBudget()
	b := newBudgetLeases(struct{ Budgets }{inner}, LeaseOptions{Calls: 8, Life: time.Hour, Headroom: 4}, time.Now, zerolog.Nop())
	ctx := context.Background()
	lim := actors.TokenBudget{Daily: 1_000_000}
	if d, err := b.Reserve(ctx, "t1", "direct", 10, lim); err != nil || !d.Allowed { // alone: nothing known yet
		t.Fatalf("reserve: %+v %v", d, err)
	}
	err := b.CommitBatch(ctx, "t1", "batch", []actors.BudgetCommit{
		{ReservationID: "unknown", Actual: 3}, // ledgerBudget refuses it
		{ReservationID: "direct", Actual: 7},
	})
	if err == nil {
		t.Fatal("a failed commit of the batch was not reported")
	}
	if used, reserved, _ := inner.state(); used != 7 || reserved != 0 {
		t.Fatalf("after the batch: used %d reserved %d, want 7 and 0", used, reserved)
	}
}
