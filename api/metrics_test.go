package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/metering"
	"github.com/crispy-enigma/crispy/observe"
	"github.com/crispy-enigma/crispy/rag"
	"github.com/crispy-enigma/crispy/rag/embedded"
	"github.com/crispy-enigma/crispy/store"
)

// metricsNow is the fixed clock of the metrics tests: half past an hour, so the current hour is
// partial, as it is in production.
var metricsNow = time.Date(2026, 3, 10, 12, 30, 0, 0, time.UTC)

// metricsServer is the API with the tenant metrics over real parts: embedded NATS (ledger, config
// bucket, search cache), the projector into SQLite in a temp dir, an embedded vector store, grains.
type metricsServer struct {
	URL    string
	ledger *store.Ledger
	dbs    *store.TenantDBs
}

func newMetricsServer(t *testing.T) *metricsServer {
	t.Helper()
	grains, js := startGrains(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cache, err := store.OpenTenantKV(ctx, js, store.BucketCache, store.KVOptions{AllowTTL: true})
	if err != nil {
		t.Fatal(err)
	}
	cfgKV, err := store.OpenTenantKV(ctx, js, "config", store.KVOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ledger, err := store.OpenLedger(ctx, js, store.LedgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	dbs := store.OpenTenantDBs(dir)
	t.Cleanup(func() { _ = dbs.Close() })
	proj := store.NewProjector(js, dbs, store.ProjectorOptions{Durable: "projector-metrics", RetryDelay: 50 * time.Millisecond})
	if err := proj.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proj.Stop)
	emb := gateway.NewHashEmbedder(0)
	vs, err := embedded.Open(dir, embedded.Options{Dimension: emb.Dimension()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vs.Close() })

	env := config.DefaultEnv()
	env.NodeName, env.Environment, env.MaxRequestBodySize = "test", "test", 4096
	metrics := observe.NewMetrics()
	now := func() time.Time { return metricsNow }
	mt := metering.New(metering.Options{Env: env, Limiter: grains, Ledger: ledger, Metrics: metrics, Logger: zerolog.Nop(), Now: now})
	router := gateway.NewRouter(gateway.RouterOptions{
		Local: map[string]gateway.ChatModel{gateway.ExtractiveModelID: gateway.NewExtractive(rag.NewRetriever(vs, emb, nil))},
		Meter: mt,
	})
	ix := testTenants(t, tenantJSON("other", `, "public": true`), tenantJSON("quiet", `, "public": true`))
	svc, err := rag.NewService(rag.ServiceOptions{Store: vs, Embedder: emb, Catalog: dbs, Tenants: config.NewLive(ix), Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Deps{
		Env: env, Tenants: ix, Logger: zerolog.Nop(), Metrics: metrics, Version: "test",
		Now:           now,
		Meter:         mt,
		RAG:           &RAGDeps{Service: svc},
		Usage:         dbs,
		TenantMetrics: &TenantMetricsDeps{Reader: dbs, Alerts: cfgKV, Prices: router},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	})
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return &metricsServer{URL: hs.URL, ledger: ledger, dbs: dbs}
}

func (ms *metricsServer) do(t *testing.T, method, path, body, tenant string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, ms.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("x-tenant-id", tenant)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// get GETs a metrics route that must answer 200 and decodes its data into v.
func (ms *metricsServer) get(t *testing.T, path, tenant string, v any) {
	t.Helper()
	resp, b := ms.do(t, "GET", path, "", tenant)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	if err := json.Unmarshal(decodeEnvelope(t, resp, b).Data, v); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, b)
	}
}

func (ms *metricsServer) append(t *testing.T, evs ...store.Event) {
	t.Helper()
	for _, ev := range evs {
		if err := ms.ledger.Append(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
}

// waitEvents polls the tenant's read model until it holds n events (bounded deadline).
func (ms *metricsServer) waitEvents(t *testing.T, tenant string, n int) {
	t.Helper()
	db, err := ms.dbs.DB(t.Context(), tenant)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, fmt.Sprintf("%d events of %s projected", n, tenant), func() bool {
		var got int
		_ = db.QueryRowContext(t.Context(), `SELECT count(*) FROM ledger_events`).Scan(&got)
		return got >= n
	})
}

var metricsRoutes = []string{
	"/metrics/cost", "/metrics/search-cache", "/metrics/tools/execution", "/metrics/slis",
	"/metrics/anomalies", "/metrics/overview",
}

// TestMetricsPeriod is CONTRACT.md "Tenant metrics": period = 1h | 24h | 7d, default 24h, else 400.
func TestMetricsPeriod(t *testing.T) {
	ms := newMetricsServer(t)
	cases := []struct {
		query, want string
		status      int
	}{
		{"", "24h", 200},
		{"?period=1h", "1h", 200},
		{"?period=24h", "24h", 200},
		{"?period=7d", "7d", 200},
		{"?period=2h", "", 400},
		{"?period=24H", "", 400}, // why: the contract names exact values
		{"?period=", "24h", 200},
		{"?period=-1h", "", 400},
	}
	for _, route := range metricsRoutes {
		for _, tc := range cases {
			t.Run(route+tc.query, func(t *testing.T) {
				resp, b := ms.do(t, "GET", route+tc.query, "", "open")
				env := decodeEnvelope(t, resp, b)
				if resp.StatusCode != tc.status {
					t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, b)
				}
				if tc.status == 400 {
					if env.Error.Code != CodeInvalidRequest {
						t.Errorf("code %q, want invalid_request", env.Error.Code)
					}
					return
				}
				var d struct {
					Period   string    `json:"period"`
					From, To time.Time `json:"-"`
				}
				if err := json.Unmarshal(env.Data, &d); err != nil || d.Period != tc.want {
					t.Errorf("period = %q (%v), want %q", d.Period, err, tc.want)
				}
			})
		}
	}
	// The tenant listener's /metrics (exact) is not the operator endpoint: it is simply unknown here.
	if resp, b := ms.do(t, "GET", "/metrics", "", "open"); resp.StatusCode != 404 || errorCode(t, b) != CodeNotFound {
		t.Errorf("GET /metrics on the tenant listener: %d %s, want 404 not_found", resp.StatusCode, b)
	}
}

// TestMetricsSearchCacheRecordsChecks: POST /search records each cache check (MISS, then HIT for
// the same query) as a search event; GET /metrics/search-cache reads them back, per tenant.
func TestMetricsSearchCacheRecordsChecks(t *testing.T) {
	ms := newMetricsServer(t)
	body := `{"query":"where is the lighthouse keeper"}`
	for _, want := range []string{"MISS", "HIT", "HIT"} {
		resp, b := ms.do(t, "POST", "/search", body, "open")
		if resp.StatusCode != 200 || resp.Header.Get("x-cache") != want {
			t.Fatalf("POST /search: %d x-cache %q, want 200 %s: %s", resp.StatusCode, resp.Header.Get("x-cache"), want, b)
		}
	}
	ms.waitEvents(t, "open", 3)
	var d store.SearchCacheSummary
	ms.get(t, "/metrics/search-cache", "open", &d)
	if d.Hits != 2 || d.Misses != 1 || d.TotalChecks != 3 || d.TotalSearches != 3 || d.Errors != 0 ||
		math.Abs(d.HitRate-2.0/3) > 1e-9 || d.AvgLatencyMs < 0 {
		t.Errorf("search-cache = %+v, want 2 hits, 1 miss, 3 checks, hit rate 2/3", d)
	}
	var other store.SearchCacheSummary
	ms.get(t, "/metrics/search-cache", "other", &other)
	if other.TotalChecks != 0 || other.HitRate != 0 {
		t.Errorf("another tenant sees %+v", other)
	}
}

// TestMetricsFromLedger: cost, tools, SLIs and the overview over model_call and tool_executed
// events appended to the ledger and projected into SQLite.
func TestMetricsFromLedger(t *testing.T) {
	ms := newMetricsServer(t)
	var evs []store.Event
	add := func(ev store.Event) {
		ev.ID, ev.TenantID = fmt.Sprintf("e%d", len(evs)), "open"
		if ev.Time.IsZero() {
			ev.Time = metricsNow.Add(-10 * time.Minute)
		}
		evs = append(evs, ev)
	}
	for i := 1; i <= 20; i++ {
		add(store.Event{Kind: store.KindModelCall, Model: "fake/chat", TokensIn: 1000, TokensOut: 500, LatencyMs: int64(i * 10), Outcome: "ok"})
	}
	add(store.Event{Kind: store.KindModelCall, Model: gateway.ExtractiveModelID, TokensIn: 40, TokensOut: 60, LatencyMs: 1, Outcome: "ok"})
	add(store.Event{Kind: store.KindModelCall, Model: "fake/chat", LatencyMs: 9000, Outcome: "error", ErrorCode: CodeAIError})
	add(store.Event{Kind: store.KindModelCall, Model: "fake/chat", TokensIn: 10, Outcome: "cancelled"})
	// Two days ago: inside 7d only.
	add(store.Event{Kind: store.KindModelCall, Model: "fake/chat", TokensIn: 1e6, LatencyMs: 1, Outcome: "ok", Time: metricsNow.Add(-48 * time.Hour)})
	tool := func(name string, ms int64, success bool, code string) {
		add(store.Event{Kind: store.KindToolExecuted, Subject: name, LatencyMs: ms, ErrorCode: code, Detail: map[string]any{"success": success}})
	}
	tool("calculate", 2, true, "")
	tool("calculate", 4, true, "")
	tool("summarize", 30, false, "")
	tool("unknown", 0, false, "TOOL_NOT_FOUND")
	ms.append(t, evs...)
	ms.append(t, store.Event{ID: "g1", Kind: store.KindModelCall, TenantID: "other", Model: "fake/chat", TokensIn: 5, Outcome: "ok", Time: metricsNow.Add(-time.Minute)})
	ms.waitEvents(t, "open", len(evs))
	ms.waitEvents(t, "other", 1)

	t.Run("cost", func(t *testing.T) {
		var d store.CostSummary
		ms.get(t, "/metrics/cost", "open", &d)
		// fake/chat is not in the routing table: CONTRACT.md's default 0.0002 in and out. The built-in
		// extractive model is priced by the router: free.
		p := gateway.DefaultPricePer1K
		wantChat := store.ModelCost{Requests: 22, TokensIn: 20010, TokensOut: 10000, TotalTokens: 30010,
			Cost: 20010.0/1000*p + 10000.0/1000*p, PricePer1KIn: p, PricePer1KOut: p}
		wantLocal := store.ModelCost{Requests: 1, TokensIn: 40, TokensOut: 60, TotalTokens: 100}
		want := store.CostSummary{TotalCost: wantChat.Cost, TotalTokens: 30110, TotalRequests: 23,
			ByModel: map[string]store.ModelCost{"fake/chat": wantChat, gateway.ExtractiveModelID: wantLocal}}
		if diff := cmp.Diff(want, d, cmp.Comparer(func(a, b float64) bool { return math.Abs(a-b) < 1e-12 })); diff != "" {
			t.Errorf("cost (-want +got):\n%s", diff)
		}
		var week store.CostSummary
		ms.get(t, "/metrics/cost?period=7d", "open", &week)
		if week.TotalTokens != 30110+1e6 {
			t.Errorf("7d totalTokens = %d, want the older call included", week.TotalTokens)
		}
		var hour store.CostSummary
		ms.get(t, "/metrics/cost?period=1h", "other", &hour)
		if hour.TotalRequests != 1 || hour.TotalTokens != 5 {
			t.Errorf("other tenant cost = %+v, want only its own call", hour)
		}
	})

	t.Run("tools", func(t *testing.T) {
		var d store.ToolsSummary
		ms.get(t, "/metrics/tools/execution", "open", &d)
		want := store.ToolsSummary{
			TotalExecutions: 4, SuccessCount: 2, ErrorCount: 2, ErrorRate: 0.5, AvgDurationMs: 9,
			ByTool: map[string]store.ToolSummary{
				"calculate": {Executions: 2, SuccessCount: 2, AvgDurationMs: 3},
				"summarize": {Executions: 1, ErrorCount: 1, AvgDurationMs: 30},
				"unknown":   {Executions: 1, ErrorCount: 1},
			},
		}
		if diff := cmp.Diff(want, d); diff != "" {
			t.Errorf("tools (-want +got):\n%s", diff)
		}
	})

	t.Run("slis", func(t *testing.T) {
		var d store.SLISummary
		ms.get(t, "/metrics/slis", "open", &d)
		// 21 answered (20 × 10..200 ms and one 1 ms), 1 failed, 1 cancelled (not counted against us).
		if d.ModelCalls.Total != 23 || d.ModelCalls.OK != 21 || d.ModelCalls.Errors != 1 || d.ModelCalls.Cancelled != 1 {
			t.Fatalf("modelCalls = %+v", d.ModelCalls)
		}
		if math.Abs(d.Availability-21.0/22) > 1e-9 || math.Abs(d.ErrorRate-1.0/22) > 1e-9 {
			t.Errorf("availability %v, errorRate %v, want 21/22 and 1/22", d.Availability, d.ErrorRate)
		}
		// Sorted: 1, 10, 20, …, 200. Nearest rank: p50 = 11th = 100, p95 = 20th = 190, p99 = 21st = 200.
		if d.LatencyMs.P50 != 100 || d.LatencyMs.P95 != 190 || d.LatencyMs.P99 != 200 {
			t.Errorf("latency = %+v, want p50 100, p95 190, p99 200", d.LatencyMs)
		}
		var empty store.SLISummary
		ms.get(t, "/metrics/slis", "quiet", &empty)
		if empty.Availability != 1 || empty.ErrorRate != 0 || empty.ModelCalls.Total != 0 {
			t.Errorf("no calls: %+v, want availability 1, error rate 0", empty)
		}
	})

	t.Run("overview", func(t *testing.T) {
		var d struct {
			Period string `json:"period"`
			Cost   struct {
				TotalTokens int64 `json:"totalTokens"`
			} `json:"cost"`
			Tools struct {
				TotalExecutions int64 `json:"totalExecutions"`
			} `json:"tools"`
			SLIs      store.SLISummary `json:"slis"`
			Anomalies struct {
				Count int `json:"count"`
			} `json:"anomalies"`
			Alerts struct {
				Rules  int `json:"rules"`
				Firing int `json:"firing"`
			} `json:"alerts"`
		}
		ms.get(t, "/metrics/overview", "open", &d)
		if d.Period != "24h" || d.Cost.TotalTokens != 30110 || d.Tools.TotalExecutions != 4 || d.SLIs.ModelCalls.Total != 23 {
			t.Errorf("overview = %+v", d)
		}
	})
}

// TestMetricsAnomalies: a steady history of 2 calls an hour, then 40 in the current hour: the
// request count is flagged high; the token count too; a flat metric (tools) is not.
func TestMetricsAnomalies(t *testing.T) {
	ms := newMetricsServer(t)
	hour := metricsNow.Truncate(time.Hour)
	var evs []store.Event
	for h := 1; h <= 30; h++ {
		for i := 0; i < 2; i++ {
			evs = append(evs, store.Event{ID: fmt.Sprintf("h%d-%d", h, i), Kind: store.KindModelCall, TenantID: "open",
				Time: hour.Add(-time.Duration(h)*time.Hour + time.Minute), Model: "fake/chat", TokensIn: 10, LatencyMs: 50, Outcome: "ok"})
		}
	}
	for i := 0; i < 40; i++ {
		evs = append(evs, store.Event{ID: fmt.Sprintf("now-%d", i), Kind: store.KindModelCall, TenantID: "open",
			Time: hour.Add(time.Minute), Model: "fake/chat", TokensIn: 10, LatencyMs: 50, Outcome: "ok"})
	}
	ms.append(t, evs...)
	ms.waitEvents(t, "open", len(evs))

	var d struct {
		Hours     int             `json:"hours"`
		Metrics   []string        `json:"metrics"`
		Anomalous []string        `json:"anomalousMetrics"`
		Anomalies []store.Anomaly `json:"anomalies"`
	}
	ms.get(t, "/metrics/anomalies?period=1h", "open", &d)
	if diff := cmp.Diff([]string{"model.requests", "model.tokens", "cost.total_usd"}, d.Anomalous); diff != "" {
		t.Errorf("anomalous metrics (-want +got):\n%s\n%+v", diff, d.Anomalies)
	}
	for _, a := range d.Anomalies {
		if !a.Hour.Equal(hour) || a.Direction != "high" || a.History != store.AnomalyHistory {
			t.Errorf("anomaly %+v, want the current hour, high, against %d hours", a, store.AnomalyHistory)
		}
		if a.Metric == "model.requests" && (a.Value != 40 || a.Mean != 2 || a.StdDev != 0) {
			t.Errorf("model.requests anomaly %+v, want value 40 over mean 2, σ 0", a)
		}
	}
	if len(d.Metrics) != 9 /* the series store checks */ || d.Hours != 2 {
		t.Errorf("metrics %v, hours %d: want every series and 2 hours (12:00 partial and 11:00)", d.Metrics, d.Hours)
	}
}

// TestMetricsAlerts: rules are validated, stored per tenant in the config bucket, evaluated on
// read (value and firing), and deleted by ID.
func TestMetricsAlerts(t *testing.T) {
	ms := newMetricsServer(t)
	ms.append(t, store.Event{ID: "c1", Kind: store.KindModelCall, TenantID: "open", Model: "fake/chat", TokensIn: 5000, TokensOut: 5000,
		Outcome: "ok", Time: metricsNow.Add(-time.Minute)})
	ms.waitEvents(t, "open", 1)

	for _, tc := range []struct{ name, body, field string }{
		{"unknown metric", `{"metric":"search.nope","operator":">","threshold":1}`, "metric"},
		{"unknown operator", `{"metric":"cost.total_usd","operator":"=>","threshold":1}`, "operator"},
		{"missing threshold", `{"metric":"cost.total_usd","operator":">"}`, "threshold"},
		{"bad period", `{"metric":"cost.total_usd","operator":">","threshold":1,"period":"30d"}`, "period"},
		{"threshold not a number", `{"metric":"cost.total_usd","operator":">","threshold":"1"}`, "threshold"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := ms.do(t, "POST", "/metrics/alerts", tc.body, "open")
			if resp.StatusCode != 400 || !strings.Contains(string(b), tc.field) {
				t.Errorf("POST %s: %d %s, want 400 naming %s", tc.body, resp.StatusCode, b, tc.field)
			}
		})
	}

	// Cost is 10k tokens × 0.0002/1K = 0.002 USD: above 0.001 fires, below 1 does not.
	post := func(body string) store.EvaluatedRule {
		t.Helper()
		resp, b := ms.do(t, "POST", "/metrics/alerts", body, "open")
		if resp.StatusCode != 201 {
			t.Fatalf("POST %s: %d %s", body, resp.StatusCode, b)
		}
		var r store.EvaluatedRule
		if err := json.Unmarshal(decodeEnvelope(t, resp, b).Data, &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	fires := post(`{"name":"spend","metric":"cost.total_usd","operator":"gt","threshold":0.001}`)
	quiet := post(`{"metric":"cost.total_usd","operator":">=","threshold":1,"period":"1h"}`)
	errs := post(`{"metric":"search.error_rate","operator":">","threshold":0.05}`)
	if !fires.Firing || fires.Operator != ">" || fires.Period != "24h" || math.Abs(fires.Value-0.002) > 1e-12 {
		t.Errorf("rule %+v, want firing with value 0.002, operator >, period 24h", fires)
	}
	if quiet.Firing || errs.Firing {
		t.Errorf("rules %+v and %+v fire, want quiet", quiet, errs)
	}

	var list struct {
		Rules  []store.EvaluatedRule `json:"rules"`
		Firing int                   `json:"firing"`
	}
	ms.get(t, "/metrics/alerts", "open", &list)
	firing := map[string]bool{}
	for _, r := range list.Rules {
		firing[r.ID] = r.Firing
	}
	if diff := cmp.Diff(map[string]bool{fires.ID: true, quiet.ID: false, errs.ID: false}, firing); diff != "" || list.Firing != 1 {
		t.Fatalf("GET /metrics/alerts firing by rule (-want +got):\n%s (firing count %d, want 1)", diff, list.Firing)
	}
	var other struct {
		Rules []store.EvaluatedRule `json:"rules"`
	}
	ms.get(t, "/metrics/alerts", "other", &other)
	if len(other.Rules) != 0 {
		t.Errorf("another tenant sees rules %+v", other.Rules)
	}
	if resp, _ := ms.do(t, "DELETE", "/metrics/alerts/"+fires.ID, "", "other"); resp.StatusCode != 404 {
		t.Errorf("another tenant deleting a rule: %d, want 404", resp.StatusCode)
	}

	if resp, b := ms.do(t, "DELETE", "/metrics/alerts/"+fires.ID, "", "open"); resp.StatusCode != 200 {
		t.Fatalf("DELETE: %d %s", resp.StatusCode, b)
	}
	if resp, b := ms.do(t, "DELETE", "/metrics/alerts?id="+quiet.ID, "", "open"); resp.StatusCode != 200 {
		t.Fatalf("DELETE ?id=: %d %s", resp.StatusCode, b)
	}
	for _, path := range []string{"/metrics/alerts/" + fires.ID, "/metrics/alerts/not-a-rule", "/metrics/alerts/.."} {
		if resp, b := ms.do(t, "DELETE", path, "", "open"); resp.StatusCode != 404 {
			t.Errorf("DELETE %s: %d %s, want 404", path, resp.StatusCode, b)
		}
	}
	ms.get(t, "/metrics/alerts", "open", &list)
	if len(list.Rules) != 1 || list.Rules[0].ID != errs.ID {
		t.Errorf("after deletes: %+v, want only %s", list.Rules, errs.ID)
	}
}
