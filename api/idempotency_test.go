package api

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Regression for the EventSource that re-POSTs after done: three POSTs with one Idempotency-Key
// store the turn once and get the same answer.
func TestIdempotencyKeyStoresTheTurnOnce(t *testing.T) {
	ts := newTestServer(t, testServerOpts{idempotency: true})
	auth := []string{"x-tenant-id: acme", "x-api-key: " + testKey}
	cases := []struct {
		name, session, body string
	}{
		{"json", "idem-json", `{"message":"what is the capital of France?","sessionId":"idem-json","stream":false}`},
		{"stream", "idem-sse", `{"message":"what is the capital of France?","sessionId":"idem-sse"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			headers := append([]string{"Idempotency-Key: key-" + tc.name, "Content-Type: application/json"}, auth...)
			first, firstBody := ts.do(t, http.MethodPost, "/chat", tc.body, headers...)
			if first.StatusCode != 200 || first.Header.Get("Idempotent-Replayed") != "" {
				t.Fatalf("first: %d %v %s", first.StatusCode, first.Header, firstBody)
			}
			ts.waitIdle(t)
			for range 2 {
				again, body := ts.do(t, http.MethodPost, "/chat", tc.body, headers...)
				if again.StatusCode != 200 || again.Header.Get("Idempotent-Replayed") != "true" || !bytes.Equal(body, firstBody) ||
					again.Header.Get("Content-Type") != first.Header.Get("Content-Type") {
					t.Fatalf("retry: %d %v\n%s\nfirst:\n%s", again.StatusCode, again.Header, body, firstBody)
				}
			}
			if h := ts.history(t, tc.session, "", auth...); len(h.Messages) != 2 {
				t.Fatalf("history holds %d messages, want one turn (2)", len(h.Messages))
			}
		})
	}
	t.Run("another body with the same key", func(t *testing.T) {
		headers := append([]string{"Idempotency-Key: key-json", "Content-Type: application/json"}, auth...)
		resp, body := ts.do(t, http.MethodPost, "/chat", `{"message":"something else","sessionId":"idem-json","stream":false}`, headers...)
		if resp.StatusCode != http.StatusUnprocessableEntity || !bytes.Contains(body, []byte(CodeIdempotencyMismatch)) {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})
	t.Run("another caller with the same key", func(t *testing.T) {
		resp, body := ts.do(t, http.MethodPost, "/chat", `{"message":"hello","sessionId":"idem-other","stream":false}`,
			"Idempotency-Key: key-json", "Content-Type: application/json", "x-tenant-id: globex", "x-api-key: "+globexKey)
		if resp.StatusCode != 200 || resp.Header.Get("Idempotent-Replayed") != "" {
			t.Fatalf("%d %v %s", resp.StatusCode, resp.Header, body)
		}
	})
	t.Run("a failed request releases the key", func(t *testing.T) {
		headers := append([]string{"Idempotency-Key: key-bad", "Content-Type: application/json"}, auth...)
		for range 2 {
			if resp, body := ts.do(t, http.MethodPost, "/chat", `{"message":""}`, headers...); resp.StatusCode != 400 {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
		}
		resp, body := ts.do(t, http.MethodPost, "/chat", `{"message":"now valid","stream":false}`, headers...)
		if resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})
	t.Run("bad key", func(t *testing.T) {
		resp, body := ts.do(t, http.MethodPost, "/chat", `{"message":"x"}`, append([]string{"Idempotency-Key: caf\u00e9"}, auth...)...)
		if resp.StatusCode != 400 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})
}

// gatedIdempotency holds every Put until release is closed.
type gatedIdempotency struct {
	IdempotencyStore
	release chan struct{}
}

func (g *gatedIdempotency) Put(ctx context.Context, tenantID, key string, value []byte, ttl time.Duration) error {
	<-g.release
	return g.IdempotencyStore.Put(ctx, tenantID, key, value, ttl)
}

// A stream's end reaches the client before the middleware stores the answer for replays: the
// client does not wait for that write.
func TestIdempotentStreamEndsBeforeTheAnswerIsStored(t *testing.T) {
	gate := &gatedIdempotency{release: make(chan struct{})}
	ts := newTestServer(t, testServerOpts{idempotency: true, deps: func(_ testing.TB, _ *testServer, d *Deps) {
		gate.IdempotencyStore = d.Idempotency
		d.Idempotency = gate
	}})
	released := false
	defer func() {
		if !released {
			close(gate.release)
		}
	}()
	req, err := http.NewRequest(http.MethodPost, ts.URL+"/chat", strings.NewReader(`{"message":"what is the capital of France?","sessionId":"idem-end"}`))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"Idempotency-Key": "key-end", "Content-Type": "application/json", "x-tenant-id": "acme", "x-api-key": testKey} {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got := make(chan string, 1)
	go func() {
		var seen strings.Builder
		buf := make([]byte, 4096)
		for !strings.Contains(seen.String(), "event: done") {
			n, err := resp.Body.Read(buf)
			seen.Write(buf[:n])
			if err != nil {
				break
			}
		}
		got <- seen.String()
	}()
	select {
	case body := <-got:
		if !strings.Contains(body, "event: done") {
			t.Fatalf("the stream ended without its done event:\n%s", body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the done event waited for the idempotency store's write")
	}
	close(gate.release)
	released = true
}
