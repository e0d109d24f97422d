package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestCallObserverSeesRetriesAndFallback: a primary that answers 503 is retried (MaxRetries 2), then
// the fallback is tried; the observer hears each retry and the switch, in order.
func TestCallObserverSeesRetriesAndFallback(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, `{"error":{"message":"down"}}`, http.StatusServiceUnavailable)
	}))
	t.Cleanup(up.Close)
	r := NewRouter(RouterOptions{
		Providers:      []ProviderConfig{{Name: "down", BaseURL: up.URL, Models: []string{"down/*"}}},
		MaxRetries:     2,
		RetryBaseDelay: time.Millisecond, RetryMaxDelay: time.Millisecond,
	})
	var got []string
	ctx := WithCallObserver(context.Background(), &CallObserver{
		OnRetry: func(model string, attempt int, err error) {
			got = append(got, "retry "+model+" "+string(rune('0'+attempt)))
		},
		OnFallback: func(from, to string, err error) { got = append(got, "fallback "+from+" → "+to) },
	})
	s, err := r.Open(ctx, ChatRequest{Model: "down/a", Messages: []Message{{Role: "user", Content: "hi"}}}, ExtractiveModelID)
	if err != nil {
		t.Fatalf("fallback to %s failed: %v", ExtractiveModelID, err)
	}
	s.Close()
	want := []string{"retry down/a 1", "retry down/a 2", "fallback down/a → " + ExtractiveModelID}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("observed (-want +got):\n%s", diff)
	}
}
