package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/wire/openai"
)

// v1Server is a test server with the OpenAI-compatible API: local/extractive answers chat, and
// "remote-model" is routed to a provider that is never reached (the model rules refuse first).
// Tenant "pinned" may use local/extractive only.
func v1Server(t *testing.T) *testServer {
	t.Helper()
	pinned := strings.Replace(tenantJSON("pinned", `, "public": true, "allowedModels": ["local/extractive"]`),
		`"featureFlags": {}`, `"featureFlags": {"modelAllowList": true}`, 1)
	unembedded := strings.Replace(tenantJSON("unembedded", `, "public": true`), `"embeddings": "local/hash-embed"`, `"embeddings": "@cf/baai/bge-m3"`, 1)
	ts := newTestServer(t, testServerOpts{
		tenants:     []string{pinned, unembedded},
		idempotency: true,
		models: gateway.RouterOptions{Providers: []gateway.ProviderConfig{
			{Name: "remote", BaseURL: "http://127.0.0.1:1/v1", Models: []string{"remote-model"}},
		}},
		openai: true,
	})
	return ts
}

var acmeBearer = "Authorization: Bearer " + testKey

// v1Error decodes an OpenAI error body.
func decodeV1Error(t *testing.T, body []byte) (code, param, typ string) {
	t.Helper()
	var e struct {
		Error struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Code    *string `json:"code"`
			Param   *string `json:"param"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Message == "" {
		t.Fatalf("not an OpenAI error: %s", body)
	}
	deref := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	return deref(e.Error.Code), deref(e.Error.Param), e.Error.Type
}

func TestV1Errors(t *testing.T) {
	ts := v1Server(t)
	cases := []struct {
		name, method, path, body string
		headers                  []string
		status                   int
		code, param              string
	}{
		{"no key", "GET", "/v1/models", "", nil, 401, "invalid_api_key", ""},
		{"wrong key", "GET", "/v1/models", "", []string{"Authorization: Bearer nope"}, 401, "invalid_api_key", ""},
		{"malformed JSON", "POST", "/v1/chat/completions", `{"model":`, []string{acmeBearer}, 400, "invalid_json", ""},
		{"no messages", "POST", "/v1/chat/completions", `{"model":"local/extractive","messages":[]}`, []string{acmeBearer}, 400, "invalid_value", "messages"},
		{"n=2", "POST", "/v1/chat/completions", `{"model":"local/extractive","n":2,"messages":[{"role":"user","content":"x"}]}`, []string{acmeBearer}, 400, "unsupported_value", "n"},
		{"temperature", "POST", "/v1/chat/completions", `{"temperature":9,"messages":[{"role":"user","content":"x"}]}`, []string{acmeBearer}, 400, "invalid_value", "temperature"},
		{"wrong type", "POST", "/v1/chat/completions", `{"max_tokens":"ten","messages":[{"role":"user","content":"x"}]}`, []string{acmeBearer}, 400, "invalid_value", "max_tokens"},
		{"image part", "POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}`, []string{acmeBearer}, 400, "invalid_value", "messages"},
		{"bad role", "POST", "/v1/chat/completions", `{"messages":[{"role":"robot","content":"x"}]}`, []string{acmeBearer}, 400, "invalid_value", "messages[0].role"},
		{"stream_options without stream", "POST", "/v1/chat/completions", `{"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x"}]}`, []string{acmeBearer}, 400, "invalid_value", "stream_options"},
		{"unknown model", "POST", "/v1/chat/completions", `{"model":"no-such","messages":[{"role":"user","content":"x"}]}`, []string{acmeBearer}, 404, "model_not_found", "model"},
		{"model outside the allow-list", "POST", "/v1/chat/completions", `{"model":"remote-model","messages":[{"role":"user","content":"x"}]}`, []string{"x-tenant-id: pinned"}, 403, "model_not_allowed", "model"},
		{"too large", "POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":"` + strings.Repeat("x", 5000) + `"}]}`, []string{acmeBearer}, 413, "payload_too_large", ""},
		{"unknown model id", "GET", "/v1/models/no/such", "", []string{acmeBearer}, 404, "model_not_found", "model"},
		{"wrong method", "GET", "/v1/chat/completions", "", []string{acmeBearer}, 405, "method_not_allowed", ""},
		{"unknown route", "GET", "/v1/nope", "", []string{acmeBearer}, 404, "not_found", ""},
		{"token input", "POST", "/v1/embeddings", `{"input":[1,2,3]}`, []string{acmeBearer}, 400, "unsupported_value", "input"},
		{"dimensions", "POST", "/v1/embeddings", `{"input":"x","dimensions":3}`, []string{acmeBearer}, 400, "unsupported_value", "dimensions"},
		{"previous response unknown", "POST", "/v1/responses", `{"input":"x","previous_response_id":"resp_nope"}`, []string{acmeBearer}, 404, "not_found", "previous_response_id"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := ts.do(t, tc.method, tc.path, tc.body, append([]string{"Content-Type: application/json"}, tc.headers...)...)
			code, param, typ := decodeV1Error(t, body)
			if resp.StatusCode != tc.status || code != tc.code || param != tc.param || typ != openai.TypeForStatus(tc.status) {
				t.Errorf("%d %s", resp.StatusCode, body)
			}
			if id := resp.Header.Get("x-request-id"); id == "" || id != resp.Header.Get("x-trace-id") {
				t.Errorf("x-request-id %q, x-trace-id %q", id, resp.Header.Get("x-trace-id"))
			}
		})
	}
}

// The /v1 routes leave the seed API's answers alone: its wrong methods are still 405 in its own
// envelope.
func TestV1KeepsSeedRoutes(t *testing.T) {
	ts := v1Server(t)
	resp, body := ts.do(t, "PUT", "/chat", "", acmeBearer)
	if resp.StatusCode != 405 || !bytes.Contains(body, []byte(`"ok":false`)) {
		t.Errorf("%d %s", resp.StatusCode, body)
	}
}

// Issue 15 "Model names": a model the client names that no route serves is 404 model_not_found
// on /chat too, never a silent fallback or a 502; the tenant's own model keeps its fallback.
func TestChatUnknownModelIsNotFound(t *testing.T) {
	ts := v1Server(t)
	for _, stream := range []string{"true", "false"} {
		resp, body := ts.do(t, "POST", "/chat", `{"message":"hi","modelId":"no-such-model","stream":`+stream+`}`, acmeBearer)
		if env := wantError(t, resp, body, 404, CodeModelNotFound); !strings.Contains(env.Error.Message, "no-such-model") {
			t.Errorf("message %q does not name the model", env.Error.Message)
		}
	}
}

func TestV1Models(t *testing.T) {
	ts := v1Server(t)
	list := func(headers ...string) []string {
		resp, body := ts.do(t, "GET", "/v1/models", "", headers...)
		var l openai.ModelList
		if resp.StatusCode != 200 || json.Unmarshal(body, &l) != nil || l.Object != "list" {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		var ids []string
		for _, m := range l.Data {
			ids = append(ids, m.ID)
		}
		return ids
	}
	if got := strings.Join(list(acmeBearer), ","); got != "local/extractive,local/hash-embed,remote-model" {
		t.Errorf("acme: %s", got)
	}
	// The allow-list: the tenant's own embedding model stays usable.
	if got := strings.Join(list("x-tenant-id: pinned"), ","); got != "local/extractive,local/hash-embed" {
		t.Errorf("pinned: %s", got)
	}
	resp, body := ts.do(t, "GET", "/v1/models/local/extractive", "", acmeBearer)
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte(`"id":"local/extractive"`)) {
		t.Errorf("%d %s", resp.StatusCode, body)
	}
	if resp, body := ts.do(t, "GET", "/v1/models/remote-model", "", "x-tenant-id: pinned"); resp.StatusCode != 404 {
		t.Errorf("a model outside the allow-list: %d %s", resp.StatusCode, body)
	}
}

func TestV1ChatCompletions(t *testing.T) {
	ts := v1Server(t)
	const body = `{"model":"local/extractive","messages":[{"role":"developer","content":"be brief"},{"role":"user","content":"What is the capital of France?"}]}`
	for _, path := range []string{"/v1/chat/completions", "/chat/completions"} {
		resp, b := ts.do(t, "POST", path, body, acmeBearer, "Content-Type: application/json")
		var cc openai.ChatCompletion
		if resp.StatusCode != 200 || json.Unmarshal(b, &cc) != nil {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, b)
		}
		if cc.Object != "chat.completion" || cc.Model != "local/extractive" || len(cc.Choices) != 1 || cc.Choices[0].Message.Text() == "" ||
			cc.Choices[0].FinishReason != "stop" || cc.Usage.TotalTokens != cc.Usage.PromptTokens+cc.Usage.CompletionTokens ||
			!strings.HasPrefix(cc.ID, "chatcmpl-") {
			t.Errorf("%s: %s", path, b)
		}
	}

	// A stream: the role first, content deltas, the finish reason, the usage chunk, [DONE].
	resp, b := ts.do(t, "POST", "/v1/chat/completions", strings.Replace(body, `"model"`, `"stream":true,"stream_options":{"include_usage":true},"model"`, 1),
		acmeBearer, "Content-Type: application/json")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	var chunks []openai.ChatCompletionChunk
	var done bool
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		switch {
		case !ok:
		case data == "[DONE]":
			done = true
		default:
			var c openai.ChatCompletionChunk
			if err := json.Unmarshal([]byte(data), &c); err != nil {
				t.Fatalf("chunk %q: %v", data, err)
			}
			chunks = append(chunks, c)
		}
	}
	n := len(chunks)
	if !done || n < 4 || chunks[0].Choices[0].Delta.Role != "assistant" || chunks[n-1].Usage == nil || len(chunks[n-1].Choices) != 0 ||
		chunks[n-2].Choices[0].FinishReason == nil || *chunks[n-2].Choices[0].FinishReason != "stop" {
		t.Fatalf("stream:\n%s", b)
	}

	// Idempotency-Key: the retry is the stored answer.
	headers := []string{acmeBearer, "Content-Type: application/json", "Idempotency-Key: v1-once"}
	_, first := ts.do(t, "POST", "/v1/chat/completions", body, headers...)
	ts.waitIdle(t)
	again, second := ts.do(t, "POST", "/v1/chat/completions", body, headers...)
	if again.Header.Get("Idempotent-Replayed") != "true" || !bytes.Equal(first, second) {
		t.Errorf("retry not replayed: %v\n%s\n%s", again.Header, first, second)
	}
}

func TestV1Embeddings(t *testing.T) {
	ts := v1Server(t)
	get := func(format string) []openai.Embedding {
		resp, b := ts.do(t, "POST", "/v1/embeddings", `{"input":["one two","three"],"encoding_format":"`+format+`"}`,
			acmeBearer, "Content-Type: application/json")
		var l struct {
			Data  []openai.Embedding    `json:"data"`
			Model string                `json:"model"`
			Usage openai.EmbeddingUsage `json:"usage"`
		}
		if resp.StatusCode != 200 || json.Unmarshal(b, &l) != nil || len(l.Data) != 2 || l.Model != "local/hash-embed" || l.Usage.PromptTokens == 0 {
			t.Fatalf("%s: %d %s", format, resp.StatusCode, b)
		}
		return l.Data
	}
	// The tenant's configured model is not served here: the built-in one answers, and says so.
	resp, b := ts.do(t, "POST", "/v1/embeddings", `{"input":"x"}`, "x-tenant-id: unembedded", "Content-Type: application/json")
	if resp.StatusCode != 200 || !bytes.Contains(b, []byte(`"model":"`+gateway.DefaultEmbeddingModel+`"`)) {
		t.Errorf("unserved tenant model: %d %s", resp.StatusCode, b)
	}
	floats, b64 := get("float"), get("base64")
	vec, err := openai.DecodeBase64Vector(b64[1].Embedding.(string))
	if err != nil {
		t.Fatal(err)
	}
	raw := floats[1].Embedding.([]any)
	if len(vec) != len(raw) || float64(vec[0]) != raw[0].(float64) {
		t.Errorf("base64 %d values, float %d", len(vec), len(raw))
	}
}

// The Responses API keeps the conversation in the session grains: a turn after a response sees
// the history; a turn after an older response branches; store:false keeps nothing.
func TestV1Responses(t *testing.T) {
	ts := v1Server(t)
	post := func(body string) openai.Response {
		t.Helper()
		resp, b := ts.do(t, "POST", "/v1/responses", body, acmeBearer, "Content-Type: application/json")
		var r openai.Response
		if resp.StatusCode != 200 || json.Unmarshal(b, &r) != nil || r.Status != "completed" || r.OutputText() == "" {
			t.Fatalf("%s: %d %s", body, resp.StatusCode, b)
		}
		return r
	}
	r1 := post(`{"model":"local/extractive","input":"Paris is the capital of France."}`)
	r2 := post(`{"input":"And of Spain?","previous_response_id":"` + r1.ID + `"}`)
	r3 := post(`{"input":"And of Italy?","previous_response_id":"` + r1.ID + `"}`) // a branch
	if r2.PreviousResponseID == nil || *r2.PreviousResponseID != r1.ID || r2.Usage.InputTokens <= r1.Usage.InputTokens {
		t.Errorf("r2 does not continue r1: %+v %+v", r1.Usage, r2.Usage)
	}
	ref1, _ := parseResponseID(r1.ID)
	ref2, _ := parseResponseID(r2.ID)
	ref3, _ := parseResponseID(r3.ID)
	if ref2.session != ref1.session || ref3.session == ref1.session {
		t.Errorf("sessions: %s %s %s", ref1.session, ref2.session, ref3.session)
	}
	// The conversation is a chat session like any other: /chat's history shows it.
	if h := ts.history(t, ref1.session, "", "x-tenant-id: acme", "x-api-key: "+testKey); len(h.Messages) != 4 {
		t.Errorf("session %s holds %d messages, want 4", ref1.session, len(h.Messages))
	}
	for _, r := range []openai.Response{r1, r2, r3} {
		resp, b := ts.do(t, "GET", "/v1/responses/"+r.ID, "", acmeBearer)
		var got openai.Response
		if resp.StatusCode != 200 || json.Unmarshal(b, &got) != nil || got.OutputText() != r.OutputText() || got.Model != r.Model {
			t.Errorf("GET %s: %d %s", r.ID, resp.StatusCode, b)
		}
		if (got.PreviousResponseID == nil) != (r.PreviousResponseID == nil) {
			t.Errorf("GET %s: previous_response_id %v, want %v", r.ID, got.PreviousResponseID, r.PreviousResponseID)
		}
	}
	unstored := post(`{"input":"forget me","store":false}`)
	if resp, _ := ts.do(t, "GET", "/v1/responses/"+unstored.ID, "", acmeBearer); resp.StatusCode != 404 {
		t.Errorf("store:false retrieved: %d", resp.StatusCode)
	}
	// Another tenant never sees it.
	if resp, _ := ts.do(t, "GET", "/v1/responses/"+r1.ID, "", "Authorization: Bearer "+globexKey); resp.StatusCode != 404 {
		t.Errorf("another tenant's response: %d", resp.StatusCode)
	}
}

// Concurrent turns after the same response never interleave in its session: one extends it, the
// others branch (AppendAfterResponse refuses them), and every response stays retrievable.
func TestV1ResponsesConcurrentContinuations(t *testing.T) {
	ts := v1Server(t)
	post := func(body string) (openai.Response, error) {
		resp, b := ts.do(t, "POST", "/v1/responses", body, acmeBearer, "Content-Type: application/json")
		var r openai.Response
		if resp.StatusCode != 200 {
			return r, fmt.Errorf("%d %s", resp.StatusCode, b)
		}
		return r, json.Unmarshal(b, &r)
	}
	first, err := post(`{"input":"the first turn"}`)
	if err != nil {
		t.Fatal(err)
	}
	const n = 6
	var wg sync.WaitGroup
	results := make([]openai.Response, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = post(fmt.Sprintf(`{"input":"branch %d","previous_response_id":%q}`, i, first.ID))
		}()
	}
	wg.Wait()
	ref, _ := parseResponseID(first.ID)
	if h := ts.history(t, ref.session, "", "x-tenant-id: acme", "x-api-key: "+testKey); len(h.Messages) != 4 {
		t.Fatalf("session %s holds %d messages, want the first turn and exactly one continuation (4)", ref.session, len(h.Messages))
	}
	for i, r := range results {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		resp, b := ts.do(t, "GET", "/v1/responses/"+r.ID, "", acmeBearer)
		var got openai.Response
		if resp.StatusCode != 200 || json.Unmarshal(b, &got) != nil || got.OutputText() != r.OutputText() ||
			got.PreviousResponseID == nil || *got.PreviousResponseID != first.ID {
			t.Errorf("GET %s: %d %s", r.ID, resp.StatusCode, b)
		}
	}
}
