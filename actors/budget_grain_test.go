package actors

import (
	"context"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"github.com/crispy-enigma/crispy/actors/pb"
	"github.com/crispy-enigma/crispy/test/probe"
)

// TestBudgetDuplicateActivationCannotOverwrite: during membership churn protoactor can briefly run
// two activations of one tenant's Budget grain (docs/architecture.md). Every
// counter write is conditional on the KV revision the activation last read, so the stale twin's
// write is refused; it re-reads and adds on top, and no charge is lost.
func TestBudgetDuplicateActivationCannotOverwrite(t *testing.T) {
	js, _ := startNATS(t, t.TempDir())
	clock := newFakeClock()
	deps := Deps{JS: js, Now: clock.Now, Logger: zerolog.Nop()}.withDefaults()
	system := actor.NewActorSystem()
	twinA := system.Root.Spawn(budgetProps(deps, "acme"))
	twinB := system.Root.Spawn(budgetProps(deps, "acme"))
	p := probe.New(t, system, 0)
	lim := &pb.BudgetLimits{Daily: 1000, Monthly: 10000}

	reserve := func(twin *actor.PID, id string, n int64) {
		t.Helper()
		r := probe.Ask[*pb.BudgetReserveResponse](t, p, twin, &pb.BudgetReserveRequest{ReservationId: id, Tokens: n, Limits: lim})
		if !r.GetAllowed() || r.GetError() != "" {
			t.Fatalf("reserve %s: %v", id, r)
		}
	}
	commit := func(twin *actor.PID, id string, n int64) {
		t.Helper()
		if r := probe.Ask[*pb.BudgetCommitResponse](t, p, twin, &pb.BudgetCommitRequest{ReservationId: id, Actual: n}); r.GetError() != "" {
			t.Fatalf("commit %s: %s", id, r.GetError())
		}
	}
	// Both twins load the (empty) counters.
	reserve(twinA, "a1", 10)
	reserve(twinB, "b1", 10)
	commit(twinA, "a1", 7)  // A creates the counters
	commit(twinB, "b1", 5)  // B still thinks they do not exist: refused, re-reads, adds
	commit(twinA, "a2", 11) // A is now stale in turn (unknown reservation: charged anyway)

	kv, err := js.KeyValue(context.Background(), BucketBudgets)
	if err != nil {
		t.Fatal(err)
	}
	day, month := periods(clock.Now())
	for _, period := range []string{day, month} {
		e, err := kv.Get(context.Background(), "acme."+period)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(e.Value()); got != "23" {
			t.Errorf("stored counter acme.%s = %s, want 23 (7 + 5 + 11, none overwritten)", period, got)
		}
	}
}

// TestBudgetCommitIsIdempotentPerReservation: a Commit is re-sent when its grain's member leaves
// before answering, possibly after that member wrote it. The re-sent commit, on the same or on a
// new activation (which does not know the reservation), is recognised by its message ID and not
// charged twice; other commits still are.
func TestBudgetCommitIsIdempotentPerReservation(t *testing.T) {
	js, _ := startNATS(t, t.TempDir())
	clock := newFakeClock()
	deps := Deps{JS: js, Now: clock.Now, Logger: zerolog.Nop()}.withDefaults()
	system := actor.NewActorSystem()
	p := probe.New(t, system, 0)
	lim := &pb.BudgetLimits{Daily: 1000, Monthly: 10000}
	commit := func(pid *actor.PID, id string, n int64) {
		t.Helper()
		if r := probe.Ask[*pb.BudgetCommitResponse](t, p, pid, &pb.BudgetCommitRequest{ReservationId: id, Actual: n}); r.GetError() != "" {
			t.Fatalf("commit %s: %s", id, r.GetError())
		}
	}

	first := system.Root.Spawn(budgetProps(deps, "acme"))
	if r := probe.Ask[*pb.BudgetReserveResponse](t, p, first, &pb.BudgetReserveRequest{ReservationId: "r1", Tokens: 50, Limits: lim}); !r.GetAllowed() {
		t.Fatalf("reserve: %v", r)
	}
	commit(first, "r1", 40)
	commit(first, "r1", 40) // re-sent to the same activation
	second := system.Root.Spawn(budgetProps(deps, "acme"))
	commit(second, "r1", 40) // re-sent to a new activation after the member was lost
	commit(second, "r2", 5)  // a different reservation is charged
	commit(first, "r1", 40)  // and the first activation, now stale, still recognises it

	st := probe.Ask[*pb.BudgetStatusResponse](t, p, system.Root.Spawn(budgetProps(deps, "acme")), &pb.BudgetStatusRequest{})
	if st.GetDayUsed() != 45 || st.GetMonthUsed() != 45 {
		t.Errorf("used day %d month %d, want 45 (r1 once, r2)", st.GetDayUsed(), st.GetMonthUsed())
	}
}

func TestBudgetPeriods(t *testing.T) {
	tests := []struct {
		now                   time.Time
		day, month            string
		nextDay, nextMonthStr string
	}{
		{time.Date(2026, 1, 31, 23, 59, 59, 0, time.UTC), "2026-01-31", "2026-01", "2026-02-01", "2026-02-01"},
		{time.Date(2026, 12, 31, 12, 0, 0, 0, time.UTC), "2026-12-31", "2026-12", "2027-01-01", "2027-01-01"},
		// UTC, whatever the caller's zone: 2026-03-01 01:00 in UTC+3 is still February in UTC.
		{time.Date(2026, 3, 1, 1, 0, 0, 0, time.FixedZone("x", 3*3600)), "2026-02-28", "2026-02", "2026-03-01", "2026-03-01"},
	}
	for _, tt := range tests {
		day, month := periods(tt.now)
		if day != tt.day || month != tt.month {
			t.Errorf("periods(%s) = %s, %s; want %s, %s", tt.now, day, month, tt.day, tt.month)
		}
		if got := nextDay(tt.now).Format("2006-01-02"); got != tt.nextDay {
			t.Errorf("nextDay(%s) = %s, want %s", tt.now, got, tt.nextDay)
		}
		if got := nextMonth(tt.now).Format("2006-01-02"); got != tt.nextMonthStr {
			t.Errorf("nextMonth(%s) = %s, want %s", tt.now, got, tt.nextMonthStr)
		}
	}
}

// TestBudgetCommitBatch: a batch applies each commit as Commit would (the actual capped at the
// reservation, an unknown reservation charged anyway, the reservations freed) and writes each period
// once; a batch re-sent under its batch ID, to the same or to a new activation, is not charged
// again, while a new batch is.
func TestBudgetCommitBatch(t *testing.T) {
	js, _ := startNATS(t, t.TempDir())
	clock := newFakeClock()
	deps := Deps{JS: js, Now: clock.Now, Logger: zerolog.Nop()}.withDefaults()
	system := actor.NewActorSystem()
	p := probe.New(t, system, 0)
	lim := &pb.BudgetLimits{Daily: 1000, Monthly: 10000}
	first := system.Root.Spawn(budgetProps(deps, "acme"))
	for id, n := range map[string]int64{"r1": 50, "r2": 30} {
		if r := probe.Ask[*pb.BudgetReserveResponse](t, p, first, &pb.BudgetReserveRequest{ReservationId: id, Tokens: n, Limits: lim}); !r.GetAllowed() {
			t.Fatalf("reserve %s: %v", id, r)
		}
	}
	batch := &pb.BudgetCommitBatchRequest{BatchId: "b1", Commits: []*pb.BudgetCommitRequest{
		{ReservationId: "r1", Actual: 40},
		{ReservationId: "r2", Actual: 100}, // above its reservation: charged 30
		{ReservationId: "r3", Actual: 5},   // unknown: charged to the current period
		{ReservationId: "r4", Actual: 0},   // nothing to charge
	}}
	second := system.Root.Spawn(budgetProps(deps, "acme"))
	steps := []struct {
		name     string
		pid      *actor.PID
		req      *pb.BudgetCommitBatchRequest
		wantUsed int64
	}{
		{"the batch", first, batch, 75},
		{"re-sent to the same activation", first, batch, 75},
		{"re-sent to a new activation", second, batch, 75},
		{"another batch", second, &pb.BudgetCommitBatchRequest{BatchId: "b2", Commits: []*pb.BudgetCommitRequest{{ReservationId: "r5", Actual: 7}}}, 82},
		{"an empty batch", first, &pb.BudgetCommitBatchRequest{BatchId: "b3"}, 82},
	}
	for _, s := range steps {
		if r := probe.Ask[*pb.BudgetCommitResponse](t, p, s.pid, s.req); r.GetError() != "" {
			t.Fatalf("%s: %s", s.name, r.GetError())
		}
		st := probe.Ask[*pb.BudgetStatusResponse](t, p, system.Root.Spawn(budgetProps(deps, "acme")), &pb.BudgetStatusRequest{})
		if st.GetDayUsed() != s.wantUsed || st.GetMonthUsed() != s.wantUsed {
			t.Errorf("%s: used day %d month %d, want %d", s.name, st.GetDayUsed(), st.GetMonthUsed(), s.wantUsed)
		}
	}
	if st := probe.Ask[*pb.BudgetStatusResponse](t, p, first, &pb.BudgetStatusRequest{}); st.GetReservations() != 0 || st.GetDayReserved() != 0 {
		t.Errorf("after the batch: %d reservations holding %d tokens, want none", st.GetReservations(), st.GetDayReserved())
	}
}
