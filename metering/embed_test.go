package metering_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/metering"
	"github.com/crispy-enigma/crispy/store"
	"github.com/crispy-enigma/crispy/test/fixture"
)

// embeddingsUpstream is an OpenAI-compatible /v1/embeddings that reports 7 prompt tokens per text.
func embeddingsUpstream(t *testing.T, calls *atomic.Int64) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		var req struct {
			Input []string `json:"input"`
			Model string   `json:"model"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		type item struct {
			Index     int       `json:"index"`
			Embedding []float32 `json:"embedding"`
		}
		data := make([]item, len(req.Input))
		for i := range data {
			data[i] = item{Index: i, Embedding: []float32{1, float32(i), 0.5}}
		}
		_ = json.NewEncoder(w).Encode(map[string]any{
			"object": "list", "model": req.Model, "data": data,
			"usage": map[string]int{"prompt_tokens": 7 * len(req.Input), "total_tokens": 7 * len(req.Input)},
		})
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/v1"
}

// Embedding calls to an upstream model are metered like chat: the estimate reserved on the budget
// (refused before the call when it does not fit), the reported tokens charged, one model_call
// event each. Local embedders and calls for no tenant are not metered.
func TestMeteredEmbeddings(t *testing.T) {
	js := fixture.JetStream(t)
	grains := fixture.Grains(t, js)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ledger := &memLedger{}
	m := metering.New(metering.Options{Env: config.DefaultEnv(), Limiter: grains, Budget: grains, Ledger: ledger, Logger: zerolog.Nop()})
	var calls atomic.Int64
	router := gateway.NewRouter(gateway.RouterOptions{Meter: m, Providers: []gateway.ProviderConfig{{
		Name: "up", BaseURL: embeddingsUpstream(t, &calls), Embeddings: []string{"up/embed"},
	}}})
	budgeted := tenant(t, "budgeted", `, "tokenBudget": {"daily": 30}`)
	meta := gateway.RequestMeta{TenantID: budgeted.TenantID, Tenant: budgeted, Route: "/ingest"}

	embed := func(model string, meta gateway.RequestMeta, texts ...string) error {
		e, err := router.EmbedderFor(model, meta)
		if err != nil {
			return err
		}
		_, err = e.Embed(ctx, texts)
		return err
	}
	tests := []struct {
		name      string
		model     string
		meta      gateway.RequestMeta
		texts     []string
		wantErr   error
		wantCalls int64
	}{
		{"metered", "up/embed", meta, []string{"one", "two"}, nil, 1},                                        // 14 tokens charged
		{"over budget", "up/embed", meta, []string{string(make([]byte, 80))}, metering.ErrBudgetExceeded, 0}, // an estimate of 88 > 16 left
		{"local model", gateway.DefaultEmbeddingModel, meta, []string{"three"}, nil, 0},
		{"no tenant", "up/embed", gateway.RequestMeta{}, []string{"four"}, nil, 1},
	}
	for _, tt := range tests {
		before := calls.Load()
		err := embed(tt.model, tt.meta, tt.texts...)
		if werr := m.Wait(ctx); werr != nil { // the charge of one step is settled before the next
			t.Fatal(werr)
		}
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.wantErr)
		}
		if got := calls.Load() - before; got != tt.wantCalls {
			t.Errorf("%s: %d upstream calls, want %d", tt.name, got, tt.wantCalls)
		}
	}
	st, err := grains.BudgetStatus(ctx, "budgeted")
	if err != nil {
		t.Fatal(err)
	}
	if st.DayUsed != 14 || st.DayReserved != 0 {
		t.Errorf("budget = %+v, want the 14 reported tokens used and nothing held", st)
	}
	want := map[string]int{store.KindModelCall: 1, store.KindBudgetExceeded: 1}
	if got := ledger.kinds(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ledger events = %v, want %v", got, want)
	}
	ledger.mu.Lock()
	defer ledger.mu.Unlock()
	for _, ev := range ledger.events {
		if ev.Kind == store.KindModelCall && (ev.Model != "up/embed" || ev.TokensIn != 14 || ev.Provider != "up") {
			t.Errorf("model_call event = %+v, want up/embed from provider up with 14 tokens in", ev)
		}
	}
}
