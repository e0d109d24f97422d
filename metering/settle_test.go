package metering_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/crispy-enigma/crispy/actors"
	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/metering"
	"github.com/crispy-enigma/crispy/store"
)

// batchBudgets admits every reservation and records the commits it is sent, batched or single.
type batchBudgets struct {
	mu      sync.Mutex
	batches map[string][][]actors.BudgetCommit // tenant → the batches it was sent
	singles int
}

func (b *batchBudgets) Reserve(context.Context, string, string, int64, actors.TokenBudget) (actors.BudgetDecision, error) {
	return actors.BudgetDecision{Allowed: true}, nil
}

func (b *batchBudgets) Commit(context.Context, string, string, int64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.singles++
	return nil
}

func (b *batchBudgets) Release(context.Context, string, string) error { return nil }

func (b *batchBudgets) CommitBatch(_ context.Context, tenantID, batchID string, commits []actors.BudgetCommit) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if batchID == "" {
		return fmt.Errorf("empty batch ID")
	}
	b.batches[tenantID] = append(b.batches[tenantID], commits)
	return nil
}

// batchLedger is a memLedger that also appends batches, and counts them.
type batchLedger struct {
	memLedger
	batches []int // the size of each batch
}

func (l *batchLedger) AppendBatch(ctx context.Context, evs []store.Event) []error {
	l.mu.Lock()
	l.batches = append(l.batches, len(evs))
	l.mu.Unlock()
	for _, ev := range evs {
		_ = l.Append(ctx, ev)
	}
	return nil
}

// The settle work of many calls is written as one batch: their events in one ledger append, their
// budget commits in one request per tenant holding each of the tenant's calls once.
func TestSettleBatchesPerTenant(t *testing.T) {
	ctx := context.Background()
	budgets := &batchBudgets{batches: map[string][][]actors.BudgetCommit{}}
	ledger := &batchLedger{}
	// A window far longer than the test: the batch is written because a batch's worth (128) is queued.
	m := metering.New(metering.Options{Env: config.DefaultEnv(), Budget: budgets, Ledger: ledger, Logger: zerolog.Nop(), SettleWindow: time.Hour})
	router := gateway.NewRouter(gateway.RouterOptions{Local: map[string]gateway.ChatModel{"local/count": &countingModel{}}, Meter: m})
	tenants := []*config.TenantConfig{
		tenant(t, "t1", `, "tokenBudget": {"daily": 1000000}`),
		tenant(t, "t2", `, "tokenBudget": {"daily": 1000000}`),
		tenant(t, "t3", `, "tokenBudget": {"daily": 1000000}`),
		tenant(t, "t4", ""), // no budget: its calls commit nothing
	}
	const calls = 128
	want := map[string]int{}
	for i := range calls {
		tc := tenants[i%len(tenants)]
		if tc.TokenBudget != nil {
			want[tc.TenantID]++
		}
		meta := gateway.RequestMeta{TenantID: tc.TenantID, Tenant: tc, Route: "/test", TraceID: fmt.Sprintf("trace-%d", i)}
		if _, _, _, err := router.Complete(ctx, gateway.ChatRequest{
			Model: "local/count", MaxTokens: 50, Messages: []gateway.Message{{Role: "user", Content: "hello"}}, Meta: meta,
		}, ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	budgets.mu.Lock()
	defer budgets.mu.Unlock()
	if budgets.singles != 0 {
		t.Errorf("%d single commits, want all in batches", budgets.singles)
	}
	for tenantID, n := range want {
		batches := budgets.batches[tenantID]
		if len(batches) != 1 || len(batches[0]) != n {
			t.Errorf("%s: batches %v, want one of %d commits", tenantID, batches, n)
			continue
		}
		seen := map[string]bool{}
		for _, cm := range batches[0] {
			if cm.Actual != 15 || cm.ReservationID == "" || cm.TraceID == "" || seen[cm.ReservationID] {
				t.Errorf("%s: commit %+v, want 15 tokens of a reservation not seen before, with its trace ID", tenantID, cm)
			}
			seen[cm.ReservationID] = true
		}
	}
	if len(budgets.batches) != len(want) {
		t.Errorf("batches sent for %d tenants, want %d", len(budgets.batches), len(want))
	}
	if fmt.Sprint(ledger.batches) != fmt.Sprint([]int{calls}) || ledger.kinds()[store.KindModelCall] != calls {
		t.Errorf("ledger batches %v with %v, want one of %d model_call events", ledger.batches, ledger.kinds(), calls)
	}
}

// blockingLedger holds every Append until released.
type blockingLedger struct {
	memLedger
	release chan struct{}
}

func (l *blockingLedger) Append(ctx context.Context, ev store.Event) error {
	<-l.release
	return l.memLedger.Append(ctx, ev)
}

// Wait waits for the settle work queued before it, until it is written.
func TestWaitWaitsForQueuedWork(t *testing.T) {
	ledger := &blockingLedger{release: make(chan struct{})}
	m := metering.New(metering.Options{Env: config.DefaultEnv(), Ledger: ledger, Logger: zerolog.Nop()})
	m.Record(context.Background(), store.Event{Kind: store.KindSessionCreated, TenantID: "acme", SessionID: "s1"})

	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := m.Wait(short); err == nil {
		t.Fatal("Wait returned while the event's append was held")
	}
	close(ledger.release)
	if err := m.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := ledger.kinds(); got[store.KindSessionCreated] != 1 {
		t.Errorf("after Wait the ledger holds %v, want the session_created event", got)
	}
}
