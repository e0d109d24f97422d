package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/metering"
	"github.com/crispy-enigma/crispy/observe"
	"github.com/crispy-enigma/crispy/store"
)

// gatewayServer is the API with the whole AI-gateway bookkeeping on, over real parts: embedded
// NATS, the grains (Budget included), the `cache` KV bucket, the LEDGER stream and its projector
// into SQLite files in a temp dir.
type gatewayServer struct {
	*testServer
	dbs *store.TenantDBs
}

func newGatewayServer(t testing.TB, models gateway.RouterOptions, tenants ...string) *gatewayServer {
	t.Helper()
	grains, js := startGrains(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cache, err := store.OpenTenantKV(ctx, js, store.BucketCache, store.KVOptions{AllowTTL: true})
	if err != nil {
		t.Fatal(err)
	}
	ledger, err := store.OpenLedger(ctx, js, store.LedgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dbs := store.OpenTenantDBs(t.TempDir())
	t.Cleanup(func() { dbs.Close() })
	proj := store.NewProjector(js, dbs, store.ProjectorOptions{Durable: "projector-test", RetryDelay: 50 * time.Millisecond})
	if err := proj.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proj.Stop)

	env := config.DefaultEnv()
	env.NodeName, env.Environment, env.MaxRequestBodySize = "test", "test", 4096
	env.MaxInflightPerTenant = 1000 // the concurrency tests send 500 requests at once
	metrics := observe.NewMetrics()
	mt := metering.New(metering.Options{
		Env: env, Limiter: grains, Budget: grains, Cache: cache, Ledger: ledger, Metrics: metrics, Logger: zerolog.Nop(),
		BudgetLease: metering.DefaultBudgetLease,
	})
	models.Meter = mt
	router := gateway.NewRouter(models)
	srv, err := New(Deps{
		Env: env, Tenants: testTenants(t, tenants...), Logger: zerolog.Nop(), Metrics: metrics, Version: "test",
		Meter:  mt,
		Chat:   &ChatDeps{Sessions: grains, Models: router},
		OpenAI: &OpenAIDeps{Models: router, Sessions: grains},
		Usage:  dbs,
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return &gatewayServer{
		testServer: &testServer{Server: srv, URL: hs.URL, http: hs, grains: grains, metrics: metrics, mt: mt},
		dbs:        dbs,
	}
}

// exactModel answers "ok" at once and reports as usage exactly docs/api.md's estimate of the input
// plus maxTokens as output: its calls cost what the budget reserved, so a budget admits a known
// number of them however they interleave.
type exactModel struct{ calls atomic.Int64 }

func (m *exactModel) OpenChat(_ context.Context, req gateway.ChatRequest) (gateway.ChatStream, error) {
	m.calls.Add(1)
	in := 0
	for _, msg := range req.Messages {
		in += gateway.EstimateTokens(msg.Content)
	}
	return &exactStream{model: req.Model, usage: gateway.Usage{TokensIn: in, TokensOut: req.MaxTokens}}, nil
}

type exactStream struct {
	model string
	usage gateway.Usage
	sent  bool
}

func (s *exactStream) Next(ctx context.Context) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if s.sent {
		return "", io.EOF
	}
	s.sent = true
	return "ok", nil
}

func (s *exactStream) Usage() gateway.Usage { return s.usage }
func (s *exactStream) Model() string        { return s.model }
func (s *exactStream) Close() error         { return nil }

func withBudget(tenant, budget string) string {
	return strings.Replace(tenant, `"apiKeys": []`, `"apiKeys": [], "tokenBudget": `+budget, 1)
}

func errorCode(t testing.TB, body []byte) string {
	t.Helper()
	var env struct {
		Error struct{ Code string } `json:"error"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatalf("not an envelope: %s", body)
	}
	return env.Error.Code
}

// TestChatBudgetExactUnderConcurrency is docs/api.md "Token budgets" (ours: "exact under any
// concurrency"): 500 concurrent POST /chat, each request estimated at 10 (message "hello" =
// ceil(5/4) = 2 input + maxTokens 8) and charged exactly that. Against a daily budget of 1000
// tokens exactly 100 are admitted (near the limit every call reserves on the Budget grain); the
// other 400 get 429 budget_exceeded with the rate-limit headers, and the model is called exactly
// 100 times. Against a large budget all 500 are admitted from the node's budget leases, and once
// settled the grain holds exactly their charges and nothing reserved.
func TestChatBudgetExactUnderConcurrency(t *testing.T) {
	tests := []struct {
		name, budget string
		admitted     int32
	}{
		{"near the limit", `{"daily": 1000, "monthly": 5000}`, 100},
		{"from leases", `{"daily": 100000000, "monthly": 500000000}`, 500},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			model := &exactModel{}
			gs := newGatewayServer(t, gateway.RouterOptions{Local: map[string]gateway.ChatModel{"local/exact": model}},
				withBudget(chatTenant("budgeted", "local/exact"), tc.budget))
			client := benchClient()
			var admitted, rejected atomic.Int32
			errs := make(chan error, 500)
			var wg sync.WaitGroup
			for i := range 500 {
				wg.Go(func() {
					body := fmt.Sprintf(`{"message":"hello","sessionId":"b-%d","stream":false,"maxTokens":8}`, i)
					resp, err := benchPost(client, gs.URL+"/chat", "budgeted", body)
					if err != nil {
						errs <- err
						return
					}
					raw, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					switch {
					case resp.StatusCode == 200 && resp.Header.Get("x-tokens-total") == "10":
						admitted.Add(1)
					case resp.StatusCode == 429 && errorCode(t, raw) == CodeBudgetExceeded &&
						resp.Header.Get("x-ratelimit-limit") != "" && resp.Header.Get("Retry-After") != "":
						rejected.Add(1)
					default:
						errs <- fmt.Errorf("status %d headers %v: %s", resp.StatusCode, resp.Header, raw)
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if a, r := admitted.Load(), rejected.Load(); a != tc.admitted || r != 500-tc.admitted {
				t.Fatalf("admitted %d, rejected %d; want exactly %d and %d", a, r, tc.admitted, 500-tc.admitted)
			}
			if n := model.calls.Load(); n != int64(tc.admitted) {
				t.Fatalf("model called %d times, want %d: a rejected request must not reach the model", n, tc.admitted)
			}
			waitSettled(t, gs.mt) // budget commits (and the leases') run after the responses
			st, err := gs.grains.BudgetStatus(context.Background(), "budgeted")
			if err != nil {
				t.Fatal(err)
			}
			if want := int64(tc.admitted) * 10; st.DayUsed != want || st.DayReserved != 0 || st.Reservations != 0 {
				t.Fatalf("budget after the burst = %+v, want %d used, nothing held", st, want)
			}
		})
	}
}

// TestChatBudgetChargesActualTokens: the reservation is the estimate, but the charge is the
// provider's usage (fakeUpstream reports 42 + 17 = 59); a failed call is released, not charged; a
// tenant without tokenBudget never touches the grain.
func TestChatBudgetChargesActualTokens(t *testing.T) {
	up := newFakeUpstream(t)
	gs := newGatewayServer(t, routerFor(up),
		withBudget(chatTenant("metered", "fake/instant"), `{"daily": 200}`),
		chatTenant("unmetered", "fake/instant"))
	used := func() int64 {
		t.Helper()
		waitSettled(t, gs.mt) // budget commits run after the responses
		st, err := gs.grains.BudgetStatus(context.Background(), "metered")
		if err != nil {
			t.Fatal(err)
		}
		if st.DayReserved != 0 {
			t.Fatalf("a finished request still holds %d tokens", st.DayReserved)
		}
		return st.DayUsed
	}
	// Estimate: "hi" = 1 input token + maxTokens 100 = 101.
	body := `{"message":"hi","stream":false,"maxTokens":100}`
	resp, _ := gs.jsonChat(t, body, "x-tenant-id: metered")
	if resp.Header.Get("x-tokens-total") != "59" || used() != 59 {
		t.Fatalf("after one call: x-tokens-total %s, budget used %d; want 59 charged (the actual, not the estimate 101)",
			resp.Header.Get("x-tokens-total"), used())
	}
	// 59 + 101 = 160 ≤ 200: admitted only because the actual, not the estimate, was charged.
	gs.jsonChat(t, body, "x-tenant-id: metered")
	if used() != 118 {
		t.Fatalf("after two calls: used %d, want 118", used())
	}
	// A model that fails before its first token is released: nothing charged.
	resp, raw := gs.do(t, "POST", "/chat", `{"message":"hi","stream":false,"maxTokens":50,"modelId":"fake/fail"}`, "x-tenant-id: metered")
	if resp.StatusCode != 502 || used() != 118 {
		t.Fatalf("failed call: status %d (%s), used %d; want 502 and still 118", resp.StatusCode, raw, used())
	}
	// 118 + 101 = 219 > 200: denied before any model call.
	before := up.callsTo("fake/instant")
	resp, raw = gs.do(t, "POST", "/chat", body, "x-tenant-id: metered")
	if resp.StatusCode != 429 || errorCode(t, raw) != CodeBudgetExceeded || up.callsTo("fake/instant") != before {
		t.Fatalf("over budget: status %d %s, upstream calls %d → %d; want 429 budget_exceeded and no call",
			resp.StatusCode, raw, before, up.callsTo("fake/instant"))
	}
	if resp.Header.Get("x-ratelimit-remaining") == "" {
		t.Fatal("a budget rejection must still carry the rate-limit headers")
	}
	// No tokenBudget: the same request is never refused for budget.
	for range 3 {
		gs.jsonChat(t, body, "x-tenant-id: unmetered")
	}
}

// TestChatResponseCache: identical non-streamed requests are answered from the cache within the
// tenant's cache.ttlSeconds, marked x-cache, never across tenants, and not charged as model tokens.
func TestChatResponseCache(t *testing.T) {
	up := newFakeUpstream(t)
	cached := func(id string) string {
		return strings.Replace(chatTenant(id, "fake/echo"), `"apiKeys": []`, `"apiKeys": [], "cache": {"ttlSeconds": 60}`, 1)
	}
	gs := newGatewayServer(t, routerFor(up), cached("cache-a"), cached("cache-b"), chatTenant("nocache", "fake/echo"))

	ask := func(tenant, session, message string) (*http.Response, chatData) {
		t.Helper()
		return gs.jsonChat(t, fmt.Sprintf(`{"message":%q,"sessionId":%q,"stream":false}`, message, session), "x-tenant-id: "+tenant)
	}
	resp, first := ask("cache-a", "s1", "what is  up")
	if resp.Header.Get("x-cache") != "MISS" || first.Message != "echo: what is  up" {
		t.Fatalf("first request: x-cache %q, message %q; want MISS and the model's answer", resp.Header.Get("x-cache"), first.Message)
	}
	calls := up.callsTo("fake/echo")

	// Same messages (whitespace-normalized) in a fresh session of the same tenant: a HIT.
	resp, second := ask("cache-a", "s2", " what is up ")
	if resp.Header.Get("x-cache") != "HIT" || second.Message != first.Message || up.callsTo("fake/echo") != calls {
		t.Fatalf("identical request: x-cache %q, message %q, upstream calls %d → %d; want a HIT without a model call",
			resp.Header.Get("x-cache"), second.Message, calls, up.callsTo("fake/echo"))
	}
	if resp.Header.Get("x-tokens-total") != "0" || resp.Header.Get("x-model-id") != "fake/echo" {
		t.Fatalf("a HIT uses no model tokens: x-tokens-total %q, x-model-id %q", resp.Header.Get("x-tokens-total"), resp.Header.Get("x-model-id"))
	}
	// The HIT is stored in the session like any exchange.
	if h := gs.history(t, "s2", "", "x-tenant-id: cache-a"); len(h.Messages) != 2 || h.Messages[1].Content != first.Message {
		t.Fatalf("history of the cached exchange: %+v", h.Messages)
	}

	// The same request in another tenant never matches: MISS, and the model is called.
	resp, _ = ask("cache-b", "s1", "what is  up")
	if resp.Header.Get("x-cache") != "MISS" || up.callsTo("fake/echo") != calls+1 {
		t.Fatalf("same request in another tenant: x-cache %q; want MISS and a model call", resp.Header.Get("x-cache"))
	}
	// A different history (s1 now holds an exchange) is a different request.
	if resp, _ := ask("cache-a", "s1", "what is  up"); resp.Header.Get("x-cache") != "MISS" {
		t.Fatalf("same message after a stored exchange: x-cache %q, want MISS", resp.Header.Get("x-cache"))
	}
	// Off without cache.ttlSeconds, and never for streams.
	if resp, _ := ask("nocache", "s1", "what is  up"); resp.Header.Get("x-cache") != "" {
		t.Fatalf("tenant without cache: x-cache %q, want none", resp.Header.Get("x-cache"))
	}
	sresp, _ := gs.streamChat(t, `{"message":"what is  up","sessionId":"s9"}`, "x-tenant-id: cache-a")
	if sresp.Header.Get("x-cache") != "" {
		t.Fatalf("streamed request: x-cache %q, want none", sresp.Header.Get("x-cache"))
	}
}

type usageData struct {
	From    string           `json:"from"`
	To      string           `json:"to"`
	GroupBy string           `json:"groupBy"`
	Rows    []store.UsageRow `json:"rows"`
	Totals  usageTotals      `json:"totals"`
}

func (gs *gatewayServer) usageOf(t *testing.T, tenant, query string) usageData {
	t.Helper()
	resp, b := gs.do(t, "GET", "/usage"+query, "", "x-tenant-id: "+tenant)
	if resp.StatusCode != 200 {
		t.Fatalf("GET /usage%s: %d %s", query, resp.StatusCode, b)
	}
	var d usageData
	if err := json.Unmarshal(decodeEnvelope(t, resp, b).Data, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// waitFor polls cond (the projector is asynchronous) with a bounded deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestUsageLedger: a chat call becomes a model_call event on LEDGER, the projector writes it into
// the tenant's SQLite, and GET /usage returns it to that tenant only. Rate-limit rejections and
// session create/clear reach the read model too.
func TestUsageLedger(t *testing.T) {
	up := newFakeUpstream(t)
	gs := newGatewayServer(t, routerFor(up),
		chatTenant("user-a", "fake/instant", `"rateLimit": {"perMinute": 1000, "burst": 1000}`, `"rateLimit": {"perMinute": 2, "burst": 2}`),
		chatTenant("user-b", "fake/instant"))

	gs.jsonChat(t, `{"message":"hi","sessionId":"u1","stream":false}`, "x-tenant-id: user-a")
	var d usageData
	waitFor(t, "the chat call in GET /usage", func() bool {
		d = gs.usageOf(t, "user-a", "")
		return d.Totals.Requests == 1
	})
	wantCost := float64(fakePromptTokens)/1000*gateway.DefaultPricePer1K + float64(fakeCompletionTokens)/1000*gateway.DefaultPricePer1K
	today := time.Now().UTC().Format(time.DateOnly)
	if d.GroupBy != "day" || len(d.Rows) != 1 || d.Rows[0].Key != today ||
		d.Totals.TokensIn != fakePromptTokens || d.Totals.TokensOut != fakeCompletionTokens ||
		math.Abs(d.Totals.Cost-wantCost) > 1e-12 || d.Rows[0].Estimated != 0 {
		t.Fatalf("usage = %+v, want one %s row with %d in, %d out, cost %g", d, today, fakePromptTokens, fakeCompletionTokens, wantCost)
	}
	if m := gs.usageOf(t, "user-a", "?groupBy=model"); len(m.Rows) != 1 || m.Rows[0].Key != "fake/instant" {
		t.Fatalf("groupBy=model rows = %+v", m.Rows)
	}
	if other := gs.usageOf(t, "user-b", ""); other.Totals.Requests != 0 || len(other.Rows) != 0 {
		t.Fatalf("another tenant sees %+v", other)
	}
	// A range that ends before today is empty; to as a date includes that whole day.
	if past := gs.usageOf(t, "user-a", "?from=2020-01-01&to=2020-12-31"); len(past.Rows) != 0 {
		t.Fatalf("past range rows = %+v", past.Rows)
	}
	if inc := gs.usageOf(t, "user-a", "?from="+today+"&to="+today); inc.Totals.Requests != 1 {
		t.Fatalf("from=to=today: %+v, want the call", inc.Totals)
	}
	ms := strconv.FormatInt(time.Now().Add(-time.Hour).UnixMilli(), 10)
	if e := gs.usageOf(t, "user-a", "?from="+ms); e.Totals.Requests != 1 {
		t.Fatalf("from as epoch ms: %+v", e.Totals)
	}
	for _, q := range []string{"?from=yesterday", "?to=2026-13-01", "?groupBy=week", "?from=2026-02-01&to=2026-01-01", "?from=-5"} {
		resp, b := gs.do(t, "GET", "/usage"+q, "", "x-tenant-id: user-a")
		if resp.StatusCode != 400 || errorCode(t, b) != CodeInvalidRequest {
			t.Errorf("GET /usage%s: %d %s, want 400 invalid_request", q, resp.StatusCode, b)
		}
	}

	// The session was created by its first exchange; DELETE clears it.
	waitFor(t, "session u1 in the read model", func() bool {
		_, err := gs.dbs.Session(context.Background(), "user-a", "u1")
		return err == nil
	})
	if resp, b := gs.do(t, "DELETE", "/chat/u1", "", "x-tenant-id: user-a"); resp.StatusCode != 200 {
		t.Fatalf("DELETE: %d %s", resp.StatusCode, b)
	}
	waitFor(t, "session u1 cleared in the read model", func() bool {
		s, err := gs.dbs.Session(context.Background(), "user-a", "u1")
		return err == nil && s.ClearedAt != nil
	})

	// perMinute 2: the third request is rate limited, and audited.
	gs.jsonChat(t, `{"message":"hi","sessionId":"u2","stream":false}`, "x-tenant-id: user-a")
	if resp, _ := gs.do(t, "POST", "/chat", `{"message":"hi","stream":false}`, "x-tenant-id: user-a"); resp.StatusCode != 429 {
		t.Fatalf("third request: %d, want 429", resp.StatusCode)
	}
	db, err := gs.dbs.DB(context.Background(), "user-a")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the rate_limited audit row", func() bool {
		var n int
		err := db.QueryRow(`SELECT count(*) FROM audit WHERE kind = ?`, store.KindRateLimited).Scan(&n)
		return err == nil && n == 1
	})
}
