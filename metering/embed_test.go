package metering_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/metering"
	"github.com/crispy-enigma/crispy/store"
	"github.com/crispy-enigma/crispy/test/fixture"
)

// An embedding call is metered like a chat call: its input's estimate is reserved (one that does
// not fit is refused before the model), the embedded tokens are charged, a failed call charges
// nothing, and each call is one model_call event.
func TestBeforeEmbed(t *testing.T) {
	js := fixture.JetStream(t)
	grains := fixture.Grains(t, js)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ledger := &memLedger{}
	m := metering.New(metering.Options{Env: config.DefaultEnv(), Budget: grains, Ledger: ledger, Logger: zerolog.Nop()})
	budgeted := tenant(t, "embedder", `, "tokenBudget": {"daily": 100}`)
	meta := gateway.RequestMeta{TenantID: budgeted.TenantID, Tenant: budgeted, Route: "/v1/embeddings"}

	done, err := m.BeforeEmbed(ctx, meta, gateway.HashEmbedID, []string{"one two three four", "five"})
	if err != nil {
		t.Fatal(err)
	}
	done(ctx, gateway.ModelInfo{}, 20, nil)
	failed, err := m.BeforeEmbed(ctx, meta, gateway.HashEmbedID, []string{"x"})
	if err != nil {
		t.Fatal(err)
	}
	failed(ctx, gateway.ModelInfo{}, 0, errors.New("upstream down"))
	// 20 used + an estimate of 100 input tokens > 100.
	if _, err := m.BeforeEmbed(ctx, meta, gateway.HashEmbedID, []string{strings.Repeat("x", 400)}); !errors.Is(err, metering.ErrBudgetExceeded) {
		t.Fatalf("over budget: %v", err)
	}
	if _, err := m.BeforeEmbed(ctx, gateway.RequestMeta{Route: "/v1/embeddings"}, gateway.HashEmbedID, []string{"x"}); err == nil {
		t.Fatal("an embedding call without a tenant was metered")
	}
	if err := m.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := grains.BudgetStatus(ctx, budgeted.TenantID)
	if err != nil {
		t.Fatal(err)
	}
	if st.DayUsed != 20 || st.DayReserved != 0 {
		t.Errorf("budget = %+v, want the 20 embedded tokens used and nothing held", st)
	}
	if got := ledger.kinds(); got[store.KindModelCall] != 2 || got[store.KindBudgetExceeded] != 1 {
		t.Errorf("ledger events = %v", got)
	}
}
