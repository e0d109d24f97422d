package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRouterResolve(t *testing.T) {
	providers := []ProviderConfig{
		{Name: "a", BaseURL: "http://a.invalid", Models: []string{"gpt-4o", "gpt-*"}, PricePer1KIn: 0.005, PricePer1KOut: 0.015},
		{Name: "b", BaseURL: "http://b.invalid", Models: []string{"gpt-4*", "llama*", "@cf/special"}},
		{Name: "c", BaseURL: "http://c.invalid", Models: []string{"*"}},
	}
	withToken := NewRouter(RouterOptions{Providers: providers, CloudflareTokenEnv: "CF_TOKEN",
		Getenv: env(map[string]string{"CF_TOKEN": "cf-secret"})})
	withoutToken := NewRouter(RouterOptions{Providers: providers, CloudflareTokenEnv: "CF_TOKEN", Getenv: env(nil)})

	tests := []struct {
		name, model string
		router      *Router
		want        string // provider; "" means not served
		why         string
	}{
		{"exact", "gpt-4o", withToken, "a", "an exact entry beats b's longer prefix gpt-4*"},
		{"longest prefix", "gpt-4-turbo", withToken, "b", "gpt-4* is longer than gpt-*"},
		{"shorter prefix", "gpt-3.5-turbo", withToken, "a", ""},
		{"prefix of a later provider", "llama3:8b", withToken, "b", ""},
		{"catch-all", "mistral", withToken, "c", ""},
		{"@cf with token", "@cf/meta/llama-3.1-8b-instruct", withToken, CloudflareProviderName, ""},
		{"@cf without token", "@cf/meta/llama-3.1-8b-instruct", withoutToken, "", "a catch-all never captures @cf/ models"},
		{"@cf listed explicitly", "@cf/special", withoutToken, "b", "an operator who lists an @cf/ ID routes it"},
		{"local/extractive", ExtractiveModelID, withToken, LocalProviderName, "always the built-in"},
		{"local/extractive without providers", ExtractiveModelID, NewRouter(RouterOptions{}), LocalProviderName, ""},
		{"unknown local model", "local/nope", withToken, "", "a catch-all never captures local/ models"},
		{"empty", "", withToken, "", ""},
		{"nothing configured", "gpt-4o", NewRouter(RouterOptions{}), "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := tt.router.Describe(tt.model)
			m, rerr := tt.router.Resolve(tt.model)
			if tt.want == "" {
				if !errors.Is(err, ErrModelNotServed) || !errors.Is(rerr, ErrModelNotServed) {
					t.Fatalf("Describe/Resolve(%q) = %+v, %v / %v; want ErrModelNotServed %s", tt.model, info, err, rerr, tt.why)
				}
				if tt.model != "" && !strings.Contains(err.Error(), tt.model) {
					t.Errorf("error %q does not name the model", err)
				}
				return
			}
			if err != nil || rerr != nil || m == nil {
				t.Fatalf("Describe/Resolve(%q): %v / %v", tt.model, err, rerr)
			}
			if info.Provider != tt.want {
				t.Errorf("%q routes to %q, want %q %s", tt.model, info.Provider, tt.want, tt.why)
			}
		})
	}
}

func TestRouterPrices(t *testing.T) {
	r := NewRouter(RouterOptions{Providers: []ProviderConfig{
		{Name: "priced", Models: []string{"gpt-4o"}, PricePer1KIn: 0.005, PricePer1KOut: 0.015},
		{Name: "unpriced", Models: []string{"llama*"}},
	}})
	tests := []struct {
		model   string
		in, out float64
	}{
		{"gpt-4o", 0.005, 0.015},
		{"llama3", DefaultPricePer1K, DefaultPricePer1K}, // docs/api.md: default 0.0002 in and out
		{ExtractiveModelID, 0, 0},                        // built-ins cost nothing
	}
	for _, tt := range tests {
		info, err := r.Describe(tt.model)
		if err != nil {
			t.Fatal(err)
		}
		if info.PricePer1KIn != tt.in || info.PricePer1KOut != tt.out {
			t.Errorf("%s: price %v/%v, want %v/%v", tt.model, info.PricePer1KIn, info.PricePer1KOut, tt.in, tt.out)
		}
	}
}

func TestCloudflareEndpointsAndMetadata(t *testing.T) {
	up := newFakeUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		startSSE(w)
		writeEvents(w, deltaChunk("ok"), finishChunk, usageChunk(1, 1), "[DONE]")
	})
	r := NewRouter(RouterOptions{CloudflareToken: "cf-secret",
		CloudflareAPIBase: up.URL + "/client/v4", CloudflareGatewayBase: up.URL + "/v1"})
	tests := []struct {
		name     string
		meta     RequestMeta
		wantPath string
		wantMeta map[string]string // nil: no cf-aig-metadata header
	}{
		{"direct Workers AI", RequestMeta{TenantID: "acme", AccountID: "acc123", TraceID: "t1"},
			"/client/v4/accounts/acc123/ai/v1/chat/completions", nil},
		{"through the tenant's AI Gateway", RequestMeta{TenantID: "acme", AccountID: "acc123", GatewayID: "gw1",
			TraceID: "t1", SessionID: "s1", Route: "/chat"},
			"/v1/acc123/gw1/workers-ai/v1/chat/completions",
			map[string]string{"tenantId": "acme", "traceId": "t1", "sessionId": "s1", "route": "/chat"}},
		{"gateway metadata skips empty values", RequestMeta{TenantID: "acme", AccountID: "acc123", GatewayID: "gw1"},
			"/v1/acc123/gw1/workers-ai/v1/chat/completions", map[string]string{"tenantId": "acme"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text, usage, model, err := r.Complete(t.Context(), ChatRequest{Model: "@cf/meta/llama-3.1-8b-instruct",
				Messages: []Message{{Role: "user", Content: "hi"}}, Meta: tt.meta}, "")
			if err != nil {
				t.Fatal(err)
			}
			if text != "ok" || usage != (Usage{TokensIn: 1, TokensOut: 1}) || model != "@cf/meta/llama-3.1-8b-instruct" {
				t.Errorf("Complete = %q %+v %q", text, usage, model)
			}
			req := up.last()
			if req.Path != tt.wantPath {
				t.Errorf("path = %q, want %q", req.Path, tt.wantPath)
			}
			if got := req.Header.Get("Authorization"); got != "Bearer cf-secret" {
				t.Errorf("Authorization = %q", got)
			}
			if req.Body["model"] != "@cf/meta/llama-3.1-8b-instruct" {
				t.Errorf("body model = %v", req.Body["model"])
			}
			raw := req.Header.Get("cf-aig-metadata")
			if tt.wantMeta == nil {
				if raw != "" {
					t.Errorf("direct call sent cf-aig-metadata %q", raw)
				}
				return
			}
			var got map[string]string
			if err := json.Unmarshal([]byte(raw), &got); err != nil {
				t.Fatalf("cf-aig-metadata %q: %v", raw, err)
			}
			if diff := cmp.Diff(tt.wantMeta, got); diff != "" {
				t.Errorf("cf-aig-metadata (-want +got):\n%s", diff)
			}
			if len(got) > maxAIGatewayMetadata {
				t.Errorf("%d metadata entries; AI Gateway keeps only %d", len(got), maxAIGatewayMetadata)
			}
		})
	}
	t.Run("tenant without accountId", func(t *testing.T) {
		_, _, _, err := r.Complete(t.Context(), ChatRequest{Model: "@cf/x"}, "")
		if !errors.Is(err, errNoAccountID) {
			t.Errorf("err = %v", err)
		}
	})
}

// testRouter routes "primary*" to one upstream and "fallback*" to another, with fast retries.
func testRouter(primary, fallback *fakeUpstream, opts RouterOptions) *Router {
	if primary != nil {
		opts.Providers = append(opts.Providers, ProviderConfig{Name: "primary", BaseURL: primary.URL, Models: []string{"primary*"}})
	}
	if fallback != nil {
		opts.Providers = append(opts.Providers, ProviderConfig{Name: "fallback", BaseURL: fallback.URL, Models: []string{"fallback*"}})
	}
	if opts.MaxRetries == 0 {
		opts.MaxRetries = 2
	}
	opts.RetryBaseDelay = time.Microsecond
	opts.RetryMaxDelay = time.Millisecond
	return NewRouter(opts)
}

func goodStream(toks ...string) func(w http.ResponseWriter, r *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		startSSE(w)
		for _, tok := range toks {
			writeEvents(w, deltaChunk(tok))
		}
		writeEvents(w, finishChunk, usageChunk(7, len(toks)), "[DONE]")
	}
}

func status(code int, body string) func(w http.ResponseWriter, r *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(code)
		fmt.Fprint(w, body)
	}
}

func dropBeforeFirstToken(w http.ResponseWriter, r *http.Request) {
	startSSE(w)
	writeEvents(w, roleChunk)
	panic(http.ErrAbortHandler)
}

func TestRouterOpenFallsBackBeforeTheFirstToken(t *testing.T) {
	tests := []struct {
		name         string
		primary      func(w http.ResponseWriter, r *http.Request)
		primaryModel string
		wantHits     int // requests the primary upstream saw
		why          string
	}{
		{"429 retried then fallback", status(429, `{"error":{"message":"slow down"}}`), "primary-m", 3, "1 try + 2 retries"},
		{"500 retried then fallback", status(500, "boom"), "primary-m", 3, ""},
		{"400 not retried", status(400, `{"error":"bad request"}`), "primary-m", 1, "a client error will not improve on retry"},
		{"dropped before first token", dropBeforeFirstToken, "primary-m", 3, "a dropped stream is retryable"},
		{"primary not served", goodStream("never"), "unknown-model", 0, "straight to the fallback"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			primary := newFakeUpstream(t, tt.primary)
			fallback := newFakeUpstream(t, goodStream("from ", "fallback"))
			r := testRouter(primary, fallback, RouterOptions{})
			s, err := r.Open(t.Context(), ChatRequest{Model: tt.primaryModel, Messages: []Message{{Role: "user", Content: "hi"}}}, "fallback-m")
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer s.Close()
			toks, err := drain(t, s)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(toks, ""); got != "from fallback" {
				t.Errorf("reply = %q", got)
			}
			if s.Model() != "fallback-m" {
				t.Errorf("Model() = %q, want the fallback that served", s.Model())
			}
			if got := primary.hits(); got != tt.wantHits {
				t.Errorf("primary saw %d requests, want %d %s", got, tt.wantHits, tt.why)
			}
			if got := fallback.hits(); got != 1 {
				t.Errorf("fallback opened %d times, want once", got)
			}
		})
	}
}

func TestRouterOpenRetrySucceedsOnThePrimary(t *testing.T) {
	calls := 0
	primary := newFakeUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		calls++ // the handler runs sequentially: Open retries one attempt at a time
		if calls == 1 {
			status(503, "busy")(w, r)
			return
		}
		goodStream("second ", "try")(w, r)
	})
	fallback := newFakeUpstream(t, goodStream("x"))
	text, usage, model, err := testRouter(primary, fallback, RouterOptions{}).Complete(t.Context(),
		ChatRequest{Model: "primary-m"}, "fallback-m")
	if err != nil {
		t.Fatal(err)
	}
	if text != "second try" || model != "primary-m" || usage != (Usage{TokensIn: 7, TokensOut: 2}) {
		t.Errorf("Complete = %q %+v %q", text, usage, model)
	}
	if fallback.hits() != 0 {
		t.Error("fallback opened although a retry of the primary succeeded")
	}
}

func TestRouterFailureAfterFirstTokenComesFromNext(t *testing.T) {
	primary := newFakeUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		startSSE(w)
		writeEvents(w, deltaChunk("partial"))
		panic(http.ErrAbortHandler)
	})
	fallback := newFakeUpstream(t, goodStream("x"))
	s, err := testRouter(primary, fallback, RouterOptions{}).Open(t.Context(), ChatRequest{Model: "primary-m"}, "fallback-m")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	toks, err := drain(t, s)
	if diff := cmp.Diff([]string{"partial"}, toks); diff != "" {
		t.Errorf("tokens (-want +got):\n%s", diff)
	}
	var ce *CallError
	var ue *UpstreamError
	if !errors.As(err, &ce) || !errors.As(err, &ue) {
		t.Fatalf("Next error = %v, want a *CallError wrapping an *UpstreamError", err)
	}
	if diff := cmp.Diff([]string{"primary-m"}, ce.Tried); diff != "" {
		t.Errorf("Tried (-want +got): %s", diff)
	}
	if fallback.hits() != 0 || primary.hits() != 1 {
		t.Errorf("after the first token nothing is retried: primary %d, fallback %d requests", primary.hits(), fallback.hits())
	}
}

func TestRouterOpenErrorNamesEveryModelTried(t *testing.T) {
	primary := newFakeUpstream(t, status(500, "primary down"))
	r := testRouter(primary, nil, RouterOptions{})
	_, err := r.Open(t.Context(), ChatRequest{Model: "primary-m"}, "@cf/meta/llama")
	var ce *CallError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want *CallError", err)
	}
	if diff := cmp.Diff([]string{"primary-m", "@cf/meta/llama"}, ce.Tried); diff != "" {
		t.Errorf("Tried (-want +got): %s", diff)
	}
	if !errors.Is(err, ErrModelNotServed) {
		t.Error("the fallback's not-served error is lost")
	}
	var ue *UpstreamError
	if !errors.As(err, &ue) || ue.Status != 500 {
		t.Errorf("the primary's upstream error is lost: %v", err)
	}
	for _, s := range []string{"primary-m", "@cf/meta/llama", "primary down", "after 3 attempts"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q lacks %q", err, s)
		}
	}
}

// A provider's 404 means it does not know the model: the caller named one that does not exist
// there, which the fallback must not hide (issue 15 "Model names").
func TestRouterOpenDoesNotFallBackFromAnUnknownModel(t *testing.T) {
	primary := newFakeUpstream(t, status(404, `{"error":{"message":"model 'nope' not found"}}`))
	fallback := newFakeUpstream(t, goodStream("from ", "fallback"))
	r := testRouter(primary, fallback, RouterOptions{})
	_, err := r.Open(t.Context(), ChatRequest{Model: "primary-m", Messages: []Message{{Role: "user", Content: "hi"}}}, "fallback-m")
	if !IsModelNotFound(err) {
		t.Fatalf("err = %v, want the provider's 404", err)
	}
	if primary.hits() != 1 || fallback.hits() != 0 {
		t.Errorf("primary %d requests, fallback %d; want 1 and 0", primary.hits(), fallback.hits())
	}
}

func TestRouterOpenNotServedWithoutFallback(t *testing.T) {
	_, err := NewRouter(RouterOptions{}).Open(t.Context(), ChatRequest{Model: "gpt-4o"}, "")
	if !errors.Is(err, ErrModelNotServed) || !strings.Contains(err.Error(), `"gpt-4o"`) {
		t.Errorf("err = %v, want ErrModelNotServed naming the model", err)
	}
}

func TestRouterOpenEmptyReplyIsNotAFailure(t *testing.T) {
	primary := newFakeUpstream(t, goodStream())
	fallback := newFakeUpstream(t, goodStream("x"))
	text, _, model, err := testRouter(primary, fallback, RouterOptions{}).Complete(t.Context(), ChatRequest{Model: "primary-m"}, "fallback-m")
	if err != nil || text != "" || model != "primary-m" {
		t.Errorf("Complete = %q %q %v", text, model, err)
	}
	if fallback.hits() != 0 {
		t.Error("a normal end with no tokens triggered the fallback")
	}
}

func TestRouterOpenHonoursCancelledContext(t *testing.T) {
	primary := newFakeUpstream(t, status(429, "slow down"))
	fallback := newFakeUpstream(t, goodStream("x"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := testRouter(primary, fallback, RouterOptions{}).Open(ctx, ChatRequest{Model: "primary-m"}, "fallback-m")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if fallback.hits() != 0 {
		t.Error("a cancelled call went on to the fallback")
	}
}

func TestRouterFirstTokenTimeoutFallsBack(t *testing.T) {
	// The primary commits its headers and then never sends a token; only the first-token bound ends it.
	primary := newFakeUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		startSSE(w)
		<-r.Context().Done()
	})
	fallback := newFakeUpstream(t, goodStream("rescued"))
	r := testRouter(primary, fallback, RouterOptions{MaxRetries: -1, FirstTokenTimeout: 20 * time.Millisecond})
	text, _, model, err := r.Complete(t.Context(), ChatRequest{Model: "primary-m"}, "fallback-m")
	if err != nil || text != "rescued" || model != "fallback-m" {
		t.Errorf("Complete = %q %q %v", text, model, err)
	}
}

// TestRouterAsksForTheWholeReply: Complete, and Open of a Whole request, ask the upstream for one
// completion; Open of a streaming request, and any call of a Router with a first-token bound (only a
// stream shows the first token before the last), ask for a stream.
func TestRouterAsksForTheWholeReply(t *testing.T) {
	for _, tc := range []struct {
		name       string
		firstToken time.Duration
		call       func(r *Router) error
		wantStream bool
	}{
		{"Complete", 0, func(r *Router) error {
			_, _, _, err := r.Complete(t.Context(), ChatRequest{Model: "primary-m"}, "")
			return err
		}, false},
		{"Open whole", 0, func(r *Router) error { return drainOpen(t, r, ChatRequest{Model: "primary-m", Whole: true}) }, false},
		{"Open streamed", 0, func(r *Router) error { return drainOpen(t, r, ChatRequest{Model: "primary-m"}) }, true},
		{"Complete with a first-token bound", time.Minute, func(r *Router) error {
			_, _, _, err := r.Complete(t.Context(), ChatRequest{Model: "primary-m"}, "")
			return err
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := newFakeUpstream(t, goodStream("ok"))
			r := testRouter(up, nil, RouterOptions{FirstTokenTimeout: tc.firstToken})
			if err := tc.call(r); err != nil {
				t.Fatal(err)
			}
			if got := up.last().Body["stream"]; got != tc.wantStream {
				t.Errorf("stream = %v, want %v", got, tc.wantStream)
			}
		})
	}
}

func drainOpen(t *testing.T, r *Router, req ChatRequest) error {
	s, err := r.Open(t.Context(), req, "")
	if err != nil {
		return err
	}
	defer s.Close()
	_, err = drain(t, s)
	return err
}

func TestRouterCloseCancelsUpstream(t *testing.T) {
	up, cancelled := hangingUpstream(t)
	r := testRouter(up, nil, RouterOptions{})
	s, err := r.Open(t.Context(), ChatRequest{Model: "primary-m"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if tok, err := s.Next(t.Context()); tok != "first" || err != nil {
		t.Fatalf("Next = %q %v", tok, err)
	}
	s.Close()
	<-cancelled // the upstream saw its request context cancelled
}

func TestRouterServesLocalExtractive(t *testing.T) {
	s, err := NewRouter(RouterOptions{}).Open(t.Context(), ChatRequest{Model: ExtractiveModelID,
		Messages: []Message{{Role: "user", Content: "hi"}}}, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	toks, err := drain(t, s)
	if err != nil || strings.Join(toks, "") != NoModelConfiguredReply || s.Model() != ExtractiveModelID {
		t.Errorf("tokens %q, model %q, err %v", toks, s.Model(), err)
	}
	if !s.Usage().Estimated {
		t.Error("local/extractive usage must be marked estimated")
	}
}
