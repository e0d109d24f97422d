package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// embedServer answers /v1/embeddings like an OpenAI-compatible server: the vector of input i of the whole
// call is [id, id+0.5, …] (dim values) where id is the number in the text "t<id>", so order is checkable.
// Items are returned in reverse order with their index, as servers are allowed to.
func embedServer(dim int, withUsage bool) func(w http.ResponseWriter, r *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Model string   `json:"model"`
			Input []string `json:"input"`
		}
		body := r.Context().Value(bodyKey{}).(map[string]any)
		raw, _ := json.Marshal(body)
		_ = json.Unmarshal(raw, &req)
		type item struct {
			Object    string    `json:"object"`
			Index     int       `json:"index"`
			Embedding []float32 `json:"embedding"`
		}
		var items []item
		for i := len(req.Input) - 1; i >= 0; i-- {
			var id int
			fmt.Sscanf(req.Input[i], "t%d", &id)
			v := make([]float32, dim)
			for j := range v {
				v[j] = float32(id) + float32(j)/2
			}
			items = append(items, item{"embedding", i, v})
		}
		resp := map[string]any{"object": "list", "data": items, "model": req.Model}
		if withUsage {
			resp["usage"] = map[string]int{"prompt_tokens": 3 * len(req.Input), "total_tokens": 3 * len(req.Input)}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(resp)
	}
}

// bodyKey hands the decoded request body (read by fakeUpstream) to handlers.
type bodyKey struct{}

// newEmbedUpstream is a fakeUpstream whose handlers see the decoded body (fakeUpstream consumes
// r.Body to record it). Each embedder sends its batches one after another, so the last recorded
// request is the one being handled.
func newEmbedUpstream(t *testing.T, handle func(w http.ResponseWriter, r *http.Request)) *fakeUpstream {
	var f *fakeUpstream
	f = newFakeUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		handle(w, r.WithContext(context.WithValue(r.Context(), bodyKey{}, f.last().Body)))
	})
	return f
}

func texts(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("t%d", i)
	}
	return out
}

func testEmbedder(up *fakeUpstream, opts OpenAIEmbeddingOptions) *OpenAIEmbeddings {
	opts.Name = "emb"
	opts.BaseURL = up.URL + "/v1"
	if opts.Model == "" {
		opts.Model = "bge-test"
	}
	opts.RetryBaseDelay = time.Microsecond
	opts.RetryMaxDelay = time.Millisecond
	return NewOpenAIEmbeddings(opts)
}

func TestOpenAIEmbeddingsBatchesKeepOrderAndCountUsage(t *testing.T) {
	tests := []struct {
		name       string
		n, batch   int
		wantCalls  int
		withUsage  bool
		wantTokens int
		estimated  bool
	}{
		{"one batch", 3, 10, 1, true, 9, false},
		{"exact multiple", 8, 4, 2, true, 24, false},
		{"remainder batch", 10, 4, 3, true, 30, false},
		{"default batch size", DefaultEmbeddingBatchSize + 1, 0, 2, true, 3 * (DefaultEmbeddingBatchSize + 1), false},
		{"no usage reported: estimated", 5, 2, 3, false, 5, true},
		{"nothing to embed", 0, 4, 0, true, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newEmbedUpstream(t, embedServer(4, tt.withUsage))
			e := testEmbedder(up, OpenAIEmbeddingOptions{BatchSize: tt.batch, APIKey: "sk-emb"})
			in := texts(tt.n)
			vecs, usage, err := e.EmbedWithUsage(t.Context(), in)
			if err != nil {
				t.Fatal(err)
			}
			if len(vecs) != tt.n || up.hits() != tt.wantCalls {
				t.Fatalf("%d vectors in %d calls; want %d in %d", len(vecs), up.hits(), tt.n, tt.wantCalls)
			}
			for i, v := range vecs {
				if v[0] != float32(i) || len(v) != 4 {
					t.Fatalf("vector %d = %v: out of order or wrong dimension", i, v)
				}
			}
			if usage.TokensIn != tt.wantTokens || usage.Estimated != tt.estimated || usage.TokensOut != 0 {
				t.Errorf("usage %+v, want %d tokens in, estimated %v", usage, tt.wantTokens, tt.estimated)
			}
			if tt.n > 0 {
				if e.Dimension() != 4 {
					t.Errorf("dimension learned: %d, want 4", e.Dimension())
				}
				last := up.last()
				if last.Path != "/v1/embeddings" || last.Header.Get("Authorization") != "Bearer sk-emb" || last.Body["model"] != "bge-test" {
					t.Errorf("request: %s %q model %v", last.Path, last.Header.Get("Authorization"), last.Body["model"])
				}
			}
		})
	}
}

func TestOpenAIEmbeddingsDimensionChecks(t *testing.T) {
	up := newEmbedUpstream(t, embedServer(4, true))
	if _, err := testEmbedder(up, OpenAIEmbeddingOptions{Dimension: 8}).Embed(t.Context(), texts(2)); err == nil ||
		!strings.Contains(err.Error(), "dimension 4, want 8") {
		t.Errorf("configured dimension 8, server answers 4: %v", err)
	}
	e := testEmbedder(up, OpenAIEmbeddingOptions{})
	if e.Dimension() != 0 {
		t.Errorf("dimension before any call: %d", e.Dimension())
	}
	if d, err := e.Probe(t.Context()); d != 4 || err != nil {
		t.Errorf("Probe = %d, %v", d, err)
	}
	hits := up.hits()
	if d, _ := e.Probe(t.Context()); d != 4 || up.hits() != hits {
		t.Error("Probe called the server again although the dimension is known")
	}
}

func TestOpenAIEmbeddingsMalformedResponses(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"too few", `{"data":[{"index":0,"embedding":[1,2]}]}`, "1 embeddings for 2 inputs"},
		{"repeated index", `{"data":[{"index":0,"embedding":[1,2]},{"index":0,"embedding":[1,2]}]}`, "repeated"},
		{"index out of range", `{"data":[{"index":0,"embedding":[1,2]},{"index":5,"embedding":[1,2]}]}`, "out of range"},
		{"ragged", `{"data":[{"index":0,"embedding":[1,2]},{"index":1,"embedding":[1,2,3]}]}`, "dimension 3, want 2"},
		{"empty vector", `{"data":[{"index":0,"embedding":[]},{"index":1,"embedding":[1]}]}`, "empty embedding"},
		{"per-token vectors (no pooling)", `{"data":[{"index":0,"embedding":[[1,2]]},{"index":1,"embedding":[[1,2]]}]}`, "malformed"},
		{"not JSON", `<html>`, "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newEmbedUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprint(w, tt.body)
			})
			_, err := testEmbedder(up, OpenAIEmbeddingOptions{}).Embed(t.Context(), texts(2))
			var ue *UpstreamError
			if !errors.As(err, &ue) || ue.Retryable || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v; want a non-retryable upstream error containing %q", err, tt.want)
			}
			if up.hits() != 1 {
				t.Errorf("a malformed answer was retried (%d calls)", up.hits())
			}
		})
	}
}

func TestOpenAIEmbeddingsRetriesRetryableFailures(t *testing.T) {
	tests := []struct {
		name      string
		fail      func(w http.ResponseWriter, r *http.Request)
		failures  int // before success
		retries   int
		wantCalls int
		wantErr   string
		retryable bool
	}{
		{"429 then success", status(429, `{"error":{"message":"slow down"}}`), 1, 2, 2, "", false},
		{"503 twice then success", status(503, "busy"), 2, 2, 3, "", false},
		{"500 beyond the retries", status(500, `{"error":"boom"}`), 5, 2, 3, "after 3 attempts", true},
		{"dropped connection", func(w http.ResponseWriter, r *http.Request) { panic(http.ErrAbortHandler) }, 1, 2, 2, "", false},
		{"400 is not retried", status(400, `{"error":{"message":"input too long"}}`), 5, 2, 1, "input too long", false},
		{"401 is not retried", status(401, `{"error":{"message":"bad key"}}`), 5, 2, 1, "status 401", false},
		{"no retries configured", status(503, "busy"), 5, -1, 1, "status 503", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			calls := 0
			good := embedServer(2, true)
			up := newEmbedUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				calls++
				n := calls
				mu.Unlock()
				if n <= tt.failures {
					tt.fail(w, r)
					return
				}
				good(w, r)
			})
			vecs, err := testEmbedder(up, OpenAIEmbeddingOptions{MaxRetries: tt.retries}).Embed(t.Context(), texts(3))
			if up.hits() != tt.wantCalls {
				t.Errorf("%d calls, want %d", up.hits(), tt.wantCalls)
			}
			if tt.wantErr == "" {
				if err != nil || len(vecs) != 3 {
					t.Errorf("Embed = %d vectors, %v", len(vecs), err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || IsRetryable(err) != tt.retryable {
				t.Errorf("err = %v (retryable %v); want %q, retryable %v", err, IsRetryable(err), tt.wantErr, tt.retryable)
			}
		})
	}
}

func TestOpenAIEmbeddingsTimeoutIsRetriedAndCancelIsNot(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	var mu sync.Mutex
	calls := 0
	good := embedServer(2, true)
	up := newEmbedUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		if n == 1 { // the first request hangs until the client gives up
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		good(w, r)
	})
	vecs, err := testEmbedder(up, OpenAIEmbeddingOptions{Timeout: 30 * time.Millisecond}).Embed(t.Context(), texts(2))
	if err != nil || len(vecs) != 2 || up.hits() != 2 {
		t.Errorf("timed-out request not retried: %d vectors, %d calls, %v", len(vecs), up.hits(), err)
	}

	hang := newEmbedUpstream(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		for hang.hits() == 0 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	_, err = testEmbedder(hang, OpenAIEmbeddingOptions{Timeout: -1}).Embed(ctx, texts(1))
	if !errors.Is(err, context.Canceled) || hang.hits() != 1 {
		t.Errorf("cancelled call: %v after %d calls; want context.Canceled and no retry", err, hang.hits())
	}
}

func TestOpenAIEmbeddingsEndpointConventions(t *testing.T) {
	for base, want := range map[string]string{
		"http://h:1/v1":  "http://h:1/v1/embeddings",
		"http://h:1/v1/": "http://h:1/v1/embeddings",
		"http://h:1":     "http://h:1/v1/embeddings",
		"http://h:1/api": "http://h:1/api/v1/embeddings",
	} {
		if got := embeddingsURL(base); got != want {
			t.Errorf("embeddingsURL(%q) = %q, want %q", base, got, want)
		}
	}
}

func TestCloudflareEmbeddingsThroughGatewayCarryMetadata(t *testing.T) {
	up := newEmbedUpstream(t, embedServer(3, true))
	r := NewRouter(RouterOptions{CloudflareToken: "cf-tok", CloudflareAPIBase: up.URL + "/client/v4",
		CloudflareGatewayBase: up.URL + "/gw", Getenv: env(nil)})
	meta := RequestMeta{TenantID: "t1", AccountID: "acc", GatewayID: "g1", TraceID: "tr", Route: "/ingest"}
	m, err := r.EmbedderFor("@cf/baai/bge-small-en-v1.5", meta)
	if err != nil {
		t.Fatal(err)
	}
	// The router's dimension table says 384; this fake answers 3, which must be refused, not mixed in.
	if _, err := m.Embed(t.Context(), texts(1)); err == nil || !strings.Contains(err.Error(), "want 384") {
		t.Errorf("dimension check against the known table: %v", err)
	}
	got := up.last()
	var md map[string]string
	_ = json.Unmarshal([]byte(got.Header.Get("cf-aig-metadata")), &md)
	if got.Path != "/gw/acc/g1/workers-ai/v1/embeddings" || got.Header.Get("Authorization") != "Bearer cf-tok" ||
		got.Body["model"] != "@cf/baai/bge-small-en-v1.5" {
		t.Errorf("request %s auth %q model %v", got.Path, got.Header.Get("Authorization"), got.Body["model"])
	}
	if d := cmp.Diff(map[string]string{"tenantId": "t1", "traceId": "tr", "route": "/ingest"}, md); d != "" {
		t.Errorf("cf-aig-metadata (-want +got):\n%s", d)
	}
	direct, _ := r.EmbedderFor("@cf/unknown-embedder", RequestMeta{AccountID: "acc"})
	if vecs, err := direct.Embed(t.Context(), texts(2)); err != nil || len(vecs) != 2 || direct.Dimension() != 3 {
		t.Errorf("direct Workers AI call: %d vectors, dim %d, %v", len(vecs), direct.Dimension(), err)
	}
	if p := up.last().Path; p != "/client/v4/accounts/acc/ai/v1/embeddings" {
		t.Errorf("direct path %s", p)
	}
}
