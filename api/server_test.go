package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/labstack/echo/v4"

	"github.com/crispy-enigma/crispy/config"
)

type testEnvelope struct {
	OK      *bool           `json:"ok"`
	Data    json.RawMessage `json:"data"`
	Error   *errorBody      `json:"error"`
	TraceID string          `json:"traceId"`
}

// decodeEnvelope checks docs/api.md's envelope: JSON content type, ok present, exactly one of
// data/error, a trace ID equal to the x-trace-id header.
func decodeEnvelope(t *testing.T, resp *http.Response, body []byte) testEnvelope {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type = %q, want application/json; body %s", ct, body)
	}
	var env testEnvelope
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatalf("body is not an envelope: %v: %s", err, body)
	}
	if env.OK == nil {
		t.Fatalf("envelope without ok: %s", body)
	}
	if *env.OK && (env.Data == nil || env.Error != nil) {
		t.Fatalf("success envelope must have data and no error: %s", body)
	}
	if !*env.OK && (env.Error == nil || env.Error.Code == "" || env.Error.Message == "" || env.Data != nil) {
		t.Fatalf("failure envelope must have error{code,message} and no data: %s", body)
	}
	if env.TraceID == "" || env.TraceID != resp.Header.Get("x-trace-id") {
		t.Fatalf("traceId %q must equal the x-trace-id header %q", env.TraceID, resp.Header.Get("x-trace-id"))
	}
	return env
}

func wantError(t *testing.T, resp *http.Response, body []byte, status int, code string) testEnvelope {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, status, body)
	}
	env := decodeEnvelope(t, resp, body)
	if *env.OK || env.Error.Code != code {
		t.Fatalf("error code = %+v, want %q", env.Error, code)
	}
	return env
}

// docs/api.md "Tenant resolution": x-tenant-id beats the host, which beats the API key; nothing
// resolves → 400 tenant_required; a resolved ID with no config → 404 tenant_unknown.
func TestTenantResolution(t *testing.T) {
	ts := newTestServer(t, testServerOpts{noChat: true})
	tests := []struct {
		name       string
		headers    []string
		wantStatus int
		wantCode   string
		wantTenant string
		wantSource string
	}{
		{name: "nothing resolves", wantStatus: 400, wantCode: CodeTenantRequired},
		{name: "header", headers: []string{"x-tenant-id: open"}, wantStatus: 200, wantTenant: "open", wantSource: "header"},
		{name: "unknown header", headers: []string{"x-tenant-id: nope"}, wantStatus: 404, wantCode: CodeTenantUnknown},
		{name: "bogus header beats a valid host", headers: []string{"x-tenant-id: nope", "Host: open.example.test"}, wantStatus: 404, wantCode: CodeTenantUnknown},
		{name: "header beats host", headers: []string{"x-tenant-id: open", "Host: acme.example.test"}, wantStatus: 200, wantTenant: "open", wantSource: "header"},
		{name: "a public tenant refuses another tenant's key", headers: []string{"x-tenant-id: open", "x-api-key: " + testKey}, wantStatus: 403, wantCode: CodeForbidden},
		{name: "host", headers: []string{"Host: open.example.test"}, wantStatus: 200, wantTenant: "open", wantSource: "host"},
		{name: "host ignores port and case", headers: []string{"Host: OPEN.example.test:8787"}, wantStatus: 200, wantTenant: "open", wantSource: "host"},
		{name: "unknown host and no key", headers: []string{"Host: elsewhere.test"}, wantStatus: 400, wantCode: CodeTenantRequired},
		{name: "api key", headers: []string{"x-api-key: " + testKey}, wantStatus: 200, wantTenant: "acme", wantSource: "apiKey"},
		{name: "bearer key", headers: []string{"Authorization: Bearer " + testKey}, wantStatus: 200, wantTenant: "acme", wantSource: "apiKey"},
		{name: "host beats key", headers: []string{"Host: globex.example.test", "x-api-key: " + globexKey}, wantStatus: 200, wantTenant: "globex", wantSource: "host"},
		{name: "unknown key", headers: []string{"x-api-key: ck_nobody"}, wantStatus: 401, wantCode: CodeUnauthorized},
		{name: "two tenant headers", headers: []string{"x-tenant-id: open", "x-tenant-id: acme"}, wantStatus: 400, wantCode: CodeInvalidRequest},
		{name: "conflicting keys", headers: []string{"x-api-key: " + testKey, "Authorization: Bearer " + globexKey}, wantStatus: 400, wantCode: CodeInvalidRequest},
		{name: "the same key twice", headers: []string{"x-api-key: " + testKey, "Authorization: Bearer " + testKey}, wantStatus: 200, wantTenant: "acme", wantSource: "apiKey"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := ts.do(t, "GET", "/health", "", tt.headers...)
			if tt.wantCode != "" {
				wantError(t, resp, body, tt.wantStatus, tt.wantCode)
				return
			}
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d: %s", resp.StatusCode, tt.wantStatus, body)
			}
			env := decodeEnvelope(t, resp, body)
			var h healthData
			if err := json.Unmarshal(env.Data, &h); err != nil {
				t.Fatal(err)
			}
			if h.TenantID != tt.wantTenant || h.Source != tt.wantSource {
				t.Fatalf("tenant %q via %q, want %q via %q", h.TenantID, h.Source, tt.wantTenant, tt.wantSource)
			}
		})
	}
}

// docs/api.md "Authentication": a keyed tenant needs one of its keys (401), a key of another
// tenant is 403, and a tenant without keys is reachable only when public.
func TestAuthentication(t *testing.T) {
	ts := newTestServer(t, testServerOpts{noChat: true})
	tests := []struct {
		name    string
		headers []string
		status  int
		code    string
	}{
		{"keyed tenant without key", []string{"x-tenant-id: acme"}, 401, CodeUnauthorized},
		{"keyed tenant with wrong key", []string{"x-tenant-id: acme", "x-api-key: ck_wrong"}, 401, CodeUnauthorized},
		{"keyed tenant with another tenant's key", []string{"x-tenant-id: acme", "x-api-key: " + globexKey}, 403, CodeForbidden},
		{"host of one tenant, key of another", []string{"Host: acme.example.test", "Authorization: Bearer " + globexKey}, 403, CodeForbidden},
		{"keyed tenant with its key", []string{"x-tenant-id: acme", "x-api-key: " + testKey}, 200, ""},
		{"keyed tenant by host with bearer", []string{"Host: acme.example.test", "Authorization: bearer " + testKey}, 200, ""},
		{"keyless tenant that is not public", []string{"x-tenant-id: locked"}, 401, CodeUnauthorized},
		{"public tenant", []string{"x-tenant-id: open"}, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := ts.do(t, "GET", "/health", "", tt.headers...)
			if tt.code != "" {
				wantError(t, resp, body, tt.status, tt.code)
				return
			}
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			decodeEnvelope(t, resp, body)
		})
	}
}

func TestHealthFields(t *testing.T) {
	ts := newTestServer(t, testServerOpts{noChat: true, env: func(e *config.Env) { e.FallbackModelID = "fb" }})
	resp, body := ts.do(t, "GET", "/health", "", "x-tenant-id: open")
	env := decodeEnvelope(t, resp, body)
	var h map[string]any
	if err := json.Unmarshal(env.Data, &h); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"status", "tenantId", "environment", "modelId", "fallbackModelId", "source", "node", "version", "uptimeSeconds", "components"} {
		if _, ok := h[k]; !ok {
			t.Errorf("/health data lacks %q: %s", k, body)
		}
	}
	if h["status"] != "ok" || h["modelId"] != "local/extractive" || h["fallbackModelId"] != "fb" || h["environment"] != "test" {
		t.Errorf("unexpected health data: %s", body)
	}
	if comps, _ := h["components"].(map[string]any); comps["nats"] != "ok" {
		t.Errorf("components = %v, want nats ok", h["components"])
	}
}

// docs/api.md "Trace ID": x-trace-id, else cf-ray, else x-request-id, else a new UUIDv4; echoed in
// the envelope and the x-trace-id header on every response, errors included.
func TestTraceIDSources(t *testing.T) {
	ts := newTestServer(t, testServerOpts{noChat: true})
	uuidV4 := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	tests := []struct {
		name    string
		headers []string
		want    string
	}{
		{"x-trace-id wins", []string{"x-trace-id: t1", "cf-ray: r1", "x-request-id: q1"}, "t1"},
		{"cf-ray next", []string{"cf-ray: r1", "x-request-id: q1"}, "r1"},
		{"x-request-id last", []string{"x-request-id: q1"}, "q1"},
		{"generated", nil, ""},
		{"oversized header ignored", []string{"x-trace-id: " + strings.Repeat("a", 200)}, ""},
	}
	for _, tt := range tests {
		for _, tenant := range []string{"open", "nope"} { // success and error responses alike
			t.Run(tt.name+"/"+tenant, func(t *testing.T) {
				resp, body := ts.do(t, "GET", "/health", "", append(tt.headers, "x-tenant-id: "+tenant)...)
				env := decodeEnvelope(t, resp, body)
				if tt.want != "" && env.TraceID != tt.want {
					t.Fatalf("traceId = %q, want %q", env.TraceID, tt.want)
				}
				if tt.want == "" && !uuidV4.MatchString(env.TraceID) {
					t.Fatalf("generated traceId %q is not a UUIDv4", env.TraceID)
				}
			})
		}
	}
}

func TestUnknownRouteAndMethod(t *testing.T) {
	ts := newTestServer(t, testServerOpts{})
	resp, body := ts.do(t, "GET", "/no/such/route", "", "x-tenant-id: open")
	wantError(t, resp, body, 404, CodeNotFound)
	resp, body = ts.do(t, "POST", "/health", "{}", "x-tenant-id: open")
	wantError(t, resp, body, 405, CodeMethodNotAllowed)
	resp, body = ts.do(t, "PUT", "/chat/abc", "{}", "x-tenant-id: open")
	wantError(t, resp, body, 405, CodeMethodNotAllowed)
	resp, body = ts.do(t, "GET", "/chat", "", "x-tenant-id: open")
	wantError(t, resp, body, 405, CodeMethodNotAllowed)
	// Tenant resolution comes before routing (docs/api.md "Order").
	resp, body = ts.do(t, "GET", "/no/such/route", "")
	wantError(t, resp, body, 400, CodeTenantRequired)
}

func TestPanicIsEnvelopedWithTraceID(t *testing.T) {
	ts := newTestServer(t, testServerOpts{noChat: true})
	ts.echo.GET("/boom", func(echo.Context) error { panic("kaboom") })
	resp, body := ts.do(t, "GET", "/boom", "", "x-tenant-id: open", "x-trace-id: trace-panic")
	env := wantError(t, resp, body, 500, CodeInternal)
	if env.TraceID != "trace-panic" || strings.Contains(string(body), "kaboom") {
		t.Fatalf("panic envelope must carry the trace ID and hide the cause: %s", body)
	}
	// The server keeps serving after a panic.
	resp, body = ts.do(t, "GET", "/health", "", "x-tenant-id: open")
	decodeEnvelope(t, resp, body)
}

// docs/api.md "Body size": Content-Length above the limit → 413; exactly at the limit passes; a
// chunked body is cut off at the limit with the same 413.
func TestBodySizeLimit(t *testing.T) {
	const limit = 4096 // newTestServer's MaxRequestBodySize
	ts := newTestServer(t, testServerOpts{})
	atLimit := `{"message":"hi","stream":false}`
	atLimit += strings.Repeat(" ", limit-len(atLimit))

	resp, body := ts.do(t, "POST", "/chat", atLimit, "x-tenant-id: open")
	if resp.StatusCode != 200 {
		t.Fatalf("body exactly at the limit: status %d, want 200: %s", resp.StatusCode, body)
	}
	resp, body = ts.do(t, "POST", "/chat", atLimit+" ", "x-tenant-id: open")
	wantError(t, resp, body, 413, CodePayloadTooLarge)

	// Chunked: no Content-Length, so only the reader can enforce the limit.
	for _, n := range []int{limit + 1, 10 * limit} {
		req, _ := http.NewRequest("POST", ts.URL+"/chat", io.MultiReader(strings.NewReader(`{"message":"`), strings.NewReader(strings.Repeat("a", n)), strings.NewReader(`"}`)))
		req.ContentLength = -1
		req.Header.Set("x-tenant-id", "open")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if len(req.TransferEncoding) == 0 && resp.Request != nil && resp.Request.ContentLength >= 0 {
			t.Fatalf("request was not sent chunked")
		}
		wantError(t, resp, body, 413, CodePayloadTooLarge)
	}
	// GET bodies are not subject to the limit check (docs/api.md: every method but GET/HEAD).
	resp, body = ts.do(t, "GET", "/health", strings.Repeat("x", limit+10), "x-tenant-id: open")
	decodeEnvelope(t, resp, body)
}

func TestBadInput(t *testing.T) {
	// One server for every case: a second cluster member started while the first runs would race on
	// protoactor's global gRPC logger under -race.
	ts := newTestServer(t, testServerOpts{env: func(e *config.Env) { e.MaxRequestBodySize = 1 << 20 }})
	tests := []struct {
		name, body, code, msg string
	}{
		{"malformed", `{"message":`, CodeInvalidJSON, "malformed JSON"},
		{"empty body", ``, CodeInvalidJSON, "empty"},
		{"not an object", `[1,2]`, CodeInvalidRequest, "JSON object"},
		{"trailing data", `{"message":"hi"} {}`, CodeInvalidJSON, "after the JSON value"},
		{"wrong type", `{"message": 42}`, CodeInvalidRequest, "message: must be a string"},
		{"wrong type stream", `{"message": "hi", "stream": "yes"}`, CodeInvalidRequest, "stream: must be a boolean"},
		{"missing message", `{}`, CodeInvalidRequest, "message: required"},
		{"blank message", `{"message":"   "}`, CodeInvalidRequest, "message: must not be empty"},
		{"long message", `{"message":"` + strings.Repeat("é", 10001) + `"}`, CodeInvalidRequest, "at most 10000"},
		{"bad sessionId", `{"message":"hi","sessionId":"../etc"}`, CodeInvalidRequest, "sessionId"},
		{"tool_name not yet", `{"message":"hi","tool_name":"calculate"}`, CodeInvalidRequest, "tool_name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := ts.do(t, "POST", "/chat", tt.body, "x-tenant-id: open")
			env := wantError(t, resp, body, 400, tt.code)
			if !strings.Contains(env.Error.Message, tt.msg) {
				t.Fatalf("message %q does not contain %q", env.Error.Message, tt.msg)
			}
		})
	}
}

// Every docs/api.md code goes through the mapper with its status.
func TestErrorMapping(t *testing.T) {
	tests := []struct {
		err    error
		status int
		code   string
	}{
		{echo.ErrNotFound, 404, CodeNotFound},
		{echo.ErrMethodNotAllowed, 405, CodeMethodNotAllowed},
		{&http.MaxBytesError{Limit: 10}, 413, CodePayloadTooLarge},
		{errors.New("boom"), 500, CodeInternal},
		{NewError(429, CodeRateLimited, "x"), 429, CodeRateLimited},
		{NewError(429, CodeBudgetExceeded, "x"), 429, CodeBudgetExceeded},
		{NewError(403, CodeModelNotAllowed, "x"), 403, CodeModelNotAllowed},
		{NewError(502, CodeAIError, "x"), 502, CodeAIError},
	}
	for _, tt := range tests {
		var e *Error
		var he *echo.HTTPError
		if errors.As(tt.err, &he) {
			e = fromEchoError(he)
		} else {
			e = asError(tt.err)
		}
		if e.Status != tt.status || e.Code != tt.code {
			t.Errorf("%v → %d %s, want %d %s", tt.err, e.Status, e.Code, tt.status, tt.code)
		}
	}
}

// issue 16: /health showed anonymous callers the cluster's member addresses. An anonymous caller
// (a public tenant, no key) sees only whether each component is up; a keyed caller sees the
// details that are the tenant's business, never the deployment's addresses; the operator's
// /readyz keeps them. A missing optional engine is "degraded" and leaves the node ready.
func TestHealthViews(t *testing.T) {
	const addr = "10.0.0.7:6330"
	ts := newTestServer(t, testServerOpts{noChat: true, deps: func(_ testing.TB, _ *testServer, d *Deps) {
		d.Components = []Component{
			{Name: "nats", Check: func(context.Context) (string, error) { return "ok", nil }},
			{Name: "models", Check: func(context.Context) (string, error) { return "local/extractive", nil }},
			{Name: "cluster", Internal: true, Check: func(context.Context) (string, error) { return "1 members: " + addr, nil }},
			{Name: "speech", Optional: true, Check: func(context.Context) (string, error) {
				return "espeak-ng", errors.New("speech: missing /opt/espeak-ng")
			}},
		}
	}})
	tests := []struct {
		name   string
		header string
		want   map[string]string
	}{
		{"anonymous", "x-tenant-id: open", map[string]string{"nats": "ok", "models": "ok", "cluster": "ok", "speech": "degraded"}},
		{"keyed", "x-api-key: " + testKey, map[string]string{"nats": "ok", "models": "local/extractive", "cluster": "ok", "speech": "degraded"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := ts.do(t, "GET", "/health", "", tt.header)
			env := decodeEnvelope(t, resp, body)
			var h struct{ Components map[string]string }
			if err := json.Unmarshal(env.Data, &h); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, h.Components); diff != "" {
				t.Errorf("components (-want +got):\n%s", diff)
			}
			if strings.Contains(string(body), addr) || strings.Contains(string(body), "/opt/") {
				t.Errorf("/health leaks the deployment: %s", body)
			}
		})
	}
	states, ready := ts.Ready(context.Background())
	if !ready || !strings.Contains(states["cluster"], addr) || !strings.HasPrefix(states["speech"], "degraded: ") {
		t.Errorf("readyz = %v %v, want ready with the member addresses and speech degraded", ready, states)
	}
}

// issue 16: oversized headers got Go's plain-text 431. Up to twice MaxHeaderBytes the server
// answers with the envelope; beyond that, and for a negative Content-Length or an invalid Host,
// net/http answers before any handler runs (no hook exists), which the black-box suite records.
func TestOversizedHeadersEnvelope(t *testing.T) {
	ts := newTestServer(t, testServerOpts{noChat: true})
	for _, tenant := range []string{"open", "nope"} {
		resp, body := ts.do(t, "GET", "/health", "", "x-tenant-id: "+tenant, "x-pad: "+strings.Repeat("a", MaxHeaderBytes+1))
		if env := wantError(t, resp, body, http.StatusRequestHeaderFieldsTooLarge, CodeInvalidRequest); !strings.Contains(env.Error.Message, "headers") {
			t.Errorf("message %q does not name the headers", env.Error.Message)
		}
	}
	resp, body := ts.do(t, "GET", "/health", "", "x-tenant-id: open", "x-pad: "+strings.Repeat("a", MaxHeaderBytes/2))
	decodeEnvelope(t, resp, body)
}
