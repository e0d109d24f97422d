package api

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/crispy-enigma/crispy/gateway"
)

// toolUpstream is an OpenAI-compatible server that records every request and answers by model:
//
//	tl/echo    one token: the JSON of the messages it received
//	tl/calc    offered tools and no tool result yet: a streamed tool_calls delta for
//	           calculate {"expression":"6*7"} (id, name, then the arguments in two pieces);
//	           after a tool result: "The answer is " + that result
//	tl/loop    whenever offered tools: a current_time call; else "gave up"
//	tl/fetch   offered tools and no tool result yet: an http_fetch call; after it: the result
type toolUpstream struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []toolUpstreamRequest
}

type toolUpstreamRequest struct {
	Model    string             `json:"model"`
	Messages []gateway.Message  `json:"messages"`
	Tools    []gateway.ToolSpec `json:"tools"`
}

func newToolUpstream(t testing.TB) *toolUpstream {
	t.Helper()
	u := &toolUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.Close)
	return u
}

func (u *toolUpstream) requests() []toolUpstreamRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.reqs)
}

func (u *toolUpstream) serve(w http.ResponseWriter, r *http.Request) {
	var req toolUpstreamRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	u.mu.Lock()
	u.reqs = append(u.reqs, req)
	n := len(u.reqs)
	u.mu.Unlock()

	w.Header().Set("Content-Type", "text/event-stream")
	send := func(v any) {
		b, _ := json.Marshal(v)
		fmt.Fprintf(w, "data: %s\n\n", b)
		http.NewResponseController(w).Flush()
	}
	token := func(s string) {
		send(map[string]any{"choices": []any{map[string]any{"index": 0, "delta": map[string]any{"content": s}}}})
	}
	call := func(id, name string, argPieces ...string) {
		send(map[string]any{"choices": []any{map[string]any{"index": 0, "delta": map[string]any{"role": "assistant", "content": nil,
			"tool_calls": []any{map[string]any{"index": 0, "id": id, "type": "function", "function": map[string]any{"name": name, "arguments": ""}}}}}}})
		for _, p := range argPieces {
			send(map[string]any{"choices": []any{map[string]any{"index": 0, "delta": map[string]any{
				"tool_calls": []any{map[string]any{"index": 0, "function": map[string]any{"arguments": p}}}}}}})
		}
		send(map[string]any{"choices": []any{map[string]any{"index": 0, "delta": map[string]any{}, "finish_reason": "tool_calls"}}})
	}
	last := req.Messages[len(req.Messages)-1]
	switch req.Model {
	case "tl/echo":
		b, _ := json.Marshal(req.Messages)
		token(string(b))
	case "tl/calc":
		switch {
		case last.Role == "tool":
			token("The answer is ")
			token(last.Content)
		case len(req.Tools) > 0:
			call("call_1", "calculate", `{"expression":`, `"6*7"}`)
		default:
			token("no tools were offered")
		}
	case "tl/loop":
		if len(req.Tools) > 0 {
			call(fmt.Sprintf("call_%d", n), "current_time", `{}`)
		} else {
			token("gave up")
		}
	case "tl/fetch":
		if last.Role == "tool" {
			token(last.Content)
		} else {
			call("call_f", "http_fetch", `{"url":"https://example.com/"}`)
		}
	}
	io.WriteString(w, "data: [DONE]\n\n")
}

func chatToolServer(t *testing.T) (*toolServer, *toolUpstream) {
	t.Helper()
	up := newToolUpstream(t)
	ts := newToolServer(t, toolServerOpts{
		models: gateway.RouterOptions{
			Providers:  []gateway.ProviderConfig{{Name: "tl", BaseURL: up.URL, Models: []string{"tl/*"}}},
			MaxRetries: -1,
		},
		tenants: []string{
			flagTenant("tools-off", `{"tools_enabled": false}`, "local/extractive"),
			flagTenant("no-calc", `{"tool_calculate": false}`, "local/extractive"),
			flagTenant("fetcher", `{"http_fetch": true}`, "local/extractive"),
			flagTenant("tight", `{}`, "local/extractive", `"rateLimit": {"perMinute": 1000, "burst": 1000}`, `"rateLimit": {"perMinute": 2, "burst": 2}`),
			flagTenant("speaker", `{"tts_enabled": true}`, "local/extractive"),
			flagTenant("mute", `{"tts_enabled": false}`, "local/extractive"),
			flagTenant("chatter", `{}`, "tl/echo"),
			flagTenant("agent", `{"tools_enabled": true}`, "tl/calc"),
			flagTenant("looper", `{"tools_enabled": true}`, "tl/loop"),
			flagTenant("fetcher2", `{"tools_enabled": true}`, "tl/fetch"),
		},
	})
	return ts, up
}

// splitToolEvents returns the leading tool_call/tool_result events and the frames after them, and
// fails if a tool event appears after the first token (docs/api.md SSE order as issue 7 extends it:
// tool events, then tokens, then done).
func splitToolEvents(t *testing.T, frames []sseFrame) (calls, results []map[string]any, rest []sseFrame) {
	t.Helper()
	i := 0
	for ; i < len(frames); i++ {
		f := frames[i]
		if f.event != "tool_call" && f.event != "tool_result" {
			break
		}
		var m map[string]any
		if err := json.Unmarshal(f.data, &m); err != nil {
			t.Fatal(err)
		}
		if f.event == "tool_call" {
			calls = append(calls, m)
		} else {
			results = append(results, m)
		}
	}
	for _, f := range frames[i:] {
		if f.event == "tool_call" || f.event == "tool_result" {
			t.Fatalf("%s event after the first token", f.event)
		}
	}
	return calls, results, frames[i:]
}

// docs/api.md "POST /chat": the messages sent are the optional tool-result system message
// `[Tool <name> result]: <json>`, the session history in time order, the new user message.
func testChatToolNameResultReachesTheModel(t *testing.T, ts *toolServer, up *toolUpstream) {
	_, first := ts.jsonChat(t, `{"message":"first","sessionId":"s-tool","stream":false}`, "x-tenant-id: chatter")
	if first.Message == "" {
		t.Fatal("empty first reply")
	}
	if first.ToolResults != nil {
		t.Errorf("toolResults %v without a tool", first.ToolResults)
	}

	// issue 16: the JSON answer hid the explicit tool's result; it carries it as SSE does.
	_, withTool := ts.jsonChat(t, `{"message":"and now?","sessionId":"s-tool-json","stream":false,"tool_name":"calculate","tool_params":{"expression":"6*7"}}`,
		"x-tenant-id: chatter")
	if r := withTool.ToolResults; len(r) != 1 || r[0]["name"] != "calculate" || r[0]["success"] != true || r[0]["round"] != 0.0 ||
		r[0]["data"].(map[string]any)["result"] != 42.0 {
		t.Errorf("JSON toolResults = %v, want calculate's success with result 42 (round 0)", withTool.ToolResults)
	}

	resp, body := ts.streamChat(t, `{"message":"what is it?","sessionId":"s-tool","tool_name":"calculate","tool_params":{"expression":"6*7"}}`,
		"x-tenant-id: chatter")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	calls, results, rest := splitToolEvents(t, parseSSE(t, body))
	reply, errFrame, _ := splitStream(t, rest)
	if errFrame != nil {
		t.Fatalf("error frame %+v", errFrame)
	}
	if len(calls) != 1 || len(results) != 1 || calls[0]["name"] != "calculate" || calls[0]["round"] != 0.0 ||
		results[0]["success"] != true {
		t.Errorf("explicit tool events: calls %v results %v, want one calculate call (round 0) and its success", calls, results)
	}

	reqs := up.requests()
	got := reqs[len(reqs)-1]
	wantSystem := `[Tool calculate result]: {"expression":"6*7","result":42}`
	roles := make([]string, len(got.Messages))
	for i, m := range got.Messages {
		roles[i] = m.Role
	}
	if !slices.Equal(roles, []string{"system", "user", "assistant", "user"}) || got.Messages[0].Content != wantSystem ||
		got.Messages[1].Content != "first" || got.Messages[3].Content != "what is it?" {
		t.Fatalf("model received %+v\nwant [system %q, history user+assistant, user]", got.Messages, wantSystem)
	}
	if len(got.Tools) != 0 {
		t.Errorf("tools offered although tools_enabled is not true: %v", got.Tools)
	}
	// The echo model's reply is what it received: the client sees the tool result reached it.
	if !strings.Contains(reply, `[Tool calculate result]`) {
		t.Errorf("echoed reply %q does not show the tool result", reply)
	}
}

// docs/api.md "POST /chat": tool failure → 400 tool_error, before any model call.
func testChatToolNameFailures(t *testing.T, ts *toolServer, up *toolUpstream) {
	before := len(up.requests())
	tests := []struct {
		name, body string
		code       string
	}{
		{name: "tool fails (division by zero)", body: `{"message":"x","tool_name":"calculate","tool_params":{"expression":"1/0"}}`, code: CodeToolError},
		{name: "unknown tool", body: `{"message":"x","tool_name":"nope"}`, code: CodeToolError},
		{name: "invalid params", body: `{"message":"x","tool_name":"calculate","tool_params":{"k":1}}`, code: CodeToolError},
		{name: "not permitted", body: `{"message":"x","tool_name":"http_fetch","tool_params":{"url":"https://x.test/"}}`, code: CodeToolError},
		{name: "crash", body: `{"message":"x","tool_name":"crash"}`, code: CodeToolError},
		{name: "name outside the pattern", body: `{"message":"x","tool_name":"Bad-Name"}`, code: CodeInvalidRequest},
		{name: "params without a name", body: `{"message":"x","tool_params":{}}`, code: CodeInvalidRequest},
		{name: "params not an object", body: `{"message":"x","tool_name":"calculate","tool_params":[1]}`, code: CodeInvalidRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := ts.do(t, http.MethodPost, "/chat", tt.body, "x-tenant-id: chatter")
			env := wantError(t, resp, body, 400, tt.code)
			if strings.Contains(env.Error.Message, "internal detail") {
				t.Errorf("message leaks the cause: %q", env.Error.Message)
			}
		})
	}
	if n := len(up.requests()) - before; n != 0 {
		t.Errorf("the model was called %d times; a failed tool must stop the request first", n)
	}
}

// Issue 7: when the model asks for tools, the server runs them under the same gate, feeds the results
// back and continues; the SSE stream reports each call and result before the tokens.
func testChatModelRequestedToolRound(t *testing.T, ts *toolServer, up *toolUpstream) {
	before := len(up.requests())
	resp, body := ts.streamChat(t, `{"message":"what is six times seven?","sessionId":"s-agent"}`, "x-tenant-id: agent", "x-trace-id: trace-agent")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	calls, results, rest := splitToolEvents(t, parseSSE(t, body))
	reply, errFrame, done := splitStream(t, rest)
	if errFrame != nil {
		t.Fatalf("error frame %+v", errFrame)
	}
	wantCall := map[string]any{"id": "call_1", "name": "calculate", "arguments": `{"expression":"6*7"}`, "round": 1.0,
		"sessionId": "s-agent", "traceId": "trace-agent"}
	if len(calls) != 1 || fmt.Sprint(calls[0]) != fmt.Sprint(wantCall) {
		t.Errorf("tool_call events %v, want [%v]", calls, wantCall)
	}
	if len(results) != 1 || results[0]["id"] != "call_1" || results[0]["success"] != true ||
		fmt.Sprint(results[0]["data"]) != "map[expression:6*7 result:42]" {
		t.Errorf("tool_result events %v, want call_1's success with result 42", results)
	}
	if want := `The answer is {"success":true,"data":{"expression":"6*7","result":42}}`; reply != want {
		t.Errorf("reply %q, want %q", reply, want)
	}
	if done.Usage.ModelID != "tl/calc" || done.Usage.TokensIn <= 0 {
		t.Errorf("done usage %+v", done.Usage)
	}

	reqs := up.requests()[before:]
	if len(reqs) != 2 {
		t.Fatalf("upstream requests = %d, want 2 (the tool round, then the answer)", len(reqs))
	}
	offered := []string{}
	for _, s := range reqs[0].Tools {
		offered = append(offered, s.Function.Name)
	}
	if !slices.Contains(offered, "calculate") || slices.Contains(offered, "http_fetch") {
		t.Errorf("offered %v: want the tenant's permitted tools (calculate, not http_fetch)", offered)
	}
	msgs := reqs[1].Messages
	if len(msgs) < 3 {
		t.Fatalf("second request messages %+v", msgs)
	}
	asst, tool := msgs[len(msgs)-2], msgs[len(msgs)-1]
	if asst.Role != "assistant" || len(asst.ToolCalls) != 1 || asst.ToolCalls[0].ID != "call_1" ||
		asst.ToolCalls[0].Function.Arguments != `{"expression":"6*7"}` {
		t.Errorf("assistant turn %+v, want the tool_calls it asked for", asst)
	}
	if tool.Role != "tool" || tool.ToolCallID != "call_1" || !strings.Contains(tool.Content, `"result":42`) {
		t.Errorf("tool turn %+v, want call_1's result", tool)
	}

	// Only the user message and the final reply are stored.
	h := ts.history(t, "s-agent", "", "x-tenant-id: agent")
	if len(h.Messages) != 2 || h.Messages[1].Content != reply {
		t.Errorf("history %+v, want the user message and the final reply", h.Messages)
	}

	// The JSON form runs the same loop.
	_, data := ts.jsonChat(t, `{"message":"again","stream":false}`, "x-tenant-id: agent")
	if !strings.HasPrefix(data.Message, "The answer is ") {
		t.Errorf("JSON reply %q", data.Message)
	}
}

// Issue 7: at most 4 rounds; then the model is asked once more without tools.
func testChatToolRoundsAreBounded(t *testing.T, ts *toolServer, up *toolUpstream) {
	before := len(up.requests())
	resp, body := ts.streamChat(t, `{"message":"loop forever"}`, "x-tenant-id: looper")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	calls, results, rest := splitToolEvents(t, parseSSE(t, body))
	reply, _, _ := splitStream(t, rest)
	if len(calls) != maxToolRounds || len(results) != maxToolRounds || reply != "gave up" {
		t.Errorf("calls %d, results %d, reply %q; want %d rounds then the answer without tools", len(calls), len(results), reply, maxToolRounds)
	}
	reqs := up.requests()[before:]
	if len(reqs) != maxToolRounds+1 || len(reqs[maxToolRounds].Tools) != 0 {
		t.Errorf("upstream requests %d (last offered %d tools), want %d with none offered last", len(reqs), len(reqs[len(reqs)-1].Tools), maxToolRounds+1)
	}
}

// Issue 7: model-requested tools pass the same gate: a tool the tenant may not run is refused, and the
// model is told so (it is not a request failure).
func testChatModelRequestedToolIsGated(t *testing.T, ts *toolServer, _ *toolUpstream) {
	resp, body := ts.streamChat(t, `{"message":"fetch it"}`, "x-tenant-id: fetcher2")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	_, results, rest := splitToolEvents(t, parseSSE(t, body))
	reply, _, _ := splitStream(t, rest)
	if len(results) != 1 || results[0]["success"] != false || fmt.Sprint(results[0]["error"]) == "" ||
		!strings.Contains(fmt.Sprint(results[0]["error"]), "PERMISSION_DENIED") {
		t.Errorf("tool_result %v, want PERMISSION_DENIED", results)
	}
	if !strings.Contains(reply, "PERMISSION_DENIED") {
		t.Errorf("the model was not told of the refusal: %q", reply)
	}
	if rec := ts.audit.last(t); rec.Tool != "http_fetch" || rec.ErrorCode != "PERMISSION_DENIED" {
		t.Errorf("audit %+v: the refused call is audited", rec)
	}
}
