package gateway

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/crispy-enigma/crispy/observe"
)

// traceUpstream is an OpenAI-compatible server that records the X-Trace-Id of each request.
type traceUpstream struct {
	mu  sync.Mutex
	ids []string
}

func (u *traceUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.ids = append(u.ids, r.Header.Get(TraceHeader))
	u.mu.Unlock()
	if r.URL.Path == "/v1/embeddings" {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"data":[{"index":0,"embedding":[0.1,0.2]}],"usage":{"prompt_tokens":1}}`)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	_, _ = io.WriteString(w, "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n")
}

func (u *traceUpstream) last() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.ids[len(u.ids)-1]
}

// TestTraceIDSentUpstream: chat and embedding calls carry the request's trace ID as X-Trace-Id,
// from RequestMeta or else from the context the HTTP layer set; without one, no header.
func TestTraceIDSentUpstream(t *testing.T) {
	up := &traceUpstream{}
	srv := httptest.NewServer(up)
	t.Cleanup(srv.Close)
	chat := NewOpenAICompatible(OpenAIOptions{Name: "up", BaseURL: srv.URL})
	emb := NewOpenAIEmbeddings(OpenAIEmbeddingOptions{Name: "up", BaseURL: srv.URL, Model: "e"})

	runChat := func(ctx context.Context, meta RequestMeta) {
		t.Helper()
		st, err := chat.OpenChat(ctx, ChatRequest{Model: "m", Messages: []Message{{Role: "user", Content: "x"}}, Meta: meta})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		for {
			if _, err := st.Next(ctx); errors.Is(err, io.EOF) {
				return
			} else if err != nil {
				t.Fatal(err)
			}
		}
	}
	cases := []struct {
		name string
		ctx  context.Context
		meta RequestMeta
		want string
	}{
		{"from the request meta", context.Background(), RequestMeta{TraceID: "meta-1"}, "meta-1"},
		{"meta wins over the context", observe.WithTraceID(context.Background(), "ctx-1"), RequestMeta{TraceID: "meta-2"}, "meta-2"},
		{"from the context", observe.WithTraceID(context.Background(), "ctx-2"), RequestMeta{}, "ctx-2"},
		{"none", context.Background(), RequestMeta{}, ""},
	}
	for _, tc := range cases {
		t.Run("chat "+tc.name, func(t *testing.T) {
			runChat(tc.ctx, tc.meta)
			if got := up.last(); got != tc.want {
				t.Errorf("X-Trace-Id = %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("embeddings", func(t *testing.T) {
		if _, err := emb.Embed(observe.WithTraceID(context.Background(), "emb-1"), []string{"x"}); err != nil {
			t.Fatal(err)
		}
		if got := up.last(); got != "emb-1" {
			t.Errorf("X-Trace-Id = %q, want emb-1", got)
		}
	})
}
