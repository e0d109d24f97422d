package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// deltaChunk is one OpenAI streamed chunk carrying content.
func deltaChunk(content string) string {
	c, _ := json.Marshal(content)
	return fmt.Sprintf(`{"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":%s},"finish_reason":null}]}`, c)
}

const (
	roleChunk   = `{"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}`
	finishChunk = `{"object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`
)

func usageChunk(in, out int) string {
	return fmt.Sprintf(`{"object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}}`, in, out, in+out)
}

// startSSE commits a 200 event-stream response.
func startSSE(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
}

// writeEvents writes each payload as one data event and flushes after each.
func writeEvents(w http.ResponseWriter, payloads ...string) {
	for _, p := range payloads {
		fmt.Fprintf(w, "data: %s\n\n", p)
		w.(http.Flusher).Flush()
	}
}

// recorded is what the fake upstream saw of one request.
type recorded struct {
	Path   string
	Header http.Header
	Body   map[string]any
}

// fakeUpstream is an OpenAI-compatible server whose behaviour each test supplies; it records requests.
type fakeUpstream struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []recorded
}

func newFakeUpstream(t *testing.T, handle func(w http.ResponseWriter, r *http.Request)) *fakeUpstream {
	t.Helper()
	f := &fakeUpstream{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		f.mu.Lock()
		f.reqs = append(f.reqs, recorded{Path: r.URL.Path, Header: r.Header.Clone(), Body: body})
		f.mu.Unlock()
		handle(w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeUpstream) hits() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.reqs)
}

func (f *fakeUpstream) last() recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reqs[len(f.reqs)-1]
}

// drain reads a stream to its end.
func drain(t *testing.T, s ChatStream) ([]string, error) {
	t.Helper()
	var toks []string
	for {
		tok, err := s.Next(t.Context())
		if errors.Is(err, io.EOF) {
			return toks, nil
		}
		if err != nil {
			return toks, err
		}
		toks = append(toks, tok)
	}
}

func env(vals map[string]string) func(string) string {
	return func(k string) string { return vals[k] }
}

func TestOpenAICompatibleStreamsDeltasAndUsage(t *testing.T) {
	up := newFakeUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		startSSE(w)
		fmt.Fprint(w, ": keep-alive comment\n\n")
		writeEvents(w, roleChunk, deltaChunk("Hel"), deltaChunk("lo"), deltaChunk(", world"), finishChunk, usageChunk(11, 3), "[DONE]")
	})
	for _, base := range []string{up.URL, up.URL + "/v1", up.URL + "/v1/"} {
		t.Run(base, func(t *testing.T) {
			p := NewOpenAICompatible(OpenAIOptions{Name: "test", BaseURL: base, APIKeyEnv: "TEST_KEY",
				Getenv: env(map[string]string{"TEST_KEY": "sk-secret"})})
			temp := 0.5
			s, err := p.OpenChat(t.Context(), ChatRequest{Model: "llama3", MaxTokens: 64, Temperature: &temp,
				Messages: []Message{{Role: "system", Content: "be brief"}, {Role: "user", Content: "hi"}}})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			toks, err := drain(t, s)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]string{"Hel", "lo", ", world"}, toks); diff != "" {
				t.Errorf("deltas (-want +got):\n%s", diff)
			}
			if got, want := s.Usage(), (Usage{TokensIn: 11, TokensOut: 3}); got != want {
				t.Errorf("usage = %+v, want exact %+v from the final chunk", got, want)
			}
			if s.Model() != "llama3" {
				t.Errorf("Model() = %q", s.Model())
			}
			req := up.last()
			if req.Path != "/v1/chat/completions" {
				t.Errorf("path = %q, want /v1/chat/completions", req.Path)
			}
			if got := req.Header.Get("Authorization"); got != "Bearer sk-secret" {
				t.Errorf("Authorization = %q", got)
			}
			wantBody := map[string]any{
				"model": "llama3", "stream": true, "stream_options": map[string]any{"include_usage": true},
				"max_tokens": 64.0, "temperature": 0.5,
				"messages": []any{
					map[string]any{"role": "system", "content": "be brief"},
					map[string]any{"role": "user", "content": "hi"},
				},
			}
			if diff := cmp.Diff(wantBody, req.Body); diff != "" {
				t.Errorf("request body (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOpenAICompatibleEstimatesWithoutUsage(t *testing.T) {
	up := newFakeUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		startSSE(w)
		writeEvents(w, deltaChunk("abcde"), deltaChunk("fgh"), finishChunk, "[DONE]")
	})
	p := NewOpenAICompatible(OpenAIOptions{Name: "test", BaseURL: up.URL})
	s, err := p.OpenChat(t.Context(), ChatRequest{Model: "m", Messages: []Message{{Role: "user", Content: "hello there"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := drain(t, s); err != nil {
		t.Fatal(err)
	}
	want := Usage{TokensIn: EstimateTokens("hello there"), TokensOut: EstimateTokens("abcdefgh"), Estimated: true}
	if got := s.Usage(); got != want {
		t.Errorf("usage = %+v, want %+v", got, want)
	}
	if h := up.last().Header.Get("Authorization"); h != "" {
		t.Errorf("no key configured, but Authorization = %q", h)
	}
}

func TestOpenAICompatibleNonStreamedAnswer(t *testing.T) {
	up := newFakeUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"choices":[{"message":{"role":"assistant","content":"whole reply"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":2}}`)
	})
	s, err := NewOpenAICompatible(OpenAIOptions{Name: "test", BaseURL: up.URL}).OpenChat(t.Context(), ChatRequest{Model: "m"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	toks, err := drain(t, s)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"whole reply"}, toks); diff != "" {
		t.Errorf("a server that ignores stream:true still serves (-want +got):\n%s", diff)
	}
	if got := s.Usage(); got != (Usage{TokensIn: 5, TokensOut: 2}) {
		t.Errorf("usage = %+v", got)
	}
}

// TestOpenAICompatibleAsksForTheClientsMode: a caller that reads the reply whole asks for one
// completion (stream false, no stream_options, JSON accepted), a streaming caller for a stream; the
// reply is read by what the server sent, whichever was asked (a completion answering a stream
// request: TestOpenAICompatibleNonStreamedAnswer).
func TestOpenAICompatibleAsksForTheClientsMode(t *testing.T) {
	completion := `{"choices":[{"message":{"role":"assistant","content":"whole reply"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":2}}`
	for _, tc := range []struct {
		name       string
		whole      bool
		serveJSON  bool
		wantStream bool
		wantAccept string
		wantToks   []string
	}{
		{"whole asked, completion sent", true, true, false, "application/json", []string{"whole reply"}},
		{"whole asked, stream sent anyway", true, false, false, "application/json", []string{"Hel", "lo"}},
		{"stream asked, stream sent", false, false, true, "text/event-stream", []string{"Hel", "lo"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := newFakeUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				if tc.serveJSON {
					w.Header().Set("Content-Type", "application/json")
					fmt.Fprint(w, completion)
					return
				}
				startSSE(w)
				writeEvents(w, deltaChunk("Hel"), deltaChunk("lo"), finishChunk, usageChunk(5, 2), "[DONE]")
			})
			s, err := NewOpenAICompatible(OpenAIOptions{Name: "test", BaseURL: up.URL}).OpenChat(t.Context(),
				ChatRequest{Model: "m", Messages: []Message{{Role: "user", Content: "hi"}}, Whole: tc.whole})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			toks, err := drain(t, s)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantToks, toks); diff != "" {
				t.Errorf("deltas (-want +got):\n%s", diff)
			}
			if got := s.Usage(); got != (Usage{TokensIn: 5, TokensOut: 2}) {
				t.Errorf("usage = %+v, want the server's", got)
			}
			req := up.last()
			if got := req.Body["stream"]; got != tc.wantStream {
				t.Errorf("stream = %v, want %v", got, tc.wantStream)
			}
			if _, ok := req.Body["stream_options"]; ok != tc.wantStream {
				t.Errorf("stream_options sent = %v, want %v (only with a stream)", ok, tc.wantStream)
			}
			if got := req.Header.Get("Accept"); got != tc.wantAccept {
				t.Errorf("Accept = %q, want %q", got, tc.wantAccept)
			}
		})
	}
}

// TestOpenAICompatibleWholeErrorObject: a 200 completion that carries an error object is the
// upstream's error, not an empty reply.
func TestOpenAICompatibleWholeErrorObject(t *testing.T) {
	up := newFakeUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"error":{"message":"model overloaded"}}`)
	})
	s, err := NewOpenAICompatible(OpenAIOptions{Name: "test", BaseURL: up.URL}).OpenChat(t.Context(), ChatRequest{Model: "m", Whole: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = drain(t, s)
	var ue *UpstreamError
	if !errors.As(err, &ue) || !strings.Contains(ue.Message, "model overloaded") {
		t.Fatalf("err = %v, want the upstream's error message", err)
	}
}

func TestOpenAICompatibleErrorClassification(t *testing.T) {
	tests := []struct {
		name        string
		status      int
		body        string
		wantRetry   bool
		wantMessage string
	}{
		{"429 OpenAI shape", 429, `{"error":{"message":"Rate limit reached","type":"requests"}}`, true, "Rate limit reached"},
		{"500 plain text", 500, "internal boom\n", true, "internal boom"},
		{"502 empty body", 502, "", true, "Bad Gateway"},
		{"503 vLLM shape", 503, `{"object":"error","message":"overloaded","code":503}`, true, "overloaded"},
		{"400 Ollama shape", 400, `{"error":"model 'x' not found"}`, false, "model 'x' not found"},
		{"401 Cloudflare shape", 401, `{"success":false,"errors":[{"code":10000,"message":"Authentication error"}]}`, false, "Authentication error"},
		{"404 detail", 404, `{"detail":"Not Found"}`, false, "Not Found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newFakeUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				fmt.Fprint(w, tt.body)
			})
			p := NewOpenAICompatible(OpenAIOptions{Name: "prov", BaseURL: up.URL, APIKeyEnv: "K",
				Getenv: env(map[string]string{"K": "sk-never-shown"})})
			_, err := p.OpenChat(t.Context(), ChatRequest{Model: "m1"})
			var ue *UpstreamError
			if !errors.As(err, &ue) {
				t.Fatalf("error %v is not *UpstreamError", err)
			}
			want := UpstreamError{Provider: "prov", Model: "m1", Status: tt.status, Retryable: tt.wantRetry, Message: tt.wantMessage}
			if diff := cmp.Diff(want, *ue, cmp.AllowUnexported(UpstreamError{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if strings.Contains(err.Error(), "sk-never-shown") {
				t.Errorf("error leaks the API key: %v", err)
			}
		})
	}
}

func TestOpenAICompatibleConnectErrorIsRetryable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	base := srv.URL
	srv.Close() // nothing listens there any more
	_, err := NewOpenAICompatible(OpenAIOptions{Name: "gone", BaseURL: base}).OpenChat(t.Context(), ChatRequest{Model: "m"})
	var ue *UpstreamError
	if !errors.As(err, &ue) || !ue.Retryable || ue.Status != 0 {
		t.Fatalf("want retryable *UpstreamError with status 0, got %#v", err)
	}
}

func TestOpenAICompatibleStreamFailures(t *testing.T) {
	tests := []struct {
		name      string
		handle    func(w http.ResponseWriter)
		wantToks  []string
		wantRetry bool
		wantMsg   string
	}{
		{"dropped before any token", func(w http.ResponseWriter) {
			startSSE(w)
			writeEvents(w, roleChunk)
			panic(http.ErrAbortHandler) // the connection is cut mid-response
		}, nil, true, "stream interrupted"},
		{"dropped after a token", func(w http.ResponseWriter) {
			startSSE(w)
			writeEvents(w, deltaChunk("partial"))
			panic(http.ErrAbortHandler)
		}, []string{"partial"}, true, "stream interrupted"},
		{"clean end without DONE or finish", func(w http.ResponseWriter) {
			startSSE(w)
			writeEvents(w, deltaChunk("a"))
		}, []string{"a"}, true, "stream ended before the reply was complete"},
		{"in-stream error object", func(w http.ResponseWriter) {
			startSSE(w)
			writeEvents(w, deltaChunk("a"), `{"error":{"message":"context length exceeded"}}`)
		}, []string{"a"}, false, "context length exceeded"},
		{"malformed chunk", func(w http.ResponseWriter) {
			startSSE(w)
			writeEvents(w, `{"choices":[`)
		}, nil, false, "malformed stream chunk"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newFakeUpstream(t, func(w http.ResponseWriter, r *http.Request) { tt.handle(w) })
			s, err := NewOpenAICompatible(OpenAIOptions{Name: "p", BaseURL: up.URL}).OpenChat(t.Context(), ChatRequest{Model: "m"})
			if err != nil {
				t.Fatalf("setup failed: %v", err)
			}
			defer s.Close()
			toks, err := drain(t, s)
			if diff := cmp.Diff(tt.wantToks, toks); diff != "" {
				t.Errorf("tokens before the failure (-want +got):\n%s", diff)
			}
			var ue *UpstreamError
			if !errors.As(err, &ue) {
				t.Fatalf("want *UpstreamError, got %v", err)
			}
			if ue.Retryable != tt.wantRetry || !strings.Contains(ue.Message, tt.wantMsg) {
				t.Errorf("got retryable=%v message=%q, want retryable=%v message containing %q", ue.Retryable, ue.Message, tt.wantRetry, tt.wantMsg)
			}
		})
	}
}

// hangingUpstream sends one token, then holds the stream open until the client goes away, and reports
// that it saw its request context cancelled.
func hangingUpstream(t *testing.T) (*fakeUpstream, <-chan struct{}) {
	cancelled := make(chan struct{})
	var once sync.Once
	up := newFakeUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		startSSE(w)
		writeEvents(w, deltaChunk("first"))
		<-r.Context().Done()
		once.Do(func() { close(cancelled) })
	})
	return up, cancelled
}

func TestOpenAICompatibleCloseCancelsUpstream(t *testing.T) {
	up, cancelled := hangingUpstream(t)
	s, err := NewOpenAICompatible(OpenAIOptions{Name: "p", BaseURL: up.URL}).OpenChat(t.Context(), ChatRequest{Model: "m"})
	if err != nil {
		t.Fatal(err)
	}
	if tok, err := s.Next(t.Context()); err != nil || tok != "first" {
		t.Fatalf("Next = %q, %v", tok, err)
	}
	s.Close()
	<-cancelled // the upstream saw its request context cancelled (the test deadline bounds this wait)
	if _, err := s.Next(t.Context()); err == nil {
		t.Error("Next after Close succeeded")
	}
}

func TestOpenAICompatibleContextCancelAbortsBlockedNext(t *testing.T) {
	up, cancelled := hangingUpstream(t)
	ctx, cancel := context.WithCancel(t.Context())
	s, err := NewOpenAICompatible(OpenAIOptions{Name: "p", BaseURL: up.URL}).OpenChat(ctx, ChatRequest{Model: "m"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Next(ctx); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := s.Next(ctx) // blocks: the upstream sends nothing more
		errc <- err
	}()
	cancel()
	err = <-errc
	if !errors.Is(err, context.Canceled) {
		t.Errorf("blocked Next after cancel = %v, want context.Canceled", err)
	}
	if IsRetryable(err) {
		t.Error("the caller's own cancellation must not be retried")
	}
	<-cancelled
}

func TestOpenAICompatibleStreamWaitRunsBeforeEachRead(t *testing.T) {
	up, _ := hangingUpstream(t)
	waited := make(chan struct{}, 64)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ctx = WithStreamWait(ctx, func() { waited <- struct{}{} })
	s, err := NewOpenAICompatible(OpenAIOptions{Name: "p", BaseURL: up.URL}).OpenChat(ctx, ChatRequest{Model: "m"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if tok, err := s.Next(ctx); err != nil || tok != "first" {
		t.Fatalf("Next = %q, %v", tok, err)
	}
	if len(waited) == 0 {
		t.Error("the first token was read without calling the wait hook")
	}
	for len(waited) > 0 {
		<-waited
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = s.Next(ctx) // waits: the upstream sends nothing more
	}()
	select {
	case <-waited: // the caller heard before the wait
	case <-done:
		t.Fatal("Next returned while the upstream sends nothing")
	case <-time.After(5 * time.Second):
		t.Fatal("Next waits for the upstream without calling the wait hook first")
	}
	cancel()
	<-done
}
