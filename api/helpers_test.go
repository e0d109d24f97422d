package api

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/crispy-enigma/crispy/actors"
	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/metering"
	"github.com/crispy-enigma/crispy/observe"
	"github.com/crispy-enigma/crispy/store"
	"github.com/crispy-enigma/crispy/test/fixture"
)

// Test tenants. "acme" is keyed with testKey; "globex" is keyed with globexKey; "open" is public;
// "locked" has no keys and is not public; "strict" has a model allow-list and a tight rate limit.
const (
	testKey   = "ck_acme_test_key"
	globexKey = "ck_globex_test_key"
)

func tenantJSON(id string, extra string) string {
	return fmt.Sprintf(`{
	"tenantId": %q, "accountId": "acc-%[1]s", "aiGatewayId": "gw",
	"aiModels": {"chat": "local/extractive", "embeddings": "local/hash-embed"},
	"vectorizeNamespace": %[1]q,
	"rateLimit": {"perMinute": 1000, "burst": 1000},
	"featureFlags": {}, "allowedHosts": ["%[1]s.example.test"], "apiKeys": []%[2]s
}`, id, extra)
}

func testTenants(t testing.TB, more ...string) *config.Index {
	t.Helper()
	raw := []string{
		strings.Replace(tenantJSON("acme", ""), `"apiKeys": []`, `"apiKeys": ["`+config.HashAPIKey(testKey)+`"]`, 1),
		strings.Replace(tenantJSON("globex", ""), `"apiKeys": []`, `"apiKeys": ["`+config.HashAPIKey(globexKey)+`"]`, 1),
		tenantJSON("open", `, "public": true`),
		tenantJSON("locked", ""),
	}
	raw = append(raw, more...)
	var cfgs []*config.TenantConfig
	for i, r := range raw {
		cfg, _, err := config.ParseTenantConfig(fmt.Sprintf("test-%d.json", i), []byte(r))
		if err != nil {
			t.Fatalf("parse test tenant %d: %v", i, err)
		}
		cfgs = append(cfgs, cfg)
	}
	ix, err := config.NewIndex(cfgs)
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

type testServerOpts struct {
	env     func(*config.Env)
	tenants []string // extra tenant JSON
	models  gateway.RouterOptions
	noChat  bool
	now     func() time.Time // the server's clock (Deps.Now); nil = time.Now
	rag     *testRAGOpts     // non-nil: wire RAG (rag_test.go) over an embedded store in t.TempDir()
	tracing *observe.Tracing // non-nil: the server, grain client and router record spans with it
	// deps, when set, completes the dependencies after the grains and RAG are wired, before New.
	deps func(t testing.TB, ts *testServer, d *Deps)
	// meter, when set, completes the metering options (a ledger, a budget) before the Meter is built.
	meter func(t testing.TB, ts *testServer, o *metering.Options)
	// idempotency: keep Idempotency-Key records in the cache bucket of the grains' NATS.
	idempotency bool
	// openai: serve the OpenAI-compatible API (v1.go) over the chat router and the grains.
	openai bool
}

type testServer struct {
	*Server
	URL     string
	http    *httptest.Server
	grains  *actors.Client
	js      jetstream.JetStream // the NATS server the grains (and RAG, when set) run on
	metrics *observe.Metrics
	rag     *testRAG // set when testServerOpts.rag is
	mt      *metering.Meter
}

// newTestServer runs the API over real parts: an embedded NATS server with JetStream in a temp
// dir, a one-member actor cluster with the real grains, and the gateway router.
func newTestServer(t testing.TB, o testServerOpts) *testServer {
	t.Helper()
	env := config.DefaultEnv()
	env.NodeName = "test"
	env.Environment = "test"
	env.MaxRequestBodySize = 4096
	if o.env != nil {
		o.env(&env)
	}
	deps := Deps{
		Env: env, Tenants: testTenants(t, o.tenants...), Logger: zerolog.Nop(), Metrics: observe.NewMetrics(),
		Version: "test", Now: o.now, Tracing: o.tracing,
		Components: []Component{{Name: "nats", Check: func(context.Context) (string, error) { return "ok", nil }}},
	}
	ts := &testServer{metrics: deps.Metrics}
	mo := metering.Options{Env: env, Metrics: deps.Metrics, Logger: zerolog.Nop(), Now: o.now, RateLease: metering.DefaultRateLease}
	if !o.noChat || o.rag != nil {
		ts.grains, ts.js = startGrains(t)
		ts.grains = ts.grains.WithTracer(o.tracing.Tracer("github.com/crispy-enigma/crispy/actors"))
		mo.Limiter = ts.grains
	}
	if o.meter != nil {
		o.meter(t, ts, &mo)
	}
	ts.mt = metering.New(mo)
	deps.Meter = ts.mt
	o.models.Meter = ts.mt
	if !o.noChat {
		o.models.Tracer = o.tracing.Tracer("github.com/crispy-enigma/crispy/gateway")
		router := gateway.NewRouter(o.models)
		deps.Chat = &ChatDeps{Sessions: ts.grains, Models: router}
		if o.openai {
			deps.OpenAI = &OpenAIDeps{Models: router, Sessions: ts.grains}
		}
	}
	if o.idempotency {
		kv, err := store.OpenTenantKV(t.Context(), ts.js, store.BucketCache, store.KVOptions{AllowTTL: true})
		if err != nil {
			t.Fatal(err)
		}
		deps.Idempotency = kv
	}
	if o.rag != nil {
		ts.rag = newTestRAG(t, ts, o, &deps)
	}
	if o.deps != nil {
		o.deps(t, ts, &deps)
	}
	srv, err := New(deps)
	if err != nil {
		t.Fatal(err)
	}
	ts.Server = srv
	if ts.rag != nil && !o.rag.deferWorker {
		ts.rag.start(t, srv)
	}
	ts.http = httptest.NewServer(srv.Handler())
	t.Cleanup(ts.http.Close)
	ts.URL = ts.http.URL
	return ts
}

// startGrains starts an embedded NATS server and a one-member cluster with the real grains.
func startGrains(t testing.TB) (*actors.Client, jetstream.JetStream) {
	t.Helper()
	js := fixture.JetStream(t)
	return fixture.Grains(t, js), js
}

// do sends a request with headers given as "Name: value" strings and returns the response and body.
func (ts *testServer) do(t testing.TB, method, path, body string, headers ...string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, ts.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		if strings.EqualFold(k, "host") {
			req.Host = strings.TrimSpace(v)
			continue
		}
		req.Header.Add(k, strings.TrimSpace(v))
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

// waitSettled waits for the Meter's background work (budget commits, ledger events) to finish.
func waitSettled(t testing.TB, mt *metering.Meter) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := mt.Wait(ctx); err != nil {
		t.Fatalf("settle work did not finish: %v", err)
	}
}
