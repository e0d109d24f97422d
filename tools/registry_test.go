package tools

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/crispy-enigma/crispy/config"
)

func echoTool(name string) Tool {
	return Tool{
		Name:        name,
		Description: "echoes its params",
		Parameters:  json.RawMessage(`{"type":"object","properties":{"x":{"type":"string"}}}`),
		Run: func(ctx context.Context, call Call) (any, error) {
			var v map[string]any
			return v, call.Decode(&v)
		},
	}
}

func tenant(flags map[string]bool) *config.TenantConfig {
	return &config.TenantConfig{TenantID: "acme", FeatureFlags: flags}
}

func TestRegisterRules(t *testing.T) {
	tests := []struct {
		name    string
		tool    Tool
		wantErr string
	}{
		{"valid", echoTool("ok_name1"), ""},
		{"uppercase", echoTool("Bad"), "name must match"},
		{"leading digit", echoTool("1abc"), "name must match"},
		{"dash", echoTool("a-b"), "name must match"},
		{"path", echoTool("../x"), "name must match"},
		{"empty", echoTool(""), "name must match"},
		{"nil run", Tool{Name: "norun", Parameters: json.RawMessage(`{"type":"object"}`)}, "Run is nil"},
		{"schema not object", Tool{Name: "arr", Parameters: json.RawMessage(`{"type":"array"}`), Run: echoTool("x").Run}, `"type": "object"`},
		{"schema not JSON", Tool{Name: "nojson", Parameters: json.RawMessage(`{`), Run: echoTool("x").Run}, "not JSON"},
		{"schema does not compile", Tool{Name: "badschema", Parameters: json.RawMessage(`{"type":"object","properties":{"a":{"type":"nope"}}}`), Run: echoTool("x").Run}, "compile"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := NewRegistry().Register(tc.tool)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Register: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Register error = %v, want containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestRegisterRefusesDuplicate(t *testing.T) {
	r := NewRegistry()
	if err := r.Register(echoTool("dup")); err != nil {
		t.Fatal(err)
	}
	if err := r.Register(echoTool("dup")); err == nil || !strings.Contains(err.Error(), "already registered") {
		t.Fatalf("second Register = %v, want already registered", err)
	}
}

func TestRegisterClampsTimeout(t *testing.T) {
	tests := []struct {
		in, want time.Duration
	}{
		{0, DefaultTimeout},
		{time.Millisecond, MinTimeout},
		{5 * time.Second, 5 * time.Second},
		{5 * time.Minute, MaxTimeout},
	}
	for _, tc := range tests {
		r := NewRegistry()
		tool := echoTool("t")
		tool.Timeout = tc.in
		if err := r.Register(tool); err != nil {
			t.Fatal(err)
		}
		got := r.List(tenant(nil))[0].TimeoutMs
		if got != tc.want.Milliseconds() {
			t.Errorf("timeout %v → %dms, want %dms", tc.in, got, tc.want.Milliseconds())
		}
	}
}

func mustRegistry(t *testing.T, tools ...Tool) *Registry {
	t.Helper()
	r := NewRegistry()
	for _, tool := range tools {
		if err := r.Register(tool); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// docs/api.md "Tools": unknown tool 404 TOOL_NOT_FOUND; names like ../x or a<script> are simply unknown.
func TestExecuteUnknownTool(t *testing.T) {
	r := mustRegistry(t, echoTool("echo"))
	for _, name := range []string{"nope", "../x", "a<script>", "", "ECHO"} {
		_, err := r.Execute(context.Background(), ExecuteRequest{Tenant: tenant(nil), Tool: name, Params: json.RawMessage(`{}`)})
		if err == nil || err.Status != 404 || err.Code != CodeToolNotFound {
			t.Errorf("%q: err = %+v, want 404 TOOL_NOT_FOUND", name, err)
			continue
		}
		if strings.Contains(err.Message, "<script>") {
			t.Errorf("%q: message echoes the name: %q", name, err.Message)
		}
	}
}

// docs/api.md "Tools": bad params 400 VALIDATION_FAILED with these messages.
func TestExecuteValidationMessages(t *testing.T) {
	schema := `{"type":"object","properties":{
		"text":{"type":"string","minLength":2,"maxLength":5},
		"n":{"type":"integer","minimum":1,"maximum":10},
		"f":{"type":"number","exclusiveMinimum":0},
		"mode":{"type":"string","enum":["a","b"]},
		"list":{"type":"array","items":{"type":"string"},"maxItems":2}},
		"required":["text"]}`
	tool := Tool{Name: "v", Description: "v", Parameters: json.RawMessage(schema), Run: echoTool("x").Run}
	r := mustRegistry(t, tool)
	tests := []struct {
		name   string
		params string
		want   []string
	}{
		{"missing required", `{}`, []string{"Missing required parameter: text"}},
		{"unexpected", `{"text":"abc","zzz":1}`, []string{"Unexpected parameter: zzz"}},
		{"own __proto__ key", `{"text":"abc","__proto__":{"admin":true}}`, []string{"Unexpected parameter: __proto__"}},
		{"wrong type", `{"text":5}`, []string{"Parameter 'text': expected string, got number"}},
		{"too short", `{"text":"a"}`, []string{"Parameter 'text': minimum length is 2"}},
		{"too long", `{"text":"abcdef"}`, []string{"Parameter 'text': maximum length is 5"}},
		{"enum", `{"text":"abc","mode":"c"}`, []string{"Parameter 'mode': must be one of a, b"}},
		{"below minimum", `{"text":"abc","n":0}`, []string{"Parameter 'n': minimum value is 1"}},
		{"above maximum", `{"text":"abc","n":11}`, []string{"Parameter 'n': maximum value is 10"}},
		{"not an integer", `{"text":"abc","n":1.5}`, []string{"Parameter 'n': must be an integer"}},
		{"exclusive minimum", `{"text":"abc","f":0}`, []string{"Parameter 'f': must be greater than 0"}},
		{"array too long", `{"text":"abc","list":["a","b","c"]}`, []string{"Parameter 'list': maximum length is 2"}},
		{"array item type", `{"text":"abc","list":["a",1]}`, []string{"Parameter 'list.1': expected string, got number"}},
		{"params is an array", `[]`, []string{"Parameters must be an object"}},
		{"params is null", `null`, []string{"Parameters must be an object"}},
		{"params is a string", `"x"`, []string{"Parameters must be an object"}},
		{"params not JSON", `{`, []string{"Parameters must be an object"}},
		{"several at once", `{"n":"x","extra":true}`, []string{
			"Missing required parameter: text",
			"Unexpected parameter: extra",
			"Parameter 'n': expected integer, got string",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.Execute(context.Background(), ExecuteRequest{Tenant: tenant(nil), Tool: "v", Params: json.RawMessage(tc.params)})
			if err == nil {
				t.Fatal("Execute succeeded, want VALIDATION_FAILED")
			}
			if err.Status != 400 || err.Code != CodeValidationFailed {
				t.Fatalf("err = %d %s, want 400 VALIDATION_FAILED", err.Status, err.Code)
			}
			if diff := cmp.Diff(tc.want, err.Details); diff != "" {
				t.Errorf("details (-want +got):\n%s", diff)
			}
			if err.Message != strings.Join(tc.want, "; ") {
				t.Errorf("message = %q", err.Message)
			}
		})
	}
}

func TestExecuteEmptyParamsMeansEmptyObject(t *testing.T) {
	r := mustRegistry(t, echoTool("echo"))
	res, err := r.Execute(context.Background(), ExecuteRequest{Tenant: tenant(nil), Tool: "echo"})
	if err != nil || !res.Success {
		t.Fatalf("Execute = %+v, %v; want success", res, err)
	}
}

// docs/api.md: look-up → validate → permission: bad params of a denied tool are still 400.
func TestExecuteOrderValidateBeforePermission(t *testing.T) {
	r := mustRegistry(t, echoTool("echo"))
	_, err := r.Execute(context.Background(), ExecuteRequest{Tenant: tenant(map[string]bool{"tools_enabled": false}), Tool: "echo", Params: json.RawMessage(`{"bad":1}`)})
	if err == nil || err.Code != CodeValidationFailed {
		t.Fatalf("err = %+v, want VALIDATION_FAILED first", err)
	}
}

// docs/api.md: tools_enabled:false denies all; tool_<name>:false denies one; a declared permission
// must be true.
func TestPermissions(t *testing.T) {
	plain := echoTool("plain")
	guarded := echoTool("guarded")
	guarded.Permissions = []string{"http_fetch"}
	r := mustRegistry(t, plain, guarded)
	tests := []struct {
		name        string
		flags       map[string]bool
		tool        string
		wantAllowed bool
		why         string
	}{
		{"no flags, plain", nil, "plain", true, "absent tools_enabled allows, as the original"},
		{"no flags, guarded", nil, "guarded", false, "a declared permission must be explicitly true"},
		{"tools_enabled true", map[string]bool{"tools_enabled": true}, "plain", true, ""},
		{"tools_enabled false", map[string]bool{"tools_enabled": false}, "plain", false, ""},
		{"tools_enabled false beats permission", map[string]bool{"tools_enabled": false, "http_fetch": true}, "guarded", false, ""},
		{"tool flag false", map[string]bool{"tool_plain": false}, "plain", false, ""},
		{"tool flag false leaves others", map[string]bool{"tool_plain": false, "http_fetch": true}, "guarded", true, ""},
		{"tool flag true", map[string]bool{"tool_plain": true}, "plain", true, ""},
		{"permission true", map[string]bool{"http_fetch": true}, "guarded", true, ""},
		{"permission false", map[string]bool{"http_fetch": false}, "guarded", false, ""},
		{"tool flag true does not grant permission", map[string]bool{"tool_guarded": true}, "guarded", false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tenant(tc.flags)
			res, err := r.Execute(context.Background(), ExecuteRequest{Tenant: cfg, Tool: tc.tool, Params: json.RawMessage(`{}`)})
			listed := false
			for _, d := range r.List(cfg) {
				listed = listed || d.Name == tc.tool
			}
			if listed != tc.wantAllowed {
				t.Errorf("listed = %v, want %v (%s)", listed, tc.wantAllowed, tc.why)
			}
			if tc.wantAllowed {
				if err != nil || !res.Success {
					t.Fatalf("Execute = %+v, %v; want success (%s)", res, err, tc.why)
				}
				return
			}
			if err == nil || err.Status != 403 || err.Code != CodePermissionDenied {
				t.Fatalf("err = %+v, want 403 PERMISSION_DENIED (%s)", err, tc.why)
			}
		})
	}
	if _, err := r.Execute(context.Background(), ExecuteRequest{Tool: "plain"}); err == nil || err.Code != CodePermissionDenied {
		t.Errorf("nil tenant: err = %+v, want PERMISSION_DENIED", err)
	}
}

func TestExecuteToolFailureIsSuccessFalse(t *testing.T) {
	tool := echoTool("failing")
	tool.Run = func(ctx context.Context, call Call) (any, error) {
		return nil, Fail("NO_CONTENT", "nothing to say")
	}
	r := mustRegistry(t, tool)
	res, err := r.Execute(context.Background(), ExecuteRequest{Tenant: tenant(nil), Tool: "failing"})
	if err != nil {
		t.Fatalf("err = %v, want a Result", err)
	}
	if res.Success || res.Error == nil || res.Error.Code != "NO_CONTENT" {
		t.Fatalf("res = %+v, want success:false NO_CONTENT", res)
	}
}

func TestExecuteErrorIsExecutionError(t *testing.T) {
	tool := echoTool("broken")
	tool.Run = func(ctx context.Context, call Call) (any, error) { return nil, errors.New("db password is hunter2") }
	r := mustRegistry(t, tool)
	_, err := r.Execute(context.Background(), ExecuteRequest{Tenant: tenant(nil), Tool: "broken"})
	if err == nil || err.Status != 500 || err.Code != CodeExecutionError {
		t.Fatalf("err = %+v, want 500 EXECUTION_ERROR", err)
	}
	if strings.Contains(err.Message, "hunter2") {
		t.Errorf("client message leaks the cause: %q", err.Message)
	}
}

func TestExecutePanicIsRecovered(t *testing.T) {
	tool := echoTool("panicky")
	tool.Run = func(ctx context.Context, call Call) (any, error) { panic("boom") }
	r := mustRegistry(t, tool)
	_, err := r.Execute(context.Background(), ExecuteRequest{Tenant: tenant(nil), Tool: "panicky"})
	if err == nil || err.Status != 500 || err.Code != CodeExecutionError {
		t.Fatalf("err = %+v, want 500 EXECUTION_ERROR", err)
	}
	if !strings.Contains(err.Cause.Error(), "boom") {
		t.Errorf("cause = %v, want the panic value", err.Cause)
	}
}

func TestExecuteTimeout(t *testing.T) {
	tool := echoTool("slow")
	tool.Timeout = MinTimeout
	tool.Run = func(ctx context.Context, call Call) (any, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	r := mustRegistry(t, tool)
	_, err := r.Execute(context.Background(), ExecuteRequest{Tenant: tenant(nil), Tool: "slow"})
	if err == nil || err.Status != 500 || err.Code != CodeExecutionTimeout {
		t.Fatalf("err = %+v, want 500 EXECUTION_TIMEOUT", err)
	}
}

func TestExecuteCallerCancelIsNotTimeout(t *testing.T) {
	started := make(chan struct{})
	tool := echoTool("waits")
	tool.Run = func(ctx context.Context, call Call) (any, error) {
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	}
	r := mustRegistry(t, tool)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-started; cancel() }()
	_, err := r.Execute(ctx, ExecuteRequest{Tenant: tenant(nil), Tool: "waits"})
	if err == nil || err.Code != CodeExecutionError || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %+v, want EXECUTION_ERROR caused by context.Canceled", err)
	}
}

func TestAuditRecords(t *testing.T) {
	var mu sync.Mutex
	var recs []AuditRecord
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r := NewRegistry(
		WithAudit(func(ctx context.Context, rec AuditRecord) { mu.Lock(); recs = append(recs, rec); mu.Unlock() }),
		WithClock(func() time.Time { return clock }),
	)
	if err := r.Register(echoTool("echo")); err != nil {
		t.Fatal(err)
	}
	cfg := tenant(nil)
	r.Execute(context.Background(), ExecuteRequest{Tenant: cfg, Tool: "echo", Params: json.RawMessage(`{ "x" : "y" }`), RequestID: "req-1", UserID: "u-1"})
	r.Execute(context.Background(), ExecuteRequest{Tenant: cfg, Tool: "nope", Params: json.RawMessage(`{}`), RequestID: "req-2"})

	sum := sha256.Sum256([]byte(`{"x":"y"}`)) // canonical: no insignificant whitespace
	want := []AuditRecord{
		{TenantID: "acme", Tool: "echo", RequestID: "req-1", UserID: "u-1", ParamsSHA256: hex.EncodeToString(sum[:]), Success: true, Time: clock},
		{TenantID: "acme", Tool: "nope", RequestID: "req-2", ParamsSHA256: sha256Hex(`{}`), Success: false, ErrorCode: CodeToolNotFound, Time: clock},
	}
	if diff := cmp.Diff(want, recs); diff != "" {
		t.Errorf("audit records (-want +got):\n%s", diff)
	}
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestAuditDigestIsCanonical(t *testing.T) {
	var digests []string
	r := NewRegistry(WithAudit(func(ctx context.Context, rec AuditRecord) { digests = append(digests, rec.ParamsSHA256) }))
	tool := echoTool("echo")
	tool.Parameters = json.RawMessage(`{"type":"object","additionalProperties":true}`)
	if err := r.Register(tool); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{`{"a":1,"b":2}`, "{\n \"b\": 2, \"a\": 1}"} {
		r.Execute(context.Background(), ExecuteRequest{Tenant: tenant(nil), Tool: "echo", Params: json.RawMessage(p)})
	}
	if len(digests) != 2 || digests[0] != digests[1] {
		t.Fatalf("digests = %v, want two equal digests for the same object", digests)
	}
}

func TestListSortedWithSchemas(t *testing.T) {
	r := mustRegistry(t, echoTool("b_tool"), echoTool("a_tool"))
	ds := r.List(tenant(nil))
	if len(ds) != 2 || ds[0].Name != "a_tool" || ds[1].Name != "b_tool" {
		t.Fatalf("List = %+v", ds)
	}
	var schema map[string]any
	if err := json.Unmarshal(ds[0].Parameters, &schema); err != nil {
		t.Fatal(err)
	}
	if schema["additionalProperties"] != false {
		t.Errorf("stored schema = %v, want additionalProperties:false added", schema)
	}
	if ot := ds[0].OpenAITool(); ot["type"] != "function" {
		t.Errorf("OpenAITool = %v", ot)
	}
}
