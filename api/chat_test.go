package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/gateway"
)

// The fake upstream's usage chunk: distinct from any estimate, so a test can tell the upstream's
// numbers from the gateway's guesses.
const (
	fakePromptTokens     = 42
	fakeCompletionTokens = 17
)

// fakeUpstream is a real HTTP server speaking the OpenAI-compatible streaming protocol. The model
// name picks the behaviour:
//
//	fake/echo        replies "echo: <last user message>"
//	fake/paced       5 tokens, 30 ms apart
//	fake/block       one token, then waits until released (or its request is cancelled)
//	fake/fail-after  one token, then the connection is cut
//	fake/fail        HTTP 500 before any token
//	anything else    "Hello", " world", "!" at once
type fakeUpstream struct {
	*httptest.Server
	mu        sync.Mutex
	calls     map[string]int // model → requests received
	release   chan struct{}  // closed by a test to let fake/block finish
	cancelled chan string    // model of a request whose context ended while the handler was streaming
	stop      chan struct{}  // closed at cleanup so blocked handlers return
}

func newFakeUpstream(t testing.TB) *fakeUpstream {
	t.Helper()
	u := &fakeUpstream{
		calls: map[string]int{}, release: make(chan struct{}), cancelled: make(chan string, 16),
		stop: make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", u.serve)
	u.Server = httptest.NewServer(mux)
	t.Cleanup(u.Close)                  // runs second: waits for handlers
	t.Cleanup(func() { close(u.stop) }) // runs first: unblocks fake/block
	return u
}

func (u *fakeUpstream) callsTo(model string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.calls[model]
}

func (u *fakeUpstream) serve(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Model    string            `json:"model"`
		Messages []gateway.Message `json:"messages"`
		Stream   bool              `json:"stream"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	u.mu.Lock()
	u.calls[req.Model]++
	u.mu.Unlock()
	if req.Model == "fake/fail" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, `{"error":{"message":"fake upstream is down"}}`)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	flush := func() { http.NewResponseController(w).Flush() }
	token := func(s string) {
		b, _ := json.Marshal(map[string]any{"choices": []any{map[string]any{"delta": map[string]string{"content": s}}}})
		fmt.Fprintf(w, "data: %s\n\n", b)
		flush()
	}
	finish := func() {
		fmt.Fprintf(w, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d}}\n\n", fakePromptTokens, fakeCompletionTokens)
		io.WriteString(w, "data: [DONE]\n\n")
		flush()
	}
	ctx := r.Context()
	switch req.Model {
	case "fake/echo":
		last := ""
		for _, m := range req.Messages {
			if m.Role == "user" {
				last = m.Content
			}
		}
		token("echo: ")
		token(last)
	case "fake/paced":
		for i := range 5 {
			if i > 0 {
				select {
				case <-time.After(30 * time.Millisecond):
				case <-ctx.Done():
					return
				}
			}
			token(fmt.Sprintf("t%d ", i))
		}
	case "fake/block":
		token("partial ")
		select {
		case <-ctx.Done():
			u.cancelled <- req.Model
			return
		case <-u.release:
			token("rest")
		case <-u.stop:
			return
		}
	case "fake/fail-after":
		token("partial ")
		panic(http.ErrAbortHandler) // cut the connection mid-stream
	default:
		token("Hello")
		token(" world")
		token("!")
	}
	finish()
}

// routerFor serves every fake/* model from u; no retries, so failure tests are quick.
func routerFor(u *fakeUpstream) gateway.RouterOptions {
	return gateway.RouterOptions{
		Providers:  []gateway.ProviderConfig{{Name: "fake", BaseURL: u.URL, Models: []string{"fake/*"}}},
		MaxRetries: -1,
	}
}

// chatTenant is a public tenant whose chat model is chat; repl are old/new pairs applied to
// tenantJSON (duplicate JSON fields are refused, so settings are replaced, not appended).
func chatTenant(id, chat string, repl ...string) string {
	s := tenantJSON(id, `, "public": true`)
	s = strings.Replace(s, `"chat": "local/extractive"`, `"chat": "`+chat+`"`, 1)
	for i := 0; i+1 < len(repl); i += 2 {
		if !strings.Contains(s, repl[i]) {
			panic("chatTenant: no " + repl[i])
		}
		s = strings.Replace(s, repl[i], repl[i+1], 1)
	}
	return s
}

// sseFrame is one event of a text/event-stream.
type sseFrame struct {
	event string
	data  json.RawMessage
}

// parseSSE checks docs/api.md's framing while it parses: events separated by a blank line, at
// most an "event:" line and exactly one "data:" line each, and every data line one JSON object.
func parseSSE(t *testing.T, body []byte) []sseFrame {
	t.Helper()
	if !bytes.HasSuffix(body, []byte("\n\n")) {
		t.Fatalf("stream does not end with a complete event: %q", body)
	}
	var frames []sseFrame
	for _, block := range strings.Split(strings.TrimSuffix(string(body), "\n\n"), "\n\n") {
		var f sseFrame
		dataLines := 0
		for _, line := range strings.Split(block, "\n") {
			switch {
			case strings.HasPrefix(line, "event: ") && f.event == "" && dataLines == 0:
				f.event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				dataLines++
				raw := strings.TrimPrefix(line, "data: ")
				var obj map[string]json.RawMessage
				if err := json.Unmarshal([]byte(raw), &obj); err != nil {
					t.Fatalf("data line is not one JSON object: %v: %q", err, line)
				}
				f.data = json.RawMessage(raw)
			default:
				t.Fatalf("unexpected line %q in event %q", line, block)
			}
		}
		if dataLines != 1 {
			t.Fatalf("event has %d data lines, want 1: %q", dataLines, block)
		}
		frames = append(frames, f)
	}
	return frames
}

// keysOf returns the sorted keys of a JSON object.
func keysOf(t *testing.T, raw json.RawMessage) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("not an object: %s", raw)
	}
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

type tokenJSON struct {
	SessionID, Role, Content, TenantID, TraceID string
}

type doneJSON struct {
	Done  bool `json:"done"`
	Usage struct {
		ModelID     string `json:"modelId"`
		TokensIn    int    `json:"tokensIn"`
		TokensOut   int    `json:"tokensOut"`
		TotalTokens int    `json:"totalTokens"`
		LatencyMs   int64  `json:"latencyMs"`
	} `json:"usage"`
}

type errorFrameJSON struct {
	Code, Message, TraceID string
}

// splitStream checks the frame sequence — tokens, at most one error, then done last — and returns
// the reply text, the error frame (if any) and the done frame.
func splitStream(t *testing.T, frames []sseFrame) (reply string, errFrame *errorFrameJSON, done doneJSON) {
	t.Helper()
	if len(frames) == 0 || frames[len(frames)-1].event != "done" {
		t.Fatalf("stream does not end with event: done: %+v", frames)
	}
	var b strings.Builder
	for i, f := range frames[:len(frames)-1] {
		switch f.event {
		case "":
			if errFrame != nil {
				t.Fatalf("token after the error frame")
			}
			if got, want := keysOf(t, f.data), []string{"content", "role", "sessionId", "tenantId", "traceId"}; !slices.Equal(got, want) {
				t.Fatalf("token frame %d keys %v, want %v", i, got, want)
			}
			var tok tokenJSON
			if err := json.Unmarshal(f.data, &tok); err != nil {
				t.Fatal(err)
			}
			if tok.Role != "assistant" {
				t.Fatalf("token role %q, want assistant", tok.Role)
			}
			b.WriteString(tok.Content)
		case "error":
			if errFrame != nil {
				t.Fatalf("two error frames")
			}
			errFrame = &errorFrameJSON{}
			if err := json.Unmarshal(f.data, errFrame); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("unexpected event %q before done", f.event)
		}
	}
	last := frames[len(frames)-1].data
	if got, want := keysOf(t, last), []string{"done", "usage"}; !slices.Equal(got, want) {
		t.Fatalf("done frame keys %v, want %v", got, want)
	}
	var usage struct {
		Usage json.RawMessage `json:"usage"`
	}
	json.Unmarshal(last, &usage)
	if got, want := keysOf(t, usage.Usage), []string{"latencyMs", "modelId", "tokensIn", "tokensOut", "totalTokens"}; !slices.Equal(got, want) {
		t.Fatalf("usage keys %v, want %v", got, want)
	}
	if err := json.Unmarshal(last, &done); err != nil {
		t.Fatal(err)
	}
	if !done.Done {
		t.Fatalf("done frame without done:true: %s", last)
	}
	return b.String(), errFrame, done
}

// post sends POST /chat with the given headers ("Name: value").
func (ts *testServer) post(t testing.TB, ctx context.Context, body string, headers ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "POST", ts.URL+"/chat", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(k, strings.TrimSpace(v))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// streamChat posts an SSE chat and returns the response and its whole body.
func (ts *testServer) streamChat(t *testing.T, body string, headers ...string) (*http.Response, []byte) {
	t.Helper()
	resp := ts.post(t, context.Background(), body, headers...)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

type chatData struct {
	Status    string `json:"status"`
	SessionID string `json:"sessionId"`
	Stream    *bool  `json:"stream"`
	Message   string `json:"message"`
	// ToolResults are the tool results when tools ran, as the SSE tool_result events carry them.
	ToolResults []map[string]any `json:"toolResults"`
}

// jsonChat posts a "stream": false chat that must succeed.
func (ts *testServer) jsonChat(t *testing.T, body string, headers ...string) (*http.Response, chatData) {
	t.Helper()
	resp, b := ts.do(t, "POST", "/chat", body, headers...)
	if resp.StatusCode != 200 {
		t.Fatalf("POST /chat %s: status %d: %s", body, resp.StatusCode, b)
	}
	env := decodeEnvelope(t, resp, b)
	var d chatData
	if err := json.Unmarshal(env.Data, &d); err != nil {
		t.Fatal(err)
	}
	return resp, d
}

type historyData struct {
	SessionID string `json:"sessionId"`
	Messages  []struct {
		Role       string `json:"role"`
		Content    string `json:"content"`
		Timestamp  int64  `json:"timestamp"`
		TokenCount int    `json:"tokenCount"`
	} `json:"messages"`
}

func (ts *testServer) history(t *testing.T, session, query string, headers ...string) historyData {
	t.Helper()
	resp, b := ts.do(t, "GET", "/chat/"+session+"/history"+query, "", headers...)
	if resp.StatusCode != 200 {
		t.Fatalf("history %s%s: status %d: %s", session, query, resp.StatusCode, b)
	}
	env := decodeEnvelope(t, resp, b)
	var h historyData
	if err := json.Unmarshal(env.Data, &h); err != nil {
		t.Fatal(err)
	}
	if h.SessionID != session || h.Messages == nil {
		t.Fatalf("history data must carry sessionId %q and a messages array: %s", session, b)
	}
	return h
}

// waitIdle waits until the server has no request in flight, so that anything a finished or
// abandoned request would store has been stored. Bounded: a hang fails the test.
func (ts *testServer) waitIdle(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for ts.inflight.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests still in flight", ts.inflight.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func rateLimitHeadersPresent(t *testing.T, h http.Header) {
	t.Helper()
	for _, k := range []string{"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} {
		if h.Get(k) == "" {
			t.Errorf("missing rate-limit header %s", k)
		}
	}
}

// docs/api.md POST /chat "SSE": `Content-Type: text/event-stream` exactly, `Cache-Control:
// no-cache`, headers x-tenant-id, x-trace-id, x-model-id, rate-limit headers. Each token is an
// unnamed frame `data: {"sessionId","role":"assistant","content","tenantId","traceId"}`; the stream
// always ends with `event: done` + `data: {"done":true,"usage":{...}}`. Every data: line is one
// JSON object.
func testSSEFraming(t *testing.T, ts *testServer, up *fakeUpstream) {

	resp, body := ts.streamChat(t, `{"message":"hi","sessionId":"frame-1"}`, "x-tenant-id: fakeco", "x-trace-id: trace-frames")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	h := resp.Header
	if ct := h.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q, want exactly text/event-stream", ct)
	}
	if cc := h.Get("Cache-Control"); cc != "no-cache" {
		t.Errorf("Cache-Control %q, want no-cache", cc)
	}
	if h.Get("x-tenant-id") != "fakeco" || h.Get("x-trace-id") != "trace-frames" || h.Get("x-model-id") != "fake/instant" {
		t.Errorf("x-tenant-id %q, x-trace-id %q, x-model-id %q", h.Get("x-tenant-id"), h.Get("x-trace-id"), h.Get("x-model-id"))
	}
	rateLimitHeadersPresent(t, h)

	frames := parseSSE(t, body)
	if len(frames) != 4 {
		t.Fatalf("got %d frames, want 3 tokens and done: %s", len(frames), body)
	}
	for _, f := range frames[:3] {
		var tok tokenJSON
		json.Unmarshal(f.data, &tok)
		if tok.SessionID != "frame-1" || tok.TenantID != "fakeco" || tok.TraceID != "trace-frames" {
			t.Errorf("token frame %s: wrong session, tenant or trace", f.data)
		}
	}
	reply, errFrame, done := splitStream(t, frames)
	if reply != "Hello world!" || errFrame != nil {
		t.Fatalf("reply %q, error %+v", reply, errFrame)
	}
	u := done.Usage
	if u.ModelID != "fake/instant" || u.TokensIn != fakePromptTokens || u.TokensOut != fakeCompletionTokens ||
		u.TotalTokens != fakePromptTokens+fakeCompletionTokens || u.LatencyMs < 0 {
		t.Errorf("usage %+v, want the upstream's usage chunk (%d in, %d out)", u, fakePromptTokens, fakeCompletionTokens)
	}
}

// docs/api.md: "Each token is flushed as it arrives." Three concurrent streams each end with done,
// and a reader of a paced upstream receives the body in several separate pieces, not one at the end.
func testSSEConcurrentStreamsAndFlushing(t *testing.T, ts *testServer, up *fakeUpstream) {

	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			resp := ts.post(t, context.Background(), fmt.Sprintf(`{"message":"hi","sessionId":"conc-%d"}`, i), "x-tenant-id: paced")
			defer resp.Body.Close()
			var body []byte
			buf := make([]byte, 4096)
			arrivals := 0
			for {
				n, err := resp.Body.Read(buf)
				if n > 0 {
					arrivals++
					body = append(body, buf[:n]...)
				}
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Errorf("stream %d: %v", i, err)
					return
				}
			}
			frames := parseSSE(t, body)
			reply, errFrame, _ := splitStream(t, frames)
			if reply != "t0 t1 t2 t3 t4 " || errFrame != nil {
				t.Errorf("stream %d: reply %q, error %+v", i, reply, errFrame)
			}
			// 5 tokens 30 ms apart: with per-token flushing they cannot all arrive in one read.
			if arrivals < 2 {
				t.Errorf("stream %d: body arrived in %d read(s), want tokens flushed separately", i, arrivals)
			}
		})
	}
	wg.Wait()
}

// docs/api.md: "A client that disconnects cancels the model call; the reply is stored after the
// stream completes." The partial reply must not be stored as a complete assistant message.
func testClientDisconnectCancelsModelAndStoresNothing(t *testing.T, ts *testServer, up *fakeUpstream) {

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp := ts.post(t, ctx, `{"message":"hello there","sessionId":"gone-1"}`, "x-tenant-id: block")
	rd := bufio.NewReader(resp.Body)
	line, err := rd.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "data: ") || !strings.Contains(line, "partial") {
		t.Fatalf("first line %q, %v; want the first token", line, err)
	}
	cancel() // the client leaves after the first token
	resp.Body.Close()

	select {
	case m := <-up.cancelled:
		if m != "fake/block" {
			t.Fatalf("cancelled %q", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream request was not cancelled after the client disconnected")
	}
	ts.waitIdle(t)

	// The server keeps serving, and the session holds no partial assistant reply.
	h := ts.history(t, "gone-1", "", "x-tenant-id: block")
	for _, m := range h.Messages {
		if m.Role == "assistant" {
			t.Fatalf("partial reply stored as an assistant message: %+v", h.Messages)
		}
	}
	if len(h.Messages) != 0 {
		t.Fatalf("history after an abandoned exchange = %+v, want empty", h.Messages)
	}
	close(up.release) // later fake/block calls finish at once
	_, d := ts.jsonChat(t, `{"message":"again","sessionId":"gone-1","stream":false}`, "x-tenant-id: block")
	if d.Message != "partial rest" {
		t.Fatalf("follow-up reply %q", d.Message)
	}
}

// docs/api.md: a failure is `event: error` + `data: {"code":"ai_error","message","traceId"}`; the
// stream always ends with `event: done`. A failed reply is not stored.
func testUpstreamFailsMidStream(t *testing.T, ts *testServer, up *fakeUpstream) {

	resp, body := ts.streamChat(t, `{"message":"hi","sessionId":"fail-1"}`, "x-tenant-id: failafter", "x-trace-id: trace-fail")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	reply, errFrame, done := splitStream(t, parseSSE(t, body))
	if reply != "partial " {
		t.Errorf("tokens before the failure %q", reply)
	}
	if errFrame == nil || errFrame.Code != CodeAIError || errFrame.TraceID != "trace-fail" || !strings.Contains(errFrame.Message, "fake/fail-after") {
		t.Fatalf("error frame %+v, want ai_error naming the model with the trace ID", errFrame)
	}
	if done.Usage.ModelID != "fake/fail-after" {
		t.Errorf("done usage %+v", done.Usage)
	}
	ts.waitIdle(t)
	if h := ts.history(t, "fail-1", "", "x-tenant-id: failafter"); len(h.Messages) != 0 {
		t.Fatalf("a failed reply was stored: %+v", h.Messages)
	}
}

// docs/api.md POST /chat "JSON" ("stream": false): data = {status:"accepted", sessionId,
// stream:false, message}; headers x-model-id, x-tokens-in, x-tokens-out, x-tokens-total,
// x-ai-latency-ms and the rate-limit headers.
func testJSONForm(t *testing.T, ts *testServer, up *fakeUpstream) {

	resp, b := ts.do(t, "POST", "/chat", `{"message":"hi","sessionId":"json-1","stream":false}`, "x-tenant-id: fakeco")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	env := decodeEnvelope(t, resp, b)
	if got, want := keysOf(t, env.Data), []string{"message", "sessionId", "status", "stream"}; !slices.Equal(got, want) {
		t.Fatalf("data keys %v, want %v", got, want)
	}
	var d chatData
	json.Unmarshal(env.Data, &d)
	if d.Status != "accepted" || d.SessionID != "json-1" || d.Stream == nil || *d.Stream || d.Message != "Hello world!" {
		t.Fatalf("data %s", env.Data)
	}
	h := resp.Header
	want := map[string]string{
		"x-model-id": "fake/instant", "x-tokens-in": strconv.Itoa(fakePromptTokens),
		"x-tokens-out": strconv.Itoa(fakeCompletionTokens), "x-tokens-total": strconv.Itoa(fakePromptTokens + fakeCompletionTokens),
	}
	for k, v := range want {
		if h.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, h.Get(k), v)
		}
	}
	if ms, err := strconv.ParseInt(h.Get("x-ai-latency-ms"), 10, 64); err != nil || ms < 0 {
		t.Errorf("x-ai-latency-ms %q", h.Get("x-ai-latency-ms"))
	}
	rateLimitHeadersPresent(t, h)
}

// docs/api.md: sessionId is optional and "generates a UUID when absent"; history is
// `{sessionId, messages:[{role, content, timestamp, tokenCount?}]}` oldest first, `?limit=` and
// `?before=` page it.
func TestChatSessionIDAndHistory(t *testing.T) {
	up := newFakeUpstream(t)
	// A clock that steps 1 s per reading, so every stored timestamp is distinct and before= pages exactly.
	base := time.Now().Add(-time.Hour)
	var ticks atomic.Int64
	now := func() time.Time { return base.Add(time.Duration(ticks.Add(1)) * time.Second) }
	ts := newTestServer(t, testServerOpts{models: routerFor(up), now: now,
		tenants: []string{chatTenant("fakeco", "fake/echo")}})
	hdr := "x-tenant-id: fakeco"

	t.Run("generated sessionId, JSON", func(t *testing.T) {
		_, d := ts.jsonChat(t, `{"message":"first","stream":false}`, hdr)
		if _, err := uuid.Parse(d.SessionID); err != nil {
			t.Fatalf("generated sessionId %q is not a UUID", d.SessionID)
		}
		h := ts.history(t, d.SessionID, "", hdr)
		if len(h.Messages) != 2 || h.Messages[0].Role != "user" || h.Messages[0].Content != "first" ||
			h.Messages[1].Role != "assistant" || h.Messages[1].Content != "echo: first" {
			t.Fatalf("history %+v, want user then assistant", h.Messages)
		}
		lo, hi := base.UnixMilli(), now().UnixMilli()
		if ts0, ts1 := h.Messages[0].Timestamp, h.Messages[1].Timestamp; ts0 <= lo || ts1 >= hi || ts0 >= ts1 {
			t.Fatalf("timestamps %d, %d: want epoch ms within (%d, %d), user before assistant", ts0, ts1, lo, hi)
		}
	})
	t.Run("generated sessionId, SSE", func(t *testing.T) {
		_, body := ts.streamChat(t, `{"message":"streamed"}`, hdr)
		frames := parseSSE(t, body)
		var tok tokenJSON
		json.Unmarshal(frames[0].data, &tok)
		if _, err := uuid.Parse(tok.SessionID); err != nil {
			t.Fatalf("generated sessionId %q is not a UUID", tok.SessionID)
		}
		if h := ts.history(t, tok.SessionID, "", hdr); len(h.Messages) != 2 {
			t.Fatalf("history of the generated session %+v", h.Messages)
		}
	})
	t.Run("paging", func(t *testing.T) {
		for i := range 3 {
			ts.jsonChat(t, fmt.Sprintf(`{"message":"m%d","sessionId":"page-1","stream":false}`, i), hdr)
		}
		all := ts.history(t, "page-1", "", hdr).Messages
		var contents []string
		for i, m := range all {
			contents = append(contents, m.Content)
			if i > 0 && m.Timestamp <= all[i-1].Timestamp {
				t.Fatalf("not oldest first: %+v", all)
			}
		}
		if want := []string{"m0", "echo: m0", "m1", "echo: m1", "m2", "echo: m2"}; !slices.Equal(contents, want) {
			t.Fatalf("history %q, want %q", contents, want)
		}
		page := func(q string) []string {
			var out []string
			for _, m := range ts.history(t, "page-1", q, hdr).Messages {
				out = append(out, m.Content)
			}
			return out
		}
		cut := strconv.FormatInt(all[4].Timestamp, 10) // m2's timestamp
		tests := []struct {
			query string
			want  []string
		}{
			{"?limit=2", []string{"m2", "echo: m2"}},
			{"?limit=100", contents},
			{"?before=" + cut, contents[:4]},
			{"?before=" + cut + "&limit=2", []string{"m1", "echo: m1"}},
			{"?before=" + time.UnixMilli(all[4].Timestamp).UTC().Format(time.RFC3339Nano), contents[:4]},
		}
		for _, tt := range tests {
			if got := page(tt.query); !slices.Equal(got, tt.want) {
				t.Errorf("history%s = %q, want %q", tt.query, got, tt.want)
			}
		}
	})
	t.Run("bad paging", func(t *testing.T) {
		for _, q := range []string{"?limit=0", "?limit=-1", "?limit=abc", "?before=yesterday", "?before=0", "?before=-1", "?before=1969-12-31T00:00:00Z"} {
			resp, b := ts.do(t, "GET", "/chat/page-1/history"+q, "", hdr)
			env := wantError(t, resp, b, 400, CodeInvalidRequest)
			name, _, _ := strings.Cut(strings.TrimPrefix(q, "?"), "=")
			if !strings.Contains(env.Error.Message, name) {
				t.Errorf("%s: message %q does not name %s", q, env.Error.Message, name)
			}
		}
	})
}

// docs/api.md: "Concurrent requests on one session never lose or interleave a stored message"
// (issue 3). 50 concurrent JSON chats on one session leave 100 messages, each user message
// directly followed by its own reply.
func testHistoryOrderUnderConcurrency(t *testing.T, ts *testServer, up *fakeUpstream) {
	const n = 50
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			resp, b := ts.do(t, "POST", "/chat", fmt.Sprintf(`{"message":"msg-%d","sessionId":"busy","stream":false}`, i), "x-tenant-id: echo")
			if resp.StatusCode != 200 {
				t.Errorf("request %d: status %d: %s", i, resp.StatusCode, b)
			}
		})
	}
	wg.Wait()
	msgs := ts.history(t, "busy", "", "x-tenant-id: echo").Messages
	if len(msgs) != 2*n {
		t.Fatalf("history has %d messages, want %d", len(msgs), 2*n)
	}
	seen := map[string]bool{}
	for i := 0; i < len(msgs); i += 2 {
		u, a := msgs[i], msgs[i+1]
		if u.Role != "user" || a.Role != "assistant" || a.Content != "echo: "+u.Content {
			t.Fatalf("messages %d,%d are not a user message and its own reply: %+v / %+v", i, i+1, u, a)
		}
		if seen[u.Content] {
			t.Fatalf("%q stored twice", u.Content)
		}
		seen[u.Content] = true
	}
	for i := range n {
		if !seen[fmt.Sprintf("msg-%d", i)] {
			t.Errorf("msg-%d lost", i)
		}
	}
}

// docs/api.md Sessions: `DELETE /chat/:sessionId` → `{ok:true, data:{sessionId, deleted:true}}`;
// other methods → 405.
func testDeleteSession(t *testing.T, ts *testServer, up *fakeUpstream) {
	hdr := "x-tenant-id: fakeco"
	ts.jsonChat(t, `{"message":"hi","sessionId":"del-1","stream":false}`, hdr)
	if h := ts.history(t, "del-1", "", hdr); len(h.Messages) != 2 {
		t.Fatalf("before delete: %+v", h.Messages)
	}
	resp, b := ts.do(t, "DELETE", "/chat/del-1", "", hdr)
	env := decodeEnvelope(t, resp, b)
	if resp.StatusCode != 200 || !*env.OK || string(env.Data) != `{"deleted":true,"sessionId":"del-1"}` {
		t.Fatalf("delete: %d %s", resp.StatusCode, b)
	}
	if h := ts.history(t, "del-1", "", hdr); len(h.Messages) != 0 {
		t.Fatalf("history after delete: %+v", h.Messages)
	}
	// The session is usable again after a clear.
	ts.jsonChat(t, `{"message":"again","sessionId":"del-1","stream":false}`, hdr)
	if h := ts.history(t, "del-1", "", hdr); len(h.Messages) != 2 || h.Messages[0].Content != "again" {
		t.Fatalf("history after a new chat: %+v", h.Messages)
	}

	for _, tt := range []struct{ method, path string }{
		{"PUT", "/chat/del-1"}, {"PATCH", "/chat/del-1"}, {"POST", "/chat/del-1"}, {"GET", "/chat/del-1"},
		{"POST", "/chat/del-1/history"}, {"DELETE", "/chat/del-1/history"}, {"PUT", "/chat"}, {"DELETE", "/chat"},
	} {
		resp, b := ts.do(t, tt.method, tt.path, "", hdr)
		if resp.StatusCode != 405 {
			t.Errorf("%s %s: status %d, want 405", tt.method, tt.path, resp.StatusCode)
			continue
		}
		wantError(t, resp, b, 405, CodeMethodNotAllowed)
	}
	resp, b = ts.do(t, "DELETE", "/chat/bad.id", "", hdr)
	wantError(t, resp, b, 400, CodeInvalidRequest)
}

// docs/api.md Sessions: "Another tenant's session is never visible: identities are
// `<tenant>:<sessionId>`."
func testCrossTenantIsolation(t *testing.T, ts *testServer, up *fakeUpstream) {
	open := "x-tenant-id: open"
	acme := "x-api-key: " + testKey
	ts.jsonChat(t, `{"message":"from open","sessionId":"shared","stream":false}`, open)
	ts.jsonChat(t, `{"message":"from acme","sessionId":"shared","stream":false}`, acme)

	only := func(hdr, want string) int {
		t.Helper()
		msgs := ts.history(t, "shared", "", hdr).Messages
		for _, m := range msgs {
			if m.Role == "user" && m.Content != want {
				t.Fatalf("%s sees %q: %+v", hdr, m.Content, msgs)
			}
		}
		return len(msgs)
	}
	if n := only(open, "from open"); n != 2 {
		t.Fatalf("open has %d messages", n)
	}
	if n := only(acme, "from acme"); n != 2 {
		t.Fatalf("acme has %d messages", n)
	}
	resp, b := ts.do(t, "DELETE", "/chat/shared", "", open)
	decodeEnvelope(t, resp, b)
	if n := only(open, ""); n != 0 {
		t.Fatalf("open after delete has %d messages", n)
	}
	if n := only(acme, "from acme"); n != 2 {
		t.Fatalf("deleting open's session touched acme's: %d messages", n)
	}
}

// docs/api.md "Rate limits": allowed iff fewer than perMinute in the window and fewer than burst in
// the burst window; remaining = max(0, limit − count − 1) on admit, 0 on deny; headers
// x-ratelimit-limit (= perMinute), x-ratelimit-remaining, x-ratelimit-reset (epoch ms), RateLimit-*
// (seconds) and, on 429, Retry-After; user = body userId, else x-user-id on a keyed tenant, the
// client address on a public one.
func testRateLimit(t *testing.T, ts *testServer, up *fakeUpstream) {
	hdr := "x-tenant-id: limited"
	for i, wantRemaining := range []string{"2", "1", "0"} {
		before := time.Now().UnixMilli()
		resp, _ := ts.jsonChat(t, `{"message":"hi","userId":"alice","stream":false}`, hdr)
		h := resp.Header
		if h.Get("x-ratelimit-limit") != "3" || h.Get("x-ratelimit-remaining") != wantRemaining ||
			h.Get("RateLimit-Limit") != "3" || h.Get("RateLimit-Remaining") != wantRemaining {
			t.Fatalf("request %d: limit %q remaining %q (RateLimit-Limit %q, RateLimit-Remaining %q), want 3 and %s",
				i+1, h.Get("x-ratelimit-limit"), h.Get("x-ratelimit-remaining"), h.Get("RateLimit-Limit"), h.Get("RateLimit-Remaining"), wantRemaining)
		}
		if reset, err := strconv.ParseInt(h.Get("x-ratelimit-reset"), 10, 64); err != nil || reset <= before {
			t.Fatalf("x-ratelimit-reset %q is not epoch ms in the future", h.Get("x-ratelimit-reset"))
		}
		if s, err := strconv.Atoi(h.Get("RateLimit-Reset")); err != nil || s < 1 || s > 60 {
			t.Fatalf("RateLimit-Reset %q, want seconds within the window", h.Get("RateLimit-Reset"))
		}
	}
	resp, b := ts.do(t, "POST", "/chat", `{"message":"hi","userId":"alice","stream":false}`, hdr)
	wantError(t, resp, b, 429, CodeRateLimited)
	if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 {
		t.Fatalf("Retry-After %q, want ≥ 1 second", resp.Header.Get("Retry-After"))
	}
	if resp.Header.Get("x-ratelimit-remaining") != "0" {
		t.Fatalf("denied remaining %q, want 0", resp.Header.Get("x-ratelimit-remaining"))
	}
	rateLimitHeadersPresent(t, resp.Header)
	// An SSE request is limited the same way, before any stream starts.
	resp, b = ts.do(t, "POST", "/chat", `{"message":"hi","userId":"alice"}`, hdr)
	wantError(t, resp, b, 429, CodeRateLimited)

	// On a public tenant the user is the client address: a fresh userId or x-user-id does not open
	// a new window (varying it once let 30 of 30 requests through a 5/minute tenant).
	resp, b = ts.do(t, "POST", "/chat", `{"message":"hi","userId":"bob","stream":false}`, hdr)
	wantError(t, resp, b, 429, CodeRateLimited)
	resp, b = ts.do(t, "POST", "/chat", `{"message":"hi","stream":false}`, hdr, "x-user-id: carol")
	wantError(t, resp, b, 429, CodeRateLimited)

	// On a keyed tenant, users have their own windows: body userId, and x-user-id.
	hdr = "x-api-key: " + limitedKey
	for range 3 {
		ts.jsonChat(t, `{"message":"hi","userId":"alice","stream":false}`, hdr)
	}
	resp, b = ts.do(t, "POST", "/chat", `{"message":"hi","userId":"alice","stream":false}`, hdr)
	wantError(t, resp, b, 429, CodeRateLimited)
	resp, _ = ts.jsonChat(t, `{"message":"hi","userId":"bob","stream":false}`, hdr)
	if r := resp.Header.Get("x-ratelimit-remaining"); r != "2" {
		t.Fatalf("bob's first request: remaining %q, want 2", r)
	}
	resp, _ = ts.jsonChat(t, `{"message":"hi","stream":false}`, hdr, "x-user-id: carol")
	if r := resp.Header.Get("x-ratelimit-remaining"); r != "2" {
		t.Fatalf("carol's first request: remaining %q, want 2", r)
	}
	// The body userId beats x-user-id: alice is still limited whatever the header says.
	resp, b = ts.do(t, "POST", "/chat", `{"message":"hi","userId":"alice","stream":false}`, hdr, "x-user-id: carol")
	wantError(t, resp, b, 429, CodeRateLimited)

	// Rate-limit headers on every answer of a rate-limited route, a 403 included.
	resp, b = ts.do(t, "POST", "/chat", `{"message":"hi","modelId":"fake/other","userId":"dave","stream":false}`, "x-tenant-id: allow")
	wantError(t, resp, b, 403, CodeModelNotAllowed)
	rateLimitHeadersPresent(t, resp.Header)
	if resp.Header.Get("x-ratelimit-limit") != "1000" || resp.Header.Get("x-ratelimit-remaining") != "999" {
		t.Fatalf("403 rate-limit headers: limit %q remaining %q", resp.Header.Get("x-ratelimit-limit"), resp.Header.Get("x-ratelimit-remaining"))
	}
}

// docs/api.md POST /chat "Model": request modelId > MODEL_ID > tenant aiModels.chat; with
// featureFlags.modelAllowList the model must be in allowedModels, else 403 model_not_allowed before
// any model call (a fallback outside the list is dropped); fallback aiModels.fallbackChat; every
// model failing → 502 ai_error.
func testModelSelection(t *testing.T, ts *testServer, up *fakeUpstream) {
	t.Run("precedence", func(t *testing.T) {
		tests := []struct {
			name string
			ts   *testServer
			body string
			want string
		}{
			{"tenant", ts, `{"message":"hi","stream":false}`, "fake/instant"},
			{"request beats tenant", ts, `{"message":"hi","stream":false,"modelId":"fake/asked"}`, "fake/asked"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				calls := up.callsTo(tt.want)
				resp, _ := tt.ts.jsonChat(t, tt.body, "x-tenant-id: fakeco")
				if got := resp.Header.Get("x-model-id"); got != tt.want {
					t.Fatalf("x-model-id %q, want %q", got, tt.want)
				}
				if up.callsTo(tt.want) != calls+1 {
					t.Fatalf("the upstream was not asked for %s", tt.want)
				}
			})
		}
	})
	t.Run("allow-list refuses before any model call", func(t *testing.T) {
		for _, stream := range []string{"true", "false"} {
			resp, b := ts.do(t, "POST", "/chat", `{"message":"hi","modelId":"fake/forbidden","stream":`+stream+`}`, "x-tenant-id: allow")
			env := wantError(t, resp, b, 403, CodeModelNotAllowed)
			if !strings.Contains(env.Error.Message, "fake/forbidden") {
				t.Errorf("message %q does not name the model", env.Error.Message)
			}
		}
		if n := up.callsTo("fake/forbidden"); n != 0 {
			t.Fatalf("the upstream was called %d times for a model outside the allow-list", n)
		}
		resp, _ := ts.jsonChat(t, `{"message":"hi","stream":false}`, "x-tenant-id: allow")
		if resp.Header.Get("x-model-id") != "fake/instant" {
			t.Fatalf("allowed model: x-model-id %q", resp.Header.Get("x-model-id"))
		}
	})
	t.Run("fallback outside the allow-list is dropped", func(t *testing.T) {
		resp, b := ts.do(t, "POST", "/chat", `{"message":"hi","stream":false}`, "x-tenant-id: allowfb")
		wantError(t, resp, b, 502, CodeAIError)
		if n := up.callsTo("fake/outside"); n != 0 {
			t.Fatalf("a fallback outside the allow-list was called %d times", n)
		}
	})
	t.Run("fallback before the first token", func(t *testing.T) {
		fails := up.callsTo("fake/fail")
		resp, d := ts.jsonChat(t, `{"message":"hi","stream":false}`, "x-tenant-id: fallback")
		if resp.Header.Get("x-model-id") != "fake/backup" || d.Message != "Hello world!" {
			t.Fatalf("x-model-id %q, message %q; want the fallback's reply", resp.Header.Get("x-model-id"), d.Message)
		}
		if up.callsTo("fake/fail") != fails+1 {
			t.Fatalf("the primary was not tried first")
		}
		resp, body := ts.streamChat(t, `{"message":"hi"}`, "x-tenant-id: fallback")
		_, errFrame, done := splitStream(t, parseSSE(t, body))
		if resp.Header.Get("x-model-id") != "fake/backup" || done.Usage.ModelID != "fake/backup" || errFrame != nil {
			t.Fatalf("SSE fallback: x-model-id %q, usage model %q, error %+v", resp.Header.Get("x-model-id"), done.Usage.ModelID, errFrame)
		}
	})
	t.Run("no provider serves the model", func(t *testing.T) {
		for _, stream := range []string{"true", "false"} {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // a hang fails, not blocks
			resp := ts.post(t, ctx, `{"message":"hi","stream":`+stream+`}`, "x-tenant-id: unserved")
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			env := wantError(t, resp, b, 502, CodeAIError)
			if !strings.Contains(env.Error.Message, "nowhere/model") {
				t.Fatalf("message %q does not name the model", env.Error.Message)
			}
		}
	})
}

// Issue 3: until documents can be ingested, local/extractive replies with an honest message that
// no language model is configured, streamed like any model, and x-model-id says local/extractive.
func testLocalExtractiveIsHonest(t *testing.T, ts *testServer, up *fakeUpstream) {
	resp, body := ts.streamChat(t, `{"message":"what is the capital of France?"}`, "x-tenant-id: open")
	if resp.StatusCode != 200 || resp.Header.Get("x-model-id") != gateway.ExtractiveModelID {
		t.Fatalf("status %d, x-model-id %q", resp.StatusCode, resp.Header.Get("x-model-id"))
	}
	frames := parseSSE(t, body)
	reply, errFrame, done := splitStream(t, frames)
	if errFrame != nil || !strings.Contains(reply, "No language model is configured") || strings.TrimSpace(reply) != gateway.NoModelConfiguredReply {
		t.Fatalf("reply %q", reply)
	}
	if len(frames) < 3 {
		t.Fatalf("reply came in %d frames; want it streamed token by token", len(frames))
	}
	if done.Usage.ModelID != gateway.ExtractiveModelID {
		t.Fatalf("usage model %q", done.Usage.ModelID)
	}
}

// chatTenants are the tenants of the shared chat test server, besides testTenants' (open, acme…).
// limitedKey is the key of the keyed, rate-limited chat tenant "limitedkey".
const limitedKey = "ck_limited_test_key"

func chatTenants() []string {
	return []string{
		chatTenant("fakeco", "fake/instant"),
		chatTenant("paced", "fake/paced"),
		chatTenant("block", "fake/block"),
		chatTenant("failafter", "fake/fail-after"),
		chatTenant("echo", "fake/echo"),
		chatTenant("limited", "fake/instant", `"rateLimit": {"perMinute": 1000, "burst": 1000}`, `"rateLimit": {"perMinute": 3, "burst": 3}`),
		chatTenant("limitedkey", "fake/instant", `"rateLimit": {"perMinute": 1000, "burst": 1000}`, `"rateLimit": {"perMinute": 3, "burst": 3}`,
			`"public": true`, `"public": false`, `"apiKeys": []`, `"apiKeys": ["`+config.HashAPIKey(limitedKey)+`"]`),
		chatTenant("allow", "fake/instant", `"featureFlags": {}`, `"featureFlags": {"modelAllowList": true}, "allowedModels": ["fake/instant", "fake/fail"]`),
		chatTenant("allowfb", "fake/fail", `"embeddings"`, `"fallbackChat": "fake/outside", "embeddings"`,
			`"featureFlags": {}`, `"featureFlags": {"modelAllowList": true}, "allowedModels": ["fake/fail"]`),
		chatTenant("fallback", "fake/fail", `"embeddings"`, `"fallbackChat": "fake/backup", "embeddings"`),
		chatTenant("unserved", "nowhere/model"),
	}
}

// TestChat runs the chat routes' behaviours on one server over real parts (a server starts in ~1 s
// and stops gracefully in ~2 s, so they share it); every subtest uses its own tenant or sessions.
// Tests that start a cluster member never run in parallel: protoactor's remote.Start sets grpc's
// global logger, which races with a running member's grpc server (seen under -race).
// TestChat runs each case on its own server and upstream, so no case depends on what another left
// behind (rate-limit windows, sessions, upstream call counts) and they pass in any order.
func TestChat(t *testing.T) {
	for _, tt := range []struct {
		name string
		run  func(*testing.T, *testServer, *fakeUpstream)
	}{
		{"SSE framing", testSSEFraming},
		{"concurrent streams and per-token flushing", testSSEConcurrentStreamsAndFlushing},
		{"client disconnect cancels the model and stores nothing", testClientDisconnectCancelsModelAndStoresNothing},
		{"upstream fails mid-stream", testUpstreamFailsMidStream},
		{"JSON form", testJSONForm},
		{"history order under 50 concurrent requests", testHistoryOrderUnderConcurrency},
		{"DELETE clears the session", testDeleteSession},
		{"cross-tenant isolation", testCrossTenantIsolation},
		{"rate limit", testRateLimit},
		{"model selection", testModelSelection},
		{"local/extractive is honest", testLocalExtractiveIsHonest},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up := newFakeUpstream(t)
			ts := newTestServer(t, testServerOpts{models: routerFor(up), tenants: chatTenants()})
			tt.run(t, ts, up)
		})
	}
}

// docs/api.md POST /chat "Model": request `modelId` > `MODEL_ID` > tenant `aiModels.chat`.
func TestChatModelIDOverridesTenant(t *testing.T) {
	up := newFakeUpstream(t)
	ts := newTestServer(t, testServerOpts{models: routerFor(up), tenants: chatTenants(),
		env: func(e *config.Env) { e.ModelID = "fake/from-env" }})
	for _, tt := range []struct{ name, body, want string }{
		{"MODEL_ID beats tenant", `{"message":"hi","stream":false}`, "fake/from-env"},
		{"request beats MODEL_ID", `{"message":"hi","stream":false,"modelId":"fake/asked"}`, "fake/asked"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			calls := up.callsTo(tt.want)
			resp, _ := ts.jsonChat(t, tt.body, "x-tenant-id: fakeco")
			if got := resp.Header.Get("x-model-id"); got != tt.want {
				t.Fatalf("x-model-id %q, want %q", got, tt.want)
			}
			if up.callsTo(tt.want) != calls+1 {
				t.Fatalf("the upstream was not asked for %s", tt.want)
			}
		})
	}
}
