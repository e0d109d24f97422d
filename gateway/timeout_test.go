package gateway

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

// firstThenHang sends one token and then holds the stream open until the client gives up; gone is
// closed when the upstream saw its request cancelled.
func firstThenHang(gone chan<- struct{}) func(w http.ResponseWriter, r *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		startSSE(w)
		writeEvents(w, deltaChunk("first"))
		<-r.Context().Done()
		close(gone)
	}
}

func TestRouterCallTimeout(t *testing.T) {
	t.Run("before the first token it is retryable and falls back", func(t *testing.T) {
		primary := newFakeUpstream(t, func(w http.ResponseWriter, r *http.Request) {
			startSSE(w)
			<-r.Context().Done()
		})
		fallback := newFakeUpstream(t, goodStream("rescued"))
		r := testRouter(primary, fallback, RouterOptions{MaxRetries: 1, CallTimeout: 200 * time.Millisecond})
		text, _, model, err := r.Complete(t.Context(), ChatRequest{Model: "primary-m"}, "fallback-m")
		if err != nil || text != "rescued" || model != "fallback-m" {
			t.Errorf("Complete = %q %q %v", text, model, err)
		}
		if primary.hits() != 2 {
			t.Errorf("primary called %d times; a timed-out attempt is retried once (MaxRetries 1)", primary.hits())
		}
	})

	t.Run("after the first token the stream ends with an error naming the timeout", func(t *testing.T) {
		gone := make(chan struct{})
		primary := newFakeUpstream(t, firstThenHang(gone))
		r := testRouter(primary, nil, RouterOptions{CallTimeout: 30 * time.Millisecond})
		s, err := r.Open(t.Context(), ChatRequest{Model: "primary-m"}, "")
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if tok, err := s.Next(t.Context()); tok != "first" || err != nil {
			t.Fatalf("Next = %q %v", tok, err)
		}
		_, err = s.Next(t.Context())
		var ce *CallError
		var ue *UpstreamError
		if !errors.As(err, &ce) || !errors.As(err, &ue) || ue.Retryable || !errors.Is(err, errCallTimeout) ||
			!strings.Contains(err.Error(), "30ms timeout") {
			t.Errorf("Next after the bound = %v; want a non-retryable *UpstreamError for the call timeout in a *CallError", err)
		}
		<-gone // the upstream call was cancelled, not left running
	})

	t.Run("a provider's own timeout wins over the router's", func(t *testing.T) {
		gone := make(chan struct{})
		up := newFakeUpstream(t, firstThenHang(gone))
		r := NewRouter(RouterOptions{CallTimeout: -1, Providers: []ProviderConfig{
			{Name: "p", BaseURL: up.URL, Models: []string{"*"}, Timeout: 25 * time.Millisecond}}})
		if info, _ := r.Describe("m"); info.CallTimeout != 25*time.Millisecond {
			t.Errorf("Describe: CallTimeout %s", info.CallTimeout)
		}
		s, err := r.Open(t.Context(), ChatRequest{Model: "m"}, "")
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, err := drain(t, s); !errors.Is(err, errCallTimeout) {
			t.Errorf("drain = %v, want the provider's call timeout", err)
		}
		<-gone
	})

	t.Run("defaults", func(t *testing.T) {
		r := NewRouter(RouterOptions{Providers: []ProviderConfig{{Name: "p", BaseURL: "http://p.invalid", Models: []string{"*"}}}})
		if info, _ := r.Describe("m"); info.CallTimeout != DefaultCallTimeout {
			t.Errorf("default CallTimeout %s, want %s", info.CallTimeout, DefaultCallTimeout)
		}
		none := NewRouter(RouterOptions{CallTimeout: -1, Providers: []ProviderConfig{{Name: "p", BaseURL: "http://p.invalid", Models: []string{"*"}}}})
		if info, _ := none.Describe("m"); info.CallTimeout != 0 {
			t.Errorf("CallTimeout -1 gives %s, want none", info.CallTimeout)
		}
	})

	t.Run("a stream that finishes within the bound is untouched", func(t *testing.T) {
		up := newFakeUpstream(t, goodStream("a", "b", "c"))
		r := testRouter(up, nil, RouterOptions{CallTimeout: time.Minute})
		text, usage, _, err := r.Complete(t.Context(), ChatRequest{Model: "primary-m"}, "")
		if err != nil || text != "abc" || usage.TokensOut != 3 || usage.Estimated {
			t.Errorf("Complete = %q %+v %v", text, usage, err)
		}
	})
}
