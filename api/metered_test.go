package api

import (
	"context"
	"errors"
	"testing"

	"github.com/crispy-enigma/crispy/gateway"
)

// Model calls made outside /chat (model-backed tools, search rewrites) are metered like /chat's:
// the actual tokens are charged to the tenant's budget, and an estimate that does not fit is
// refused before the model is called.
func TestMeteredModelCalls(t *testing.T) {
	up := newFakeUpstream(t)
	gs := newGatewayServer(t, routerFor(up), withBudget(chatTenant("toolco", "fake/instant"), `{"daily": 200}`))
	metered := gs.Metered(gateway.NewRouter(routerFor(up)))
	req := func(maxTokens int) gateway.ChatRequest {
		return gateway.ChatRequest{
			Model: "fake/instant", MaxTokens: maxTokens,
			Messages: []gateway.Message{{Role: "user", Content: "summarize this"}},
			Meta:     gateway.RequestMeta{TenantID: "toolco", Route: "/tools/execute"},
		}
	}
	ctx := context.Background()
	if _, u, _, err := metered.Complete(ctx, req(100), ""); err != nil || u.TokensIn+u.TokensOut != 59 {
		t.Fatalf("Complete = %+v, %v; want the fake upstream's 59 tokens", u, err)
	}
	st, err := gs.grains.BudgetStatus(ctx, "toolco")
	if err != nil {
		t.Fatal(err)
	}
	if st.DayUsed != 59 || st.DayReserved != 0 {
		t.Fatalf("budget after a metered call = %+v, want 59 used and nothing held", st)
	}
	before := up.calls["fake/instant"]
	// 59 used + an estimate of 4 input + 150 output > 200: refused, and the model is not called.
	if _, _, _, err := metered.Complete(ctx, req(150), ""); !errors.Is(err, ErrBudgetExceeded) {
		t.Fatalf("over budget: err = %v, want ErrBudgetExceeded", err)
	}
	if up.calls["fake/instant"] != before {
		t.Fatal("the model was called although the budget refused the estimate")
	}
	if _, _, _, err := metered.Complete(ctx, gateway.ChatRequest{Model: "fake/instant", Meta: gateway.RequestMeta{TenantID: "nobody"}}, ""); err == nil {
		t.Fatal("a call for an unknown tenant must fail")
	}
}
