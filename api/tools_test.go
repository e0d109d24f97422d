package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/gateway/speech"
	"github.com/crispy-enigma/crispy/metering"
	"github.com/crispy-enigma/crispy/observe"
	"github.com/crispy-enigma/crispy/store"
	"github.com/crispy-enigma/crispy/tools"
)

// auditRecorder is the Auditor of the tests: it keeps every record.
type auditRecorder struct {
	mu   sync.Mutex
	recs []tools.AuditRecord
}

func (a *auditRecorder) AuditTool(_ context.Context, rec tools.AuditRecord) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.recs = append(a.recs, rec)
}

func (a *auditRecorder) last(t *testing.T) tools.AuditRecord {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.recs) == 0 {
		t.Fatal("no audit record")
	}
	return a.recs[len(a.recs)-1]
}

type toolServerOpts struct {
	tenants []string
	models  gateway.RouterOptions
	espeak  speech.EspeakOptions // the speech engine's binaries; zero: found on PATH
}

// toolServer is newTestServer's parts (embedded NATS, the real grains, the gateway router) plus the
// real tool registry with the built-ins and the real espeak-ng speech router.
type toolServer struct {
	*testServer
	audit  *auditRecorder
	ledger *ledgerRecorder
}

// ledgerRecorder keeps the events the server appends, for tests that check what is recorded.
type ledgerRecorder struct {
	mu     sync.Mutex
	events []store.Event
}

func (l *ledgerRecorder) Append(_ context.Context, ev store.Event) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, ev)
	return nil
}

func (l *ledgerRecorder) kind(kind string) []store.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []store.Event
	for _, ev := range l.events {
		if ev.Kind == kind {
			out = append(out, ev)
		}
	}
	return out
}

func newToolServer(t testing.TB, o toolServerOpts) *toolServer {
	t.Helper()
	env := config.DefaultEnv()
	env.NodeName, env.Environment, env.MaxRequestBodySize = "test", "test", 64<<10
	grains, _ := startGrains(t)
	ledger := &ledgerRecorder{}
	metrics := observe.NewMetrics()
	mt := metering.New(metering.Options{Env: env, Limiter: grains, Ledger: ledger, Metrics: metrics, Logger: zerolog.Nop()})
	o.models.Meter = mt
	router := gateway.NewRouter(o.models)
	audit := &auditRecorder{}
	reg := tools.NewRegistry(tools.WithAudit(audit.AuditTool))
	if err := tools.RegisterBuiltins(reg, tools.Deps{Completer: mt.Completer(router)}); err != nil {
		t.Fatal(err)
	}
	for _, tool := range []tools.Tool{
		{Name: "crash", Description: "always crashes", Parameters: json.RawMessage(`{"type":"object"}`),
			Run: func(context.Context, tools.Call) (any, error) { return nil, errors.New("boom: internal detail") }},
		{Name: "stall", Description: "never answers", Parameters: json.RawMessage(`{"type":"object"}`), Timeout: tools.MinTimeout,
			Run: func(ctx context.Context, _ tools.Call) (any, error) { <-ctx.Done(); return nil, ctx.Err() }},
	} {
		if err := reg.Register(tool); err != nil {
			t.Fatal(err)
		}
	}
	deps := Deps{
		Env: env, Tenants: testTenants(t, o.tenants...), Logger: zerolog.Nop(), Metrics: metrics, Version: "test",
		Meter:  mt,
		Chat:   &ChatDeps{Sessions: grains, Models: router},
		Tools:  &ToolsDeps{Registry: reg},
		Speech: &SpeechDeps{Router: speech.NewRouter(speech.NewEspeak(o.espeak))},
	}
	srv, err := New(deps)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return &toolServer{testServer: &testServer{Server: srv, URL: hs.URL, http: hs, grains: grains, metrics: deps.Metrics, mt: mt}, audit: audit, ledger: ledger}
}

// flagTenant is a public tenant with the given featureFlags JSON and chat model.
func flagTenant(id, flags, chat string, repl ...string) string {
	return chatTenant(id, chat, append([]string{`"featureFlags": {}`, `"featureFlags": ` + flags}, repl...)...)
}

func TestNewRefusesToolsOrSpeechWithoutMeter(t *testing.T) {
	for name, d := range map[string]Deps{
		"tools":  {Tenants: testTenants(t), Tools: &ToolsDeps{Registry: tools.NewRegistry()}},
		"speech": {Tenants: testTenants(t), Speech: &SpeechDeps{Router: speech.NewRouter(nil)}},
	} {
		if _, err := New(d); err == nil {
			t.Errorf("%s without a Meter: New succeeded, want an error (the routes are rate limited)", name)
		}
	}
}

// TestToolsAndSpeech runs the tool, speech and chat-tool tests on one server (embedded NATS, the
// grains, the real registry and espeak-ng, an OpenAI-compatible test upstream): starting the parts
// takes seconds, the tests milliseconds. Each test uses its own tenants or sessions.
func TestToolsAndSpeech(t *testing.T) {
	ts, up := chatToolServer(t)
	tests := []struct {
		name string
		fn   func(t *testing.T, ts *toolServer, up *toolUpstream)
	}{
		{"ToolSchemaListsOnlyPermittedTools", testToolSchemaListsOnlyPermittedTools},
		{"ToolExecuteStatusesAndCodes", testToolExecuteStatusesAndCodes},
		{"ToolExecuteIsAudited", testToolExecuteIsAudited},
		{"ToolExecuteIsRateLimited", testToolExecuteIsRateLimited},
		{"ModelBackedToolDegradesGracefully", testModelBackedToolDegradesGracefully},
		{"TTSSynthesizesRealAudio", testTTSSynthesizesRealAudio},
		{"TTSRefusals", testTTSRefusals},
		{"TTSVoices", testTTSVoices},
		{"ChatToolNameResultReachesTheModel", testChatToolNameResultReachesTheModel},
		{"ChatToolNameFailures", testChatToolNameFailures},
		{"ChatModelRequestedToolRound", testChatModelRequestedToolRound},
		{"ChatToolRoundsAreBounded", testChatToolRoundsAreBounded},
		{"ChatModelRequestedToolIsGated", testChatModelRequestedToolIsGated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, ts, up) })
	}
}

type toolDescriptorJSON struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Parameters  json.RawMessage `json:"parameters"`
	Timeout     int64           `json:"timeout"`
}

// docs/api.md "Tools": GET /schema/tools → data.tools (name, description, parameter schema,
// timeout); ours: only the tools this caller may run are listed.
func testToolSchemaListsOnlyPermittedTools(t *testing.T, ts *toolServer, _ *toolUpstream) {
	tests := []struct {
		tenant      string
		want, never []string
		why         string
	}{
		{tenant: "open", want: []string{"calculate", "current_time", "summarize", "classify_intent", "extract_entities", "tag_chunk_docs"},
			never: []string{"http_fetch"}, why: "http_fetch declares permission http_fetch, absent here"},
		{tenant: "tools-off", why: "tools_enabled:false denies all"},
		{tenant: "no-calc", want: []string{"current_time"}, never: []string{"calculate"}, why: "tool_calculate:false denies one"},
		{tenant: "fetcher", want: []string{"http_fetch", "calculate"}},
	}
	for _, tt := range tests {
		t.Run(tt.tenant, func(t *testing.T) {
			resp, body := ts.do(t, http.MethodGet, "/schema/tools", "", "x-tenant-id: "+tt.tenant)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			env := decodeEnvelope(t, resp, body)
			var data struct {
				Tools []toolDescriptorJSON `json:"tools"`
			}
			if err := json.Unmarshal(env.Data, &data); err != nil || data.Tools == nil {
				t.Fatalf("data.tools missing or not a list (%v): %s", err, env.Data)
			}
			var names []string
			for _, d := range data.Tools {
				names = append(names, d.Name)
				if d.Description == "" || d.Timeout < 1000 || d.Timeout > 60000 || !json.Valid(d.Parameters) {
					t.Errorf("descriptor %+v: want description, parameters and a timeout of 1–60 s in ms", d)
				}
			}
			if tt.want == nil && len(names) != 0 {
				t.Errorf("tools = %v, want none (%s)", names, tt.why)
			}
			for _, w := range tt.want {
				if !slices.Contains(names, w) {
					t.Errorf("tools = %v, want %s listed", names, w)
				}
			}
			for _, n := range tt.never {
				if slices.Contains(names, n) {
					t.Errorf("tools = %v lists %s (%s)", names, n, tt.why)
				}
			}
		})
	}
}

type toolExecJSON struct {
	Success  bool            `json:"success"`
	Data     json.RawMessage `json:"data"`
	Error    *errorBody      `json:"error"`
	Metadata *struct {
		DurationMs *int64 `json:"durationMs"`
	} `json:"metadata"`
}

// docs/api.md "Tools": POST /tools/execute → data {success, data, metadata:{durationMs}}; a tool that
// runs but fails is 200 success:false; unknown 404 TOOL_NOT_FOUND; bad params 400
// VALIDATION_FAILED; not permitted 403 PERMISSION_DENIED; timeout or crash 500 EXECUTION_TIMEOUT /
// EXECUTION_ERROR.
func testToolExecuteStatusesAndCodes(t *testing.T, ts *toolServer, _ *toolUpstream) {
	tests := []struct {
		name        string
		tenant      string
		body        string
		wantStatus  int
		wantCode    string // envelope error code, or the tool failure code when success is false
		wantSuccess bool
		wantMsg     string
		wantData    string
	}{
		{name: "calculate end to end", body: `{"tool_name":"calculate","params":{"expression":"(2 + 3) * sqrt(16)"}}`,
			wantStatus: 200, wantSuccess: true, wantData: `{"expression":"(2 + 3) * sqrt(16)","result":20}`},
		{name: "division by zero is a tool failure: 200 success:false", body: `{"tool_name":"calculate","params":{"expression":"1/0"}}`,
			wantStatus: 200, wantCode: "DIVISION_BY_ZERO"},
		{name: "unknown tool", body: `{"tool_name":"nope","params":{}}`, wantStatus: 404, wantCode: tools.CodeToolNotFound},
		{name: "path-like name is simply unknown", body: `{"tool_name":"../x","params":{}}`, wantStatus: 404, wantCode: tools.CodeToolNotFound},
		{name: "script-like name is simply unknown", body: `{"tool_name":"a<script>","params":{}}`, wantStatus: 404, wantCode: tools.CodeToolNotFound},
		{name: "missing parameter", body: `{"tool_name":"calculate","params":{}}`, wantStatus: 400, wantCode: tools.CodeValidationFailed,
			wantMsg: "Missing required parameter: expression"},
		{name: "unexpected parameter", body: `{"tool_name":"calculate","params":{"expression":"1","k":2}}`, wantStatus: 400,
			wantCode: tools.CodeValidationFailed, wantMsg: "Unexpected parameter: k"},
		{name: "params must be an object", body: `{"tool_name":"calculate","params":[1]}`, wantStatus: 400, wantCode: tools.CodeValidationFailed},
		{name: "permission not granted", body: `{"tool_name":"http_fetch","params":{"url":"https://open.example.test/"}}`,
			wantStatus: 403, wantCode: tools.CodePermissionDenied},
		{name: "tools disabled for the tenant", tenant: "tools-off", body: `{"tool_name":"calculate","params":{"expression":"1"}}`,
			wantStatus: 403, wantCode: tools.CodePermissionDenied},
		{name: "handler crash", body: `{"tool_name":"crash","params":{}}`, wantStatus: 500, wantCode: tools.CodeExecutionError},
		{name: "timeout", body: `{"tool_name":"stall","params":{}}`, wantStatus: 500, wantCode: tools.CodeExecutionTimeout},
		{name: "tool_name missing", body: `{"params":{}}`, wantStatus: 400, wantCode: CodeInvalidRequest},
		{name: "malformed JSON", body: `{"tool_name":`, wantStatus: 400, wantCode: CodeInvalidJSON},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tenant := cmpOr(tt.tenant, "open")
			resp, body := ts.do(t, http.MethodPost, "/tools/execute", tt.body, "x-tenant-id: "+tenant, "Content-Type: application/json")
			if tt.wantStatus != 200 {
				env := wantError(t, resp, body, tt.wantStatus, tt.wantCode)
				if tt.wantMsg != "" && !strings.Contains(env.Error.Message, tt.wantMsg) {
					t.Errorf("message %q, want it to contain %q", env.Error.Message, tt.wantMsg)
				}
				if strings.Contains(string(body), "internal detail") || strings.Contains(string(body), "<script>") {
					t.Errorf("the envelope leaks the cause or echoes the name: %s", body)
				}
				return
			}
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			env := decodeEnvelope(t, resp, body)
			rateLimitHeadersPresent(t, resp.Header)
			var got toolExecJSON
			if err := json.Unmarshal(env.Data, &got); err != nil {
				t.Fatal(err)
			}
			if got.Metadata == nil || got.Metadata.DurationMs == nil {
				t.Errorf("data.metadata.durationMs missing: %s", env.Data)
			}
			if got.Success != tt.wantSuccess {
				t.Fatalf("success = %v, want %v: %s", got.Success, tt.wantSuccess, env.Data)
			}
			if tt.wantSuccess {
				if got.Error != nil || string(got.Data) != tt.wantData {
					t.Errorf("data = %s, error %+v; want %s", got.Data, got.Error, tt.wantData)
				}
			} else if got.Error == nil || got.Error.Code != tt.wantCode || got.Error.Message == "" {
				t.Errorf("error = %+v, want code %s with a message", got.Error, tt.wantCode)
			}
		})
	}
}

// docs/api.md "Tools": every execution is audited with tenant, tool, request and user IDs, the sha256
// of the params (never the params), success, duration and error code. The request ID is the trace ID.
func testToolExecuteIsAudited(t *testing.T, ts *toolServer, _ *toolUpstream) {
	resp, body := ts.do(t, http.MethodPost, "/tools/execute",
		`{"tool_name":"calculate","params":{"expression":"secret-ish 1/0"},"user_id":"u-7"}`,
		"x-tenant-id: open", "x-trace-id: trace-audit-1")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	rec := ts.audit.last(t)
	if rec.TenantID != "open" || rec.Tool != "calculate" || rec.RequestID != "trace-audit-1" || rec.UserID != "u-7" {
		t.Errorf("audit record %+v: want tenant open, tool calculate, request ID = trace ID, user u-7", rec)
	}
	if len(rec.ParamsSHA256) != 64 || strings.Contains(rec.ParamsSHA256, "secret") {
		t.Errorf("paramsSha256 = %q, want a hex sha256", rec.ParamsSHA256)
	}
	if rec.Success || rec.ErrorCode != "INVALID_EXPRESSION" && rec.ErrorCode != "DIVISION_BY_ZERO" {
		t.Errorf("audit success=%v code=%q, want a failed run with the tool's code", rec.Success, rec.ErrorCode)
	}

	resp, body = ts.do(t, http.MethodPost, "/tools/execute", `{"tool_name":"nope"}`, "x-tenant-id: open")
	wantError(t, resp, body, 404, tools.CodeToolNotFound)
	if rec := ts.audit.last(t); rec.ErrorCode != tools.CodeToolNotFound || rec.Success {
		t.Errorf("a refused execution is audited too: %+v", rec)
	}
}

// docs/api.md "Rate limits" (ours: also /tools/execute): denied → 429 rate_limited with the headers.
func testToolExecuteIsRateLimited(t *testing.T, ts *toolServer, _ *toolUpstream) {
	body := `{"tool_name":"calculate","params":{"expression":"1+1"},"user_id":"same"}`
	for i := range 2 {
		resp, b := ts.do(t, http.MethodPost, "/tools/execute", body, "x-tenant-id: tight")
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d: %s", i, resp.StatusCode, b)
		}
	}
	resp, b := ts.do(t, http.MethodPost, "/tools/execute", body, "x-tenant-id: tight")
	wantError(t, resp, b, 429, CodeRateLimited)
	if resp.Header.Get("Retry-After") == "" || resp.Header.Get("x-ratelimit-remaining") != "0" {
		t.Errorf("429 headers: %v", resp.Header)
	}
}

// The model-backed built-ins reach the tenant's chat model through ModelCompleter; with only
// local/extractive (which answers prose, not JSON) classify_intent degrades to "other".
func testModelBackedToolDegradesGracefully(t *testing.T, ts *toolServer, _ *toolUpstream) {
	resp, body := ts.do(t, http.MethodPost, "/tools/execute",
		`{"tool_name":"classify_intent","params":{"text":"refund my order","categories":["billing","support"]}}`, "x-tenant-id: open")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var got toolExecJSON
	if err := json.Unmarshal(decodeEnvelope(t, resp, body).Data, &got); err != nil {
		t.Fatal(err)
	}
	var data struct {
		Intent string `json:"intent"`
	}
	_ = json.Unmarshal(got.Data, &data)
	if !got.Success || data.Intent != "other" {
		t.Errorf("classify_intent over a non-JSON answer = %s, want success with intent other", body)
	}
}
