package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	valerrors "github.com/pb33f/libopenapi-validator/errors"
	"github.com/pb33f/libopenapi-validator/schema_validation"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"

	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/gateway/speech"
	"github.com/crispy-enigma/crispy/metering"
	"github.com/crispy-enigma/crispy/store"
	"github.com/crispy-enigma/crispy/tools"
)

// openAPISpec is the embedded description parsed by libopenapi, with its request/response
// validator (libopenapi-validator: OpenAPI 3.1, JSON Schema 2020-12).
type openAPISpec struct {
	model *v3.Document
	val   validator.Validator
}

func loadOpenAPI(t *testing.T) *openAPISpec {
	t.Helper()
	doc, err := libopenapi.NewDocument(openAPIDoc)
	if err != nil {
		t.Fatalf("parse openapi.json: %v", err)
	}
	m, err := doc.BuildV3Model()
	if err != nil {
		t.Fatalf("build openapi.json model: %v", err)
	}
	val, errs := validator.NewValidator(doc)
	if len(errs) > 0 {
		t.Fatalf("openapi validator: %v", errs)
	}
	return &openAPISpec{model: &m.Model, val: val}
}

func (s *openAPISpec) validateSchema(t *testing.T, name string, payload []byte) {
	t.Helper()
	proxy, found := s.model.Components.Schemas.Get(name)
	if !found {
		t.Fatalf("openapi.json has no schema %s", name)
	}
	sv := schema_validation.NewSchemaValidator()
	if valid, errs := sv.ValidateSchemaBytes(proxy.Schema(), payload); !valid {
		t.Errorf("%s does not validate %s: %s", name, payload, validationErrors(errs))
	}
}

func validationErrors(errs []*valerrors.ValidationError) string {
	var b strings.Builder
	for _, e := range errs {
		fmt.Fprintf(&b, "\n  - %s: %s", e.Message, e.Reason)
		for _, f := range e.SchemaValidationErrors {
			fmt.Fprintf(&b, "\n      %s at %s (%s)", f.Reason, f.FieldPath, f.KeywordLocation)
		}
	}
	return b.String()
}

// TestOpenAPIDocumentIsValid: the embedded description is a valid OpenAPI 3.1 document.
func TestOpenAPIDocumentIsValid(t *testing.T) {
	spec := loadOpenAPI(t)
	if !strings.HasPrefix(spec.model.Version, "3.1") {
		t.Fatalf("openapi = %q, want 3.1", spec.model.Version)
	}
	if valid, errs := spec.val.ValidateDocument(); !valid {
		t.Fatalf("openapi.json is not a valid OpenAPI document:%s", validationErrors(errs))
	}
}

// echoParam is an Echo path parameter; OpenAPI writes it {name}.
var echoParam = regexp.MustCompile(`:([A-Za-z0-9_]+)`)

// TestOpenAPIDescribesEveryRoute: every route a fully wired server registers is in the
// description with its method, and every tenant-listener path of the description is registered.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	spec := loadOpenAPI(t)
	srv := newOpenAPIServer(t)
	registered := map[string]bool{}
	for _, r := range srv.echo.Routes() {
		// A trailing * (model IDs hold slashes) is the description's {model}.
		path := strings.Replace(echoParam.ReplaceAllString(r.Path, "{$1}"), "/*", "/{model}", 1)
		registered[path] = true
		item, found := spec.model.Paths.PathItems.Get(path)
		if !found {
			t.Errorf("%s %s is registered but not in openapi.json (as %s)", r.Method, r.Path, path)
			continue
		}
		if _, found := item.GetOperations().Get(strings.ToLower(r.Method)); !found {
			t.Errorf("%s %s is registered but openapi.json has no %s operation on %s", r.Method, r.Path, r.Method, path)
		}
	}
	for path, item := range spec.model.Paths.PathItems.FromOldest() {
		if len(item.Servers) > 0 {
			continue // the admin listener's routes (AdminHandler), not Echo's
		}
		if !registered[path] {
			t.Errorf("openapi.json describes %s, which the server does not register", path)
		}
	}
}

// TestOpenAPIServedWithoutTenant: GET /openapi.json needs no tenant and answers the embedded
// document; other methods on it still resolve the tenant first.
func TestOpenAPIServedWithoutTenant(t *testing.T) {
	ts := newTestServer(t, testServerOpts{noChat: true})
	resp, body := ts.do(t, http.MethodGet, OpenAPIPath, "")
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, openAPIDoc) {
		t.Fatalf("GET %s: %d, %d bytes; want 200 and the embedded document", OpenAPIPath, resp.StatusCode, len(body))
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q", ct)
	}
	if resp.Header.Get("x-trace-id") == "" {
		t.Error("no x-trace-id")
	}
	resp, body = ts.do(t, http.MethodPost, OpenAPIPath, "{}")
	if env := decodeEnvelope(t, resp, body); resp.StatusCode != http.StatusBadRequest || env.Error.Code != CodeTenantRequired {
		t.Errorf("POST %s without a tenant: %d %s, want 400 tenant_required", OpenAPIPath, resp.StatusCode, body)
	}
}

// openAPITenants: "oa" may use tools and speech; "quiet" may use neither; "tight" admits one request per
// window; "allowlist" allows one model only. All public, plus testTenants' keyed ones.
func openAPITenants() []string {
	flags := func(id, v string, repl ...string) string {
		s := strings.Replace(tenantJSON(id, `, "public": true`), `"featureFlags": {}`, `"featureFlags": `+v, 1)
		for i := 0; i+1 < len(repl); i += 2 {
			s = strings.Replace(s, repl[i], repl[i+1], 1)
		}
		return s
	}
	return []string{
		flags("oa", `{"tools_enabled": true, "tts_enabled": true}`),
		flags("quiet", `{"tools_enabled": false}`),
		flags("tight", `{}`, `"rateLimit": {"perMinute": 1000, "burst": 1000}`, `"rateLimit": {"perMinute": 1, "burst": 1}`),
		flags("allowlist", `{"modelAllowList": true}, "allowedModels": ["local/extractive"]`),
	}
}

// openAPIServer is the API with every route group wired over real parts (embedded NATS and
// JetStream, the grains, SQLite and the embedded vector store in a temp dir, the tool registry,
// espeak-ng), and the admin handler beside it.
type openAPIServer struct {
	*Server
	URL      string
	AdminURL string
	dbs      *store.TenantDBs
}

const openAPIAdminToken = "admin-secret"

func newOpenAPIServer(t *testing.T) *openAPIServer {
	t.Helper()
	ts := newTestServer(t, testServerOpts{
		env:     func(e *config.Env) { e.MaxRequestBodySize = 8192 },
		tenants: openAPITenants(),
		rag:     &testRAGOpts{jobMinDocs: 3},
		meter: func(t testing.TB, ts *testServer, o *metering.Options) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			ledger, err := store.OpenLedger(ctx, ts.js, store.LedgerOptions{})
			if err != nil {
				t.Fatal(err)
			}
			o.Ledger = ledger
		},
		deps: func(t testing.TB, ts *testServer, deps *Deps) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cfgKV, err := store.OpenTenantKV(ctx, ts.js, "config", store.KVOptions{})
			if err != nil {
				t.Fatal(err)
			}
			dbs := ts.rag.dbs
			proj := store.NewProjector(ts.js, dbs, store.ProjectorOptions{Durable: "projector-openapi", RetryDelay: 50 * time.Millisecond})
			if err := proj.Start(ctx); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(proj.Stop)
			reg := tools.NewRegistry()
			if err := tools.RegisterBuiltins(reg, tools.Deps{Completer: ts.mt.Completer(ts.rag.router)}); err != nil {
				t.Fatal(err)
			}
			deps.Tools = &ToolsDeps{Registry: reg}
			deps.Speech = &SpeechDeps{Router: speech.NewRouter(speech.NewEspeak(speech.EspeakOptions{}))}
			deps.Usage = dbs
			deps.OpenAI = &OpenAIDeps{Models: ts.rag.router, Sessions: ts.grains}
			deps.Idempotency = cfgKV
			deps.TenantMetrics = &TenantMetricsDeps{Reader: dbs, Alerts: cfgKV, Prices: ts.rag.router}
		},
	})
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = ts.Shutdown(sctx)
	})
	mux := http.NewServeMux()
	mux.Handle("/admin/", ReindexHandler(ts.rag.service, openAPIAdminToken))
	mux.Handle("/", AdminHandler(ts.metrics, ts.Ready, openAPIAdminToken))
	admin := httptest.NewServer(mux)
	t.Cleanup(admin.Close)
	return &openAPIServer{Server: ts.Server, URL: ts.URL, AdminURL: admin.URL, dbs: ts.rag.dbs}
}

// apiCall is one request of TestOpenAPIValidatesTraffic.
type apiCall struct {
	name        string
	admin       bool // to the admin listener
	method      string
	path        string // may hold {job} and {alert}: IDs from earlier answers
	body        string
	contentType string   // default application/json when there is a body
	headers     []string // "Name: value"
	status      int
	// offSpec: the request breaks the description on purpose (to check the server refuses
	// what the description forbids); the request must fail validation, the response must pass.
	offSpec bool
	// undescribed: the route is not in the description (unknown path, wrong method); only the
	// body is checked, against ErrorEnvelope.
	undescribed bool
	speech      bool // needs espeak-ng and the encoders
	check       func(t *testing.T, resp *http.Response, body []byte, ids map[string]string)
	frames      bool   // an SSE stream: every event's data is checked against its frame schema
	code        string // the error code expected in the envelope
}

func multipartIngest(t *testing.T) (string, string) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for name, text := range map[string]string{"tides.md": "# Tides\n\nTides follow the moon twice a day.", "orbit.txt": "The moon orbits the earth every 27 days."} {
		fw, err := w.CreateFormFile("file", name)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = fw.Write([]byte(text))
	}
	_ = w.WriteField("source", "upload")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.String(), w.FormDataContentType()
}

// TestOpenAPIValidatesTraffic sends real requests to a fully wired server (both listeners) and
// validates each request and the server's real response against the description with
// libopenapi-validator: status, headers, content type and body schema. SSE streams are checked
// frame by frame against the frame schemas.
func TestOpenAPIValidatesTraffic(t *testing.T) {
	spec := loadOpenAPI(t)
	srv := newOpenAPIServer(t)
	mpBody, mpType := multipartIngest(t)
	oa := []string{"x-tenant-id: oa"}
	calls := []apiCall{
		{name: "openapi", method: "GET", path: "/openapi.json", status: 200},
		{name: "health by header", method: "GET", path: "/health", headers: oa, status: 200},
		{name: "health HEAD", method: "HEAD", path: "/health", headers: oa, status: 200},
		{name: "health by key", method: "GET", path: "/health", headers: []string{"x-api-key: " + testKey}, status: 200},
		{name: "health by bearer", method: "GET", path: "/health", headers: []string{"Authorization: Bearer " + testKey}, status: 200},
		{name: "health by host", method: "GET", path: "/health", headers: []string{"Host: open.example.test"}, status: 200},
		{name: "no tenant", method: "GET", path: "/health", status: 400, code: CodeTenantRequired},
		{name: "unknown tenant", method: "GET", path: "/health", headers: []string{"x-tenant-id: nope"}, status: 404, code: CodeTenantUnknown},
		{name: "missing key", method: "GET", path: "/health", headers: []string{"x-tenant-id: acme"}, status: 401, code: CodeUnauthorized},
		{name: "key of another tenant", method: "GET", path: "/health", headers: []string{"x-tenant-id: acme", "x-api-key: " + globexKey}, status: 403, code: CodeForbidden},
		{name: "unknown route", method: "GET", path: "/nowhere", headers: oa, status: 404, code: CodeNotFound, undescribed: true},
		{name: "wrong method", method: "GET", path: "/chat", headers: oa, status: 405, code: CodeMethodNotAllowed, undescribed: true},

		{name: "ingest one", method: "POST", path: "/ingest", headers: oa, status: 200,
			body: `{"docId":"moon","text":"The moon orbits the earth every 27 days. Tides follow the moon.","title":"Moon","url":"https://example.test/moon"}`},
		{name: "ingest batch", method: "POST", path: "/ingest", headers: oa, status: 200,
			body: `{"documents":[{"docId":"sun","text":"The sun is a star."},{"docId":"bad..id","text":"x"}]}`},
		// The searches come before the ingest job: its documents land in the background and
		// change the tenant's documents, which (rightly) empties its search cache.
		{name: "search", method: "POST", path: "/search", headers: oa, body: `{"query":"how often does the moon orbit?","topK":3}`, status: 200},
		{name: "search cached", method: "POST", path: "/search", headers: oa, body: `{"query":"how often does the moon orbit?","topK":3}`, status: 200,
			check: func(t *testing.T, resp *http.Response, _ []byte, _ map[string]string) {
				if resp.Header.Get("x-cache") != "HIT" {
					t.Errorf("x-cache = %q, want HIT", resp.Header.Get("x-cache"))
				}
			}},
		{name: "ingest job", method: "POST", path: "/ingest", headers: oa, status: 202,
			body:  `{"documents":[{"docId":"a","text":"alpha"},{"docId":"b","text":"beta"},{"docId":"c","text":"gamma"},{"docId":"d","text":"delta"}]}`,
			check: rememberID("{job}", "jobId")},
		{name: "ingest job status", method: "GET", path: "/ingest/jobs/{job}", headers: oa, status: 200},
		{name: "ingest multipart", method: "POST", path: "/ingest", headers: oa, body: mpBody, contentType: mpType, status: 200},
		{name: "ingest blank", method: "POST", path: "/ingest", headers: oa, body: `{"docId":"blank","text":"   "}`, status: 400, code: CodeInvalidRequest},
		{name: "ingest malformed", method: "POST", path: "/ingest", headers: oa, body: `{"docId":`, status: 400, code: CodeInvalidJSON, offSpec: true},
		{name: "unknown job", method: "GET", path: "/ingest/jobs/0123abcd", headers: oa, status: 404, code: CodeNotFound},
		{name: "documents", method: "GET", path: "/documents", headers: oa, status: 200},
		{name: "v1 models", method: "GET", path: "/v1/models", headers: oa, status: 200},
		{name: "v1 model", method: "GET", path: "/v1/models/local%2Fextractive", headers: oa, status: 200},
		{name: "v1 chat completion", method: "POST", path: "/v1/chat/completions", headers: oa, status: 200,
			body: `{"model":"local/extractive","messages":[{"role":"user","content":"how often does the moon orbit?"}]}`},
		{name: "v1 chat completion without /v1", method: "POST", path: "/chat/completions", headers: oa, status: 200,
			body: `{"model":"local/extractive","messages":[{"role":"user","content":"hello"}]}`},
		{name: "v1 embeddings", method: "POST", path: "/v1/embeddings", headers: oa, status: 200,
			body: `{"model":"local/hash-embed","input":["a","b"],"encoding_format":"base64"}`},
		{name: "v1 unknown model", method: "POST", path: "/v1/chat/completions", headers: oa, status: 404,
			body: `{"model":"nowhere/model","messages":[{"role":"user","content":"hi"}]}`},
		{name: "search topK too large", method: "POST", path: "/search", headers: oa, body: `{"query":"moon","topK":99}`, status: 400, code: CodeInvalidRequest, offSpec: true},
		{name: "search rate limited 1", method: "POST", path: "/search", headers: []string{"x-tenant-id: tight"}, body: `{"query":"moon"}`, status: 200},
		{name: "search rate limited 2", method: "POST", path: "/search", headers: []string{"x-tenant-id: tight"}, body: `{"query":"moon"}`, status: 429, code: CodeRateLimited},
		{name: "delete document", method: "DELETE", path: "/documents/sun", headers: oa, status: 200},
		{name: "delete unknown document", method: "DELETE", path: "/documents/nothing", headers: oa, status: 404, code: CodeNotFound},

		{name: "chat JSON", method: "POST", path: "/chat", headers: oa, status: 200,
			body: `{"message":"how often does the moon orbit the earth?","sessionId":"s1","stream":false}`},
		{name: "chat SSE", method: "POST", path: "/chat", headers: oa, status: 200, frames: true,
			body: `{"message":"and the tides?","sessionId":"s1"}`},
		{name: "chat with a tool", method: "POST", path: "/chat", headers: oa, status: 200, frames: true,
			body: `{"message":"what is that?","sessionId":"s2","tool_name":"calculate","tool_params":{"expression":"6*7"}}`},
		{name: "chat failing tool", method: "POST", path: "/chat", headers: oa, status: 400, code: CodeToolError,
			body: `{"message":"what is that?","tool_name":"calculate","tool_params":{"expression":"1/"},"stream":false}`},
		{name: "chat empty message", method: "POST", path: "/chat", headers: oa, body: `{"message":""}`, status: 400, code: CodeInvalidRequest, offSpec: true},
		{name: "chat model not allowed", method: "POST", path: "/chat", headers: []string{"x-tenant-id: allowlist"}, status: 403, code: CodeModelNotAllowed,
			body: `{"message":"hi","modelId":"other/model","stream":false}`},
		{name: "chat too large", method: "POST", path: "/chat", headers: oa, status: 413, code: CodePayloadTooLarge,
			body: `{"message":"` + strings.Repeat("a", 9000) + `"}`},
		{name: "history", method: "GET", path: "/chat/s1/history?limit=10", headers: oa, status: 200},
		{name: "history bad session", method: "GET", path: "/chat/a.b/history", headers: oa, status: 400, code: CodeInvalidRequest, offSpec: true},
		{name: "delete session", method: "DELETE", path: "/chat/s2", headers: oa, status: 200},

		{name: "tools", method: "GET", path: "/schema/tools", headers: oa, status: 200},
		{name: "tool", method: "POST", path: "/tools/execute", headers: oa, body: `{"tool_name":"calculate","params":{"expression":"2^10 / (3 + 1)"}}`, status: 200},
		{name: "tool failure", method: "POST", path: "/tools/execute", headers: oa, body: `{"tool_name":"calculate","params":{"expression":"1","extra":true}}`, status: 400, code: tools.CodeValidationFailed},
		{name: "tool unknown", method: "POST", path: "/tools/execute", headers: oa, body: `{"tool_name":"nope","params":{}}`, status: 404, code: tools.CodeToolNotFound},
		{name: "tool denied", method: "POST", path: "/tools/execute", headers: []string{"x-tenant-id: quiet"}, body: `{"tool_name":"calculate","params":{"expression":"1"}}`, status: 403, code: tools.CodePermissionDenied},

		{name: "tts wav", method: "POST", path: "/tts", headers: oa, body: `{"text":"Hello there","format":"wav"}`, status: 200, speech: true},
		{name: "tts mp3", method: "POST", path: "/tts", headers: oa, body: `{"text":"Hello there"}`, status: 200, speech: true},
		{name: "tts bad format", method: "POST", path: "/tts", headers: oa, body: `{"text":"Hi","format":"flac"}`, status: 400, code: CodeInvalidRequest, offSpec: true},
		{name: "tts not enabled", method: "POST", path: "/tts", headers: []string{"x-tenant-id: quiet"}, body: `{"text":"Hi"}`, status: 403, code: CodeTTSNotEnabled},
		{name: "voices", method: "GET", path: "/tts/voices", headers: oa, status: 200, speech: true},

		{name: "usage", method: "GET", path: "/usage?groupBy=model", headers: oa, status: 200,
			check: func(t *testing.T, _ *http.Response, body []byte, _ map[string]string) {
				if !strings.Contains(string(body), `"key":"local/extractive"`) {
					t.Errorf("usage has no local/extractive row: %s", body)
				}
			}},
		{name: "usage bad groupBy", method: "GET", path: "/usage?groupBy=week", headers: oa, status: 400, code: CodeInvalidRequest, offSpec: true},
		{name: "cost", method: "GET", path: "/metrics/cost?period=1h", headers: oa, status: 200},
		{name: "search cache", method: "GET", path: "/metrics/search-cache", headers: oa, status: 200},
		{name: "tool metrics", method: "GET", path: "/metrics/tools/execution?period=7d", headers: oa, status: 200},
		{name: "slis", method: "GET", path: "/metrics/slis", headers: oa, status: 200},
		{name: "anomalies", method: "GET", path: "/metrics/anomalies", headers: oa, status: 200},
		{name: "bad period", method: "GET", path: "/metrics/cost?period=2d", headers: oa, status: 400, code: CodeInvalidRequest, offSpec: true},
		{name: "add alert", method: "POST", path: "/metrics/alerts", headers: oa, status: 201,
			body:  `{"metric":"model.requests","operator":"gte","threshold":1,"period":"1h","name":"busy"}`,
			check: rememberID("{alert}", "id")},
		{name: "alerts", method: "GET", path: "/metrics/alerts", headers: oa, status: 200},
		{name: "overview", method: "GET", path: "/metrics/overview", headers: oa, status: 200},
		{name: "delete alert", method: "DELETE", path: "/metrics/alerts/{alert}", headers: oa, status: 200},
		{name: "delete alert by query", method: "DELETE", path: "/metrics/alerts?id={alert}", headers: oa, status: 404, code: CodeNotFound},

		{name: "admin healthz", admin: true, method: "GET", path: "/healthz", status: 200},
		{name: "admin readyz", admin: true, method: "GET", path: "/readyz", headers: []string{"Authorization: Bearer " + openAPIAdminToken}, status: 200},
		{name: "admin metrics", admin: true, method: "GET", path: "/metrics", headers: []string{"Authorization: Bearer " + openAPIAdminToken}, status: 200},
		{name: "admin without token", admin: true, method: "GET", path: "/metrics", status: 401},
		{name: "admin pprof", admin: true, method: "GET", path: "/debug/pprof/", headers: []string{"Authorization: Bearer " + openAPIAdminToken}, status: 200},
		{name: "admin reindex", admin: true, method: "POST", path: "/admin/reindex?tenant=oa", headers: []string{"Authorization: Bearer " + openAPIAdminToken}, status: 202},
		{name: "admin reindex unknown tenant", admin: true, method: "POST", path: "/admin/reindex?tenant=nobody", headers: []string{"Authorization: Bearer " + openAPIAdminToken}, status: 404, code: CodeTenantUnknown},
		{name: "admin reindex without tenant", admin: true, method: "POST", path: "/admin/reindex", headers: []string{"Authorization: Bearer " + openAPIAdminToken}, status: 400, code: CodeInvalidRequest, offSpec: true},
		{name: "admin job", admin: true, method: "GET", path: "/admin/jobs/oa/{job}", headers: []string{"Authorization: Bearer " + openAPIAdminToken}, status: 200},
		{name: "admin unknown job", admin: true, method: "GET", path: "/admin/jobs/oa/0123abcd", headers: []string{"Authorization: Bearer " + openAPIAdminToken}, status: 404, code: CodeNotFound},
		{name: "admin heap", admin: true, method: "GET", path: "/debug/pprof/heap?debug=1", headers: []string{"Authorization: Bearer " + openAPIAdminToken}, status: 200},
	}
	ids := map[string]string{}
	for _, call := range calls {
		t.Run(call.name, func(t *testing.T) {
			if call.speech {
				needSpeechBinaries(t)
			}
			if call.name == "usage" {
				// The ledger reaches the read model through the projector: wait for the chat calls.
				waitForModelCalls(t, srv.dbs, "oa")
			}
			path := call.path
			for k, v := range ids {
				path = strings.ReplaceAll(path, k, v)
			}
			base := srv.URL
			if call.admin {
				base = srv.AdminURL
			}
			req := newAPIRequest(t, call, base+path)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != call.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, call.status, body)
			}
			if call.code != "" {
				var env testEnvelope
				if err := json.Unmarshal(body, &env); err != nil || env.Error == nil || env.Error.Code != call.code {
					t.Errorf("error code: %s, want %s", body, call.code)
				}
			}
			if call.undescribed {
				spec.validateSchema(t, "ErrorEnvelope", body)
				return
			}
			// Validate a fresh copy of the request (the sent one's body is consumed) and the response.
			vreq := newAPIRequest(t, call, base+path)
			valid, errs := spec.val.ValidateHttpRequest(vreq)
			switch {
			case call.offSpec && valid:
				t.Errorf("the request passes the description, but it was meant to break it")
			case !call.offSpec && !valid:
				t.Errorf("request does not match openapi.json:%s", validationErrors(errs))
			}
			resp.Body = io.NopCloser(bytes.NewReader(body))
			if valid, errs := spec.val.ValidateHttpResponse(newAPIRequest(t, call, base+path), resp); !valid {
				t.Errorf("response %d does not match openapi.json:%s\nbody: %.600s", resp.StatusCode, validationErrors(errs), body)
			}
			if call.frames {
				checkFrames(t, spec, body)
			}
			if call.check != nil {
				call.check(t, resp, body, ids)
			}
		})
	}
}

// rememberID keeps the string field of an answer's data under key, for the paths of later calls.
func rememberID(key, field string) func(t *testing.T, resp *http.Response, body []byte, ids map[string]string) {
	return func(t *testing.T, _ *http.Response, body []byte, ids map[string]string) {
		t.Helper()
		var env struct{ Data map[string]any }
		_ = json.Unmarshal(body, &env)
		id, _ := env.Data[field].(string)
		if id == "" {
			t.Fatalf("no %s in %s", field, body)
		}
		ids[key] = id
	}
}

// checkFrames validates every SSE event against its frame schema and checks the stream's shape:
// tool events first, then tokens, and done last.
func checkFrames(t *testing.T, spec *openAPISpec, body []byte) {
	t.Helper()
	frames := parseSSE(t, body)
	schemaOf := map[string]string{"": "TokenFrame", "tool_call": "ToolCallFrame", "tool_result": "ToolResultFrame",
		"error": "ErrorFrame", "done": "DoneFrame"}
	var names []string
	for _, f := range frames {
		name, known := schemaOf[f.event]
		if !known {
			t.Errorf("event %q is not described", f.event)
			continue
		}
		names = append(names, f.event)
		spec.validateSchema(t, name, f.data)
	}
	if len(names) == 0 || names[len(names)-1] != "done" || slices.Index(names, "done") != len(names)-1 {
		t.Errorf("events %q: want done once, last", names)
	}
}

// newAPIRequest builds call's request for url.
func newAPIRequest(t *testing.T, call apiCall, url string) *http.Request {
	t.Helper()
	var rd io.Reader
	if call.body != "" {
		rd = strings.NewReader(call.body)
	}
	req, err := http.NewRequest(call.method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if call.body != "" {
		ct := call.contentType
		if ct == "" {
			ct = echo.MIMEApplicationJSON
		}
		req.Header.Set("Content-Type", ct)
	}
	for _, h := range call.headers {
		k, v, _ := strings.Cut(h, ":")
		if strings.EqualFold(k, "host") {
			req.Host = strings.TrimSpace(v)
			continue
		}
		req.Header.Set(k, strings.TrimSpace(v))
	}
	return req
}

// waitForModelCalls waits (bounded) until the tenant's read model holds a model call.
func waitForModelCalls(t *testing.T, dbs *store.TenantDBs, tenant string) {
	t.Helper()
	db, err := dbs.DB(t.Context(), tenant)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a model call of "+tenant+" projected", func() bool {
		var n int
		_ = db.QueryRowContext(t.Context(), `SELECT count(*) FROM ledger_events WHERE kind = ?`, store.KindModelCall).Scan(&n)
		return n > 0
	})
}

// TestOpenAPIValidatorRejectsWrongAnswers guards the traffic test: answers that break the
// description must fail validation, or a passing traffic test would prove nothing.
func TestOpenAPIValidatorRejectsWrongAnswers(t *testing.T) {
	spec := loadOpenAPI(t)
	for _, tc := range []struct {
		name, method, path string
		status             int
		header, body       string
	}{
		{"no traceId", "GET", "/health", 200, "t1", `{"ok":true,"data":{}}`},
		{"no trace header", "GET", "/documents", 200, "", `{"ok":true,"data":{"documents":[],"count":0},"traceId":"t1"}`},
		{"undeclared status", "GET", "/documents", 418, "t1", `{"ok":false,"error":{"code":"internal_error","message":"x"},"traceId":"t1"}`},
		{"unknown error code", "GET", "/documents", 400, "t1", `{"ok":false,"error":{"code":"teapot","message":"x"},"traceId":"t1"}`},
		{"wrong field type", "GET", "/documents", 200, "t1", `{"ok":true,"data":{"documents":[],"count":"0"},"traceId":"t1"}`},
		{"extra envelope field", "GET", "/documents", 200, "t1", `{"ok":true,"data":{"documents":[],"count":0},"traceId":"t1","x":1}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, "http://localhost:8787"+tc.path, nil)
			req.Header.Set("x-tenant-id", "oa")
			resp := &http.Response{StatusCode: tc.status, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(tc.body)), Request: req}
			resp.Header.Set("Content-Type", echo.MIMEApplicationJSON)
			if tc.header != "" {
				resp.Header.Set("x-trace-id", tc.header)
			}
			if valid, _ := spec.val.ValidateHttpResponse(req, resp); valid {
				t.Errorf("%s %s %d %s passes validation", tc.method, tc.path, tc.status, tc.body)
			}
		})
	}
}
