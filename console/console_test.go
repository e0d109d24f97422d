package console_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/crispy-enigma/crispy/api"
	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/console"
	"github.com/crispy-enigma/crispy/observe"
	"github.com/crispy-enigma/crispy/test/fixture"
)

func do(t *testing.T, h http.Handler, method, path string, header ...string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func TestTenantHandlerServesOnlyTheTenantPages(t *testing.T) {
	h := console.TenantHandler()
	cases := []struct {
		name, method, path string
		status             int
		ctype              string
	}{
		{"page", "GET", "/console/", 200, "text/html; charset=utf-8"},
		{"no slash redirects", "GET", "/console", 301, ""},
		{"module", "GET", "/console/app.js", 200, "text/javascript; charset=utf-8"},
		{"common module", "GET", "/console/common/chart.js", 200, "text/javascript; charset=utf-8"},
		{"style", "GET", "/console/common/style.css", 200, "text/css; charset=utf-8"},
		{"head", "HEAD", "/console/playground.js", 200, "text/javascript; charset=utf-8"},
		{"operator script is not here", "GET", "/console/operator/app.js", 404, ""},
		{"no api on the tenant side", "GET", "/console/api/overview", 404, ""},
		{"unknown file", "GET", "/console/nope.js", 404, ""},
		{"dot segments", "GET", "/console/../operator/app.js", 404, ""},
		{"no writes", "POST", "/console/", 405, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := do(t, h, c.method, c.path)
			if res.StatusCode != c.status {
				t.Fatalf("%s %s: %d, want %d", c.method, c.path, res.StatusCode, c.status)
			}
			if c.ctype != "" && res.Header.Get("Content-Type") != c.ctype {
				t.Errorf("Content-Type %q, want %q", res.Header.Get("Content-Type"), c.ctype)
			}
			csp := res.Header.Get("Content-Security-Policy")
			if !strings.Contains(csp, "default-src 'self'") || strings.Contains(csp, "unsafe-inline") {
				t.Errorf("CSP %q: want default-src 'self' and nothing inline", csp)
			}
			if res.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Error("no nosniff")
			}
		})
	}
}

func TestAssetsRevalidateByETag(t *testing.T) {
	h := console.TenantHandler()
	first := do(t, h, "GET", "/console/app.js")
	etag := first.Header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	if res := do(t, h, "GET", "/console/app.js", "If-None-Match", etag); res.StatusCode != http.StatusNotModified {
		t.Fatalf("with a matching ETag: %d, want 304", res.StatusCode)
	}
}

// The pages hold no inline script or style, so the CSP needs no exception.
func TestPagesHaveNoInlineCode(t *testing.T) {
	for _, h := range []struct {
		handler http.Handler
		path    string
	}{{console.TenantHandler(), "/console/"}, {console.OperatorHandler(console.OperatorDeps{}), "/operator/"}} {
		b, _ := io.ReadAll(do(t, h.handler, "GET", h.path).Body)
		page := string(b)
		for _, bad := range []string{"<script>", "style=", "<style", "onclick=", "javascript:"} {
			if strings.Contains(page, bad) {
				t.Errorf("%s contains %q", h.path, bad)
			}
		}
	}
}

// On the API listener the console's files are served before tenant resolution, and the operator
// view does not exist there.
func TestAPIServerMountsOnlyTheTenantConsole(t *testing.T) {
	ix, err := config.NewIndex(nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.New(api.Deps{Env: config.DefaultEnv(), Tenants: ix, Logger: zerolog.Nop(), Console: console.TenantHandler()})
	if err != nil {
		t.Fatal(err)
	}
	h := srv.Handler()
	if res := do(t, h, "GET", "/console/"); res.StatusCode != 200 {
		t.Fatalf("/console/ without a tenant: %d, want 200", res.StatusCode)
	}
	for _, p := range []string{"/operator/", "/operator/api/overview"} {
		if res := do(t, h, "GET", p); res.StatusCode == 200 {
			t.Errorf("%s on the API listener: 200, want an error", p)
		}
	}
	if res := do(t, h, "GET", "/health"); res.StatusCode != http.StatusBadRequest {
		t.Errorf("/health without a tenant: %d, want 400 (resolution still applies outside /console)", res.StatusCode)
	}
}

func TestOperatorAPIRequiresTheTokenButThePageDoesNot(t *testing.T) {
	m := observe.NewMetrics()
	admin := api.AdminHandler(m, func(context.Context) (map[string]string, bool) { return nil, true }, "s3cret",
		console.OperatorHandler(console.OperatorDeps{Node: "n1", Token: "s3cret", Gatherer: m.Registry}))
	cases := []struct {
		path, auth string
		status     int
	}{
		{"/operator/", "", 200},
		{"/operator/app.js", "", 200},
		{"/operator/api/overview", "", 401},
		{"/operator/api/overview", "Bearer wrong", 401},
		{"/operator/api/overview", "Bearer s3cret", 200},
		{"/metrics", "", 401},
	}
	for _, c := range cases {
		res := do(t, admin, "GET", c.path, "Authorization", c.auth)
		if res.StatusCode != c.status {
			t.Errorf("%s (auth %q): %d, want %d", c.path, c.auth, res.StatusCode, c.status)
		}
	}
}

func TestOverviewReportsStreamsProjectorsAndTenants(t *testing.T) {
	js := fixture.JetStream(t)
	ctx := context.Background()
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "LEDGER", Subjects: []string{"ledger.>"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "projector-n1", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := js.Publish(ctx, "ledger.x", []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	m := observe.NewMetrics()
	for _, r := range []struct {
		tenant, status string
		n              int
	}{{"acme", "200", 5}, {"acme", "500", 2}, {"acme", "429", 1}, {"globex", "200", 3}} {
		for range r.n {
			m.HTTPRequests.WithLabelValues("/chat", "POST", r.status, r.tenant).Inc()
			m.HTTPDuration.WithLabelValues("/chat", "POST", r.status, r.tenant).Observe(0.01)
		}
	}
	stats := console.NewGrainStats(js.Conn(), "test.grains", "n1", "127.0.0.1:1", func() map[string]int {
		return map[string]int{"ChatSession": 4}
	}, func() int { return 1 })
	stop, err := stats.Serve()
	if err != nil {
		t.Fatal(err)
	}
	defer stop()

	h := console.OperatorHandler(console.OperatorDeps{Node: "n1", JetStream: js, Gatherer: m.Registry, Grains: stats})
	res := do(t, h, "GET", "/operator/api/overview")
	var o struct {
		Streams []struct {
			Name     string `json:"name"`
			Messages uint64 `json:"messages"`
		} `json:"streams"`
		Projectors []struct {
			Consumer string `json:"consumer"`
			Lag      uint64 `json:"lag"`
		} `json:"projectors"`
		Tenants []console.TenantSeries `json:"tenants"`
		Grains  []console.MemberGrains `json:"grains"`
		Errors  []string               `json:"errors"`
	}
	if err := json.NewDecoder(res.Body).Decode(&o); err != nil {
		t.Fatal(err)
	}
	if len(o.Errors) > 0 {
		t.Fatalf("errors: %v", o.Errors)
	}
	if len(o.Streams) != 1 || o.Streams[0].Name != "LEDGER" || o.Streams[0].Messages != 3 {
		t.Errorf("streams %+v, want LEDGER with 3 messages", o.Streams)
	}
	if len(o.Projectors) != 1 || o.Projectors[0].Consumer != "projector-n1" || o.Projectors[0].Lag != 3 {
		t.Errorf("projectors %+v, want projector-n1 with lag 3", o.Projectors)
	}
	if len(o.Grains) != 1 || o.Grains[0].Kinds["ChatSession"] != 4 || o.Grains[0].Node != "n1" {
		t.Errorf("grains %+v, want n1 with 4 ChatSession", o.Grains)
	}
	want := map[string][3]uint64{"acme": {8, 1, 2}, "globex": {3, 0, 0}} // requests, 4xx, 5xx
	if len(o.Tenants) != len(want) {
		t.Fatalf("tenants %+v", o.Tenants)
	}
	for _, ts := range o.Tenants {
		w := want[ts.Tenant]
		if ts.Requests != w[0] || ts.ClientError != w[1] || ts.ServerError != w[2] || ts.LatencyN != w[0] {
			t.Errorf("%s: %+v, want requests/4xx/5xx %v", ts.Tenant, ts, w)
		}
		if len(ts.Counts) == 0 || ts.Counts[len(ts.Counts)-1] != w[0] {
			t.Errorf("%s: bucket counts %v, want the last bound to hold all %d", ts.Tenant, ts.Counts, w[0])
		}
	}
}

// Two members answering on one NATS: a gather sees both.
func TestGrainStatsGathersEveryMember(t *testing.T) {
	js := fixture.JetStream(t)
	nc := js.Conn()
	members := func() int { return 2 }
	a := console.NewGrainStats(nc, "g", "a", "10.0.0.1:1", func() map[string]int { return map[string]int{"Budget": 1} }, members)
	b := console.NewGrainStats(nc, "g", "b", "10.0.0.2:1", func() map[string]int { return map[string]int{"Budget": 2} }, members)
	for _, g := range []*console.GrainStats{a, b} {
		stop, err := g.Serve()
		if err != nil {
			t.Fatal(err)
		}
		defer stop()
	}
	got, err := a.Grains(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Node != "a" || got[1].Node != "b" || got[1].Kinds["Budget"] != 2 {
		t.Fatalf("gathered %+v, want a and b", got)
	}
}
