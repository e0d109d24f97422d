package api

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A relay holds its events until the model stream waits for the upstream (streamPusher). Whatever
// the route, a token must reach the client while the upstream is still thinking about the next one:
// fake/block sends one token and then waits until the test releases it.
func TestStreamTokensReachClientWhileUpstreamWaits(t *testing.T) {
	tests := []struct {
		path, body string
		after      string // what the client must see after the release
	}{
		{"/chat", `{"message":"hi","sessionId":"held-1"}`, "event: done"},
		{"/v1/chat/completions", `{"model":"fake/block","stream":true,"messages":[{"role":"user","content":"hi"}]}`, "[DONE]"},
		{"/v1/responses", `{"model":"fake/block","stream":true,"input":"hi"}`, "response.completed"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			up := newFakeUpstream(t)
			ts := newTestServer(t, testServerOpts{models: routerFor(up), tenants: chatTenants(), openai: true})
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, ts.URL+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("x-tenant-id", "block")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			rd := bufio.NewReader(resp.Body)
			readUntil := func(want string) {
				t.Helper()
				for {
					line, err := rd.ReadString('\n')
					if strings.Contains(line, want) {
						return
					}
					if err != nil {
						t.Fatalf("stream ended (%v) before %q", err, want)
					}
				}
			}
			// The token arrives while fake/block holds the rest back; a relay that kept it until
			// the upstream's next read returned would never send it (the context ends the test).
			readUntil("partial ")
			close(up.release)
			readUntil("rest")
			readUntil(tt.after)
		})
	}
}
