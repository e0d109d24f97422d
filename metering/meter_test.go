package metering_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/metering"
	"github.com/crispy-enigma/crispy/observe"
	"github.com/crispy-enigma/crispy/store"
	"github.com/crispy-enigma/crispy/test/fixture"
)

// countingModel answers "ok" and reports 10 tokens in and 5 out; it counts its calls.
type countingModel struct{ calls atomic.Int64 }

func (m *countingModel) OpenChat(_ context.Context, req gateway.ChatRequest) (gateway.ChatStream, error) {
	m.calls.Add(1)
	return &onceStream{model: req.Model}, nil
}

type onceStream struct {
	model string
	sent  bool
}

func (s *onceStream) Next(ctx context.Context) (string, error) {
	if s.sent {
		return "", io.EOF
	}
	s.sent = true
	return "ok", ctx.Err()
}
func (s *onceStream) Usage() gateway.Usage { return gateway.Usage{TokensIn: 10, TokensOut: 5} }
func (s *onceStream) Model() string        { return s.model }
func (s *onceStream) Close() error         { return nil }

// memLedger keeps appended events in memory.
type memLedger struct {
	mu     sync.Mutex
	events []store.Event
}

func (l *memLedger) Append(_ context.Context, ev store.Event) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, ev)
	return nil
}

func (l *memLedger) kinds() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int{}
	for _, ev := range l.events {
		k := ev.Kind
		if ev.Cached {
			k += "(cached)"
		}
		out[k]++
	}
	return out
}

func tenant(t *testing.T, id, extra string) *config.TenantConfig {
	t.Helper()
	flags := "{}"
	if strings.Contains(extra, "allowedModels") {
		flags = `{"modelAllowList": true}`
	}
	cfg, _, err := config.ParseTenantConfig(id+".json", []byte(fmt.Sprintf(`{
		"tenantId": %q, "accountId": "acc", "aiGatewayId": "gw",
		"aiModels": {"chat": "local/count", "embeddings": "local/hash-embed"},
		"vectorizeNamespace": %[1]q, "rateLimit": {"perMinute": 1000, "burst": 1000},
		"featureFlags": %s, "allowedHosts": [], "apiKeys": []%s}`, id, flags, extra)))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// Every call through a metered Router is metered the same way, whoever makes it: the model rule,
// the budget (actual tokens charged, an estimate that does not fit refused before the model is
// called), the response cache (a hit calls no model and is not charged) and one model_call event
// per call.
func TestMeteredRouter(t *testing.T) {
	js := fixture.JetStream(t)
	grains := fixture.Grains(t, js)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cache, err := store.OpenTenantKV(ctx, js, store.BucketCache, store.KVOptions{AllowTTL: true})
	if err != nil {
		t.Fatal(err)
	}
	ledger := &memLedger{}
	metrics := observe.NewMetrics()
	m := metering.New(metering.Options{
		Env: config.DefaultEnv(), Limiter: grains, Budget: grains, Cache: cache, Ledger: ledger, Logger: zerolog.Nop(), Metrics: metrics,
	})
	model := &countingModel{}
	router := gateway.NewRouter(gateway.RouterOptions{Local: map[string]gateway.ChatModel{"local/count": model, "local/other": model}, Meter: m})

	budgeted := tenant(t, "budgeted", `, "tokenBudget": {"daily": 100}`)
	cached := tenant(t, "cached", `, "cache": {"ttlSeconds": 60}`)
	allow := tenant(t, "allow", `, "allowedModels": ["local/count"]`)
	call := func(t *config.TenantConfig, model string, maxTokens int, allowCached bool) (string, error) {
		var meta gateway.RequestMeta
		if t != nil {
			meta = gateway.RequestMeta{TenantID: t.TenantID, Tenant: t, Route: "/test", AllowCached: allowCached}
		}
		text, _, _, err := router.Complete(ctx, gateway.ChatRequest{
			Model: model, MaxTokens: maxTokens, Messages: []gateway.Message{{Role: "user", Content: "hello"}}, Meta: meta,
		}, "")
		return text, err
	}
	tests := []struct {
		name      string
		run       func() (string, error)
		wantErr   error // nil: the call succeeds with "ok"
		wantCalls int64 // model calls the step makes
	}{
		{"metered call", func() (string, error) { return call(budgeted, "local/count", 50, false) }, nil, 1},
		// 15 used + an estimate of 2 input + 90 output > 100: refused, the model is not called.
		{"over budget", func() (string, error) { return call(budgeted, "local/count", 90, false) }, metering.ErrBudgetExceeded, 0},
		// An estimate of 2 input + 1 output; the model reports 10 in and its output is capped at 1:
		// charged the 3 reserved, the other 8 counted as the reservation's overrun.
		{"usage above the reservation", func() (string, error) { return call(budgeted, "local/count", 1, false) }, nil, 1},
		{"outside the allow-list", func() (string, error) { return call(allow, "local/other", 0, false) }, metering.ErrModelNotAllowed, 0},
		{"inside the allow-list", func() (string, error) { return call(allow, "local/count", 0, false) }, nil, 1},
		{"cache miss", func() (string, error) { return call(cached, "local/count", 0, true) }, nil, 1},
		{"cache hit", func() (string, error) { return call(cached, "local/count", 0, true) }, nil, 0},
		{"not cacheable", func() (string, error) { return call(cached, "local/count", 0, false) }, nil, 1},
		{"no tenant", func() (string, error) { return call(nil, "local/count", 0, false) }, errors.New("any"), 0},
	}
	for _, tt := range tests {
		before := model.calls.Load()
		text, err := tt.run()
		switch {
		case tt.wantErr == nil && (err != nil || text != "ok"):
			t.Errorf("%s: = %q, %v; want ok", tt.name, text, err)
		case tt.wantErr != nil && err == nil:
			t.Errorf("%s: succeeded, want %v", tt.name, tt.wantErr)
		case tt.wantErr != nil && tt.wantErr.Error() != "any" && !errors.Is(err, tt.wantErr):
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.wantErr)
		}
		if got := model.calls.Load() - before; got != tt.wantCalls {
			t.Errorf("%s: %d model calls, want %d", tt.name, got, tt.wantCalls)
		}
	}
	if err := m.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := grains.BudgetStatus(ctx, "budgeted")
	if err != nil {
		t.Fatal(err)
	}
	if st.DayUsed != 15+3 || st.DayReserved != 0 {
		t.Errorf("budget = %+v, want 15 + 3 tokens of the two metered calls used and nothing held", st)
	}
	if n := testutil.ToFloat64(metrics.BudgetOverrun.WithLabelValues("budgeted")); n != 8 {
		t.Errorf("crispy_budget_overrun_tokens_total = %v, want 8", n)
	}
	// issue 16: crispy_model_first_token_seconds was in the catalogue and never recorded. Each of
	// the 5 calls a model answered records its first token; the cache hit has no model token.
	if n := histogramCount(t, metrics, "crispy_model_first_token_seconds"); n != 5 {
		t.Errorf("crispy_model_first_token_seconds has %d observations, want 5", n)
	}
	want := map[string]int{store.KindModelCall: 5, store.KindModelCall + "(cached)": 1, store.KindBudgetExceeded: 1}
	if got := ledger.kinds(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ledger events = %v, want %v", got, want)
	}
}

// histogramCount sums the sample counts of every series of the named histogram.
func histogramCount(t *testing.T, m *observe.Metrics, name string) uint64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, s := range mf.GetMetric() {
			n += s.GetHistogram().GetSampleCount()
		}
	}
	return n
}

// SelectModels is the one rule: request > MODEL_ID > the tenant's chat model; a fallback outside
// the allow-list, or equal to the primary, is dropped.
func TestSelectModels(t *testing.T) {
	plain := tenant(t, "plain", "")
	plain.AIModels.FallbackChat = "local/fallback"
	listed := tenant(t, "listed", `, "allowedModels": ["local/count", "m1"]`)
	listed.AIModels.FallbackChat = "local/fallback"
	envWith := func(model string) config.Env { e := config.DefaultEnv(); e.ModelID = model; return e }
	tests := []struct {
		name          string
		env           config.Env
		t             *config.TenantConfig
		requested     string
		primary, fall string
		err           error
	}{
		{"tenant's model", config.DefaultEnv(), plain, "", "local/count", "local/fallback", nil},
		{"MODEL_ID overrides the tenant", envWith("m1"), plain, "", "m1", "local/fallback", nil},
		{"the request overrides MODEL_ID", envWith("m1"), plain, "m2", "m2", "local/fallback", nil},
		{"fallback equal to primary is dropped", config.DefaultEnv(), plain, "local/fallback", "local/fallback", "", nil},
		{"allow-listed, fallback outside dropped", config.DefaultEnv(), listed, "m1", "m1", "", nil},
		{"not allow-listed", config.DefaultEnv(), listed, "m2", "", "", metering.ErrModelNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, f, err := metering.SelectModels(tt.env, tt.t, tt.requested)
			if p != tt.primary || f != tt.fall || !errors.Is(err, tt.err) {
				t.Errorf("= %q, %q, %v; want %q, %q, %v", p, f, err, tt.primary, tt.fall, tt.err)
			}
		})
	}
}
