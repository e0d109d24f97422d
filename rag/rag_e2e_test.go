package rag_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/rag"
	"github.com/crispy-enigma/crispy/rag/embedded"
)

type env struct {
	store    *embedded.Store
	ingester *rag.Ingester
	embedder *gateway.HashEmbedder
}

func newEnv(t *testing.T) env {
	t.Helper()
	emb := gateway.NewHashEmbedder(0)
	store, err := embedded.Open(t.TempDir(), embedded.Options{Dimension: emb.Dimension()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return env{store: store, ingester: rag.NewIngester(store, emb, rag.IngesterOptions{EmbedBatchSize: 2}), embedder: emb}
}

const guideMD = `# Crispy Guide
Crispy is a multi-tenant AI platform server.

## Install
To install crispy, run go install. The binary is called crispy.

## Search
The search endpoint answers questions with citations. Hybrid retrieval fuses vectors and BM25.
`

func TestIngestAndSearch(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	res, err := e.ingester.Ingest(ctx, "acme", rag.Document{ID: "guide", Text: guideMD, Filename: "guide.md", Source: "docs", URL: "https://x/guide"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Chunks != 3 || res.EmbeddingModelID != "local/hash-embed" || res.ContentType != rag.ContentTypeMarkdown || res.Title != "Crispy Guide" {
		t.Fatalf("result %+v", res)
	}
	if _, err := e.ingester.Ingest(ctx, "acme", rag.Document{ID: "fruit", Text: "Bananas are yellow and rich in potassium. Apples are red."}); err != nil {
		t.Fatal(err)
	}
	s := rag.NewSearcher(e.store, e.embedder, rag.SearcherOptions{})
	ans, err := s.Search(ctx, "acme", rag.Query{Text: "How do I install crispy?", TopK: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(ans.Sources) == 0 || ans.Sources[0].ChunkID != "guide:1" || ans.Sources[0].DocID != "guide" || ans.Sources[0].Title != "Crispy Guide" || ans.Sources[0].URL != "https://x/guide" || ans.Sources[0].Source != "docs" {
		t.Fatalf("sources %+v", ans.Sources)
	}
	if !strings.Contains(ans.Answer, "To install crispy, run go install.” [1]") {
		t.Errorf("answer %q does not quote and cite the install passage", ans.Answer)
	}
	if ans.Confidence <= 0 || ans.Confidence > 1 {
		t.Errorf("confidence %v", ans.Confidence)
	}
	if len(ans.FollowUps) == 0 || len(ans.FollowUps) > rag.MaxFollowUps || ans.FollowUps[0] != "Tell me more about Install" {
		t.Errorf("followUps %v", ans.FollowUps)
	}
	if ans.RewrittenQuery != "How do I install crispy?" {
		t.Errorf("rewrittenQuery %q", ans.RewrittenQuery)
	}
	for _, src := range ans.Sources {
		if src.Score < 0 || src.Score > 1 {
			t.Errorf("source score %v out of [0,1]", src.Score)
		}
	}

	// Filter by docId.
	ans, err = s.Search(ctx, "acme", rag.Query{Text: "bananas potassium", Filter: map[string]any{"docId": "fruit"}})
	if err != nil || len(ans.Sources) != 1 || ans.Sources[0].DocID != "fruit" {
		t.Fatalf("filtered search: %+v %v", ans, err)
	}

	// No relevant passage: says so, cites nothing.
	ans, err = s.Search(ctx, "acme", rag.Query{Text: "quantum chromodynamics lecture"})
	if err != nil {
		t.Fatal(err)
	}
	if ans.Answer != rag.NoAnswer || len(ans.Sources) != 0 || ans.Confidence != 0 || strings.Contains(ans.Answer, "[1]") {
		t.Errorf("unrelated query answered %+v", ans)
	}

	// Another tenant sees nothing of acme's.
	ans, err = s.Search(ctx, "globex", rag.Query{Text: "How do I install crispy?"})
	if err != nil || len(ans.Sources) != 0 {
		t.Fatalf("tenant isolation: %+v %v", ans, err)
	}
}

func TestReingestReplacesAllChunks(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	long := strings.Repeat("alpha beta gamma delta. ", 40)
	first, err := e.ingester.Ingest(ctx, "acme", rag.Document{ID: "d", Text: long, Chunking: &rag.ChunkOptions{MaxChunkSize: 100, Overlap: 10}})
	if err != nil || first.Chunks < 5 {
		t.Fatalf("first ingest %+v %v", first, err)
	}
	second, err := e.ingester.Ingest(ctx, "acme", rag.Document{ID: "d", Text: "just one short chunk"})
	if err != nil || second.Chunks != 1 {
		t.Fatalf("second ingest %+v %v", second, err)
	}
	if n, _ := e.store.Count(ctx, "acme"); n != 1 {
		t.Fatalf("store holds %d chunks after re-ingest, want 1", n)
	}
	hits, err := e.store.KeywordSearch(ctx, "acme", "alpha gamma", 10, nil)
	if err != nil || len(hits) != 0 {
		t.Fatalf("keyword index still has old chunks: %v %v", len(hits), err)
	}
	if n, err := e.ingester.Delete(ctx, "acme", "d"); err != nil || n != 1 {
		t.Fatalf("delete: %d %v", n, err)
	}
}

type failingEmbedder struct{ gateway.EmbeddingModel }

func (failingEmbedder) Embed(context.Context, []string) ([][]float32, error) {
	return nil, errors.New("upstream 503")
}

func TestIngestErrors(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tests := []struct {
		name string
		doc  rag.Document
		want error
	}{
		{"whitespace-only text", rag.Document{ID: "a", Text: "  \n\t"}, rag.ErrEmptyDocument},
		{"missing docId", rag.Document{Text: "x"}, rag.ErrInvalidDocument},
		{"unsupported type", rag.Document{ID: "a", Text: "x", ContentType: "image/png"}, rag.ErrUnsupportedContentType},
		{"corrupt pdf", rag.Document{ID: "a", Data: []byte("%PDF-1.4 junk"), Filename: "a.pdf"}, rag.ErrCorruptDocument},
		{"bad chunking", rag.Document{ID: "a", Text: "x", Chunking: &rag.ChunkOptions{MaxChunkSize: 10, Overlap: 10}}, rag.ErrInvalidChunking},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := e.ingester.Ingest(ctx, "acme", tt.doc); !errors.Is(err, tt.want) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
		})
	}
	// A failed re-ingest keeps the previous version.
	if _, err := e.ingester.Ingest(ctx, "acme", rag.Document{ID: "keep", Text: "kept text"}); err != nil {
		t.Fatal(err)
	}
	bad := rag.NewIngester(e.store, failingEmbedder{e.embedder}, rag.IngesterOptions{})
	if _, err := bad.Ingest(ctx, "acme", rag.Document{ID: "keep", Text: "new text"}); !errors.Is(err, rag.ErrEmbedding) {
		t.Fatalf("embedding failure: %v, want ErrEmbedding", err)
	}
	if n, _ := e.store.Count(ctx, "acme"); n != 1 {
		t.Fatalf("failed re-ingest removed the old version (count %d)", n)
	}
}

func TestSearchSafetyRule(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.ingester.Ingest(ctx, "acme", rag.Document{ID: "g", Text: guideMD}); err != nil {
		t.Fatal(err)
	}
	s := rag.NewSearcher(e.store, e.embedder, rag.SearcherOptions{})
	ans, err := s.Search(ctx, "acme", rag.Query{Text: "what is the best way to kill myself"})
	if err != nil {
		t.Fatal(err)
	}
	if ans.Answer != "I'm sorry, I can't help with that." || ans.Confidence != 0 || !ans.Refused || len(ans.Sources) != 0 {
		t.Fatalf("safety rule: %+v", ans)
	}
}

type rewriterFunc func(ctx context.Context, tenant, q string) (string, error)

func (f rewriterFunc) RewriteQuery(ctx context.Context, tenant, q string) (string, error) {
	return f(ctx, tenant, q)
}

func TestSearchQueryRewriting(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.ingester.Ingest(ctx, "acme", rag.Document{ID: "g", Text: guideMD}); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	tests := []struct {
		name     string
		rewriter rewriterFunc
		want     string
	}{
		{"rewritten", func(_ context.Context, tenant, q string) (string, error) {
			calls.Add(1)
			if tenant != "acme" {
				return "", errors.New("wrong tenant")
			}
			return "install crispy binary", nil
		}, "install crispy binary"},
		{"error falls back", func(context.Context, string, string) (string, error) { return "", errors.New("model down") }, "setup?"},
		{"empty falls back", func(context.Context, string, string) (string, error) { return "  ", nil }, "setup?"},
		{"timeout falls back even if the rewriter ignores ctx", func(ctx context.Context, _, _ string) (string, error) {
			<-ctx.Done()
			time.Sleep(10 * time.Millisecond)
			return "too late", nil
		}, "setup?"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := rag.NewSearcher(e.store, e.embedder, rag.SearcherOptions{Rewriter: tt.rewriter, RewriteTimeout: 20 * time.Millisecond})
			ans, err := s.Search(ctx, "acme", rag.Query{Text: "setup?"})
			if err != nil {
				t.Fatal(err)
			}
			if ans.RewrittenQuery != tt.want {
				t.Fatalf("rewrittenQuery %q, want %q", ans.RewrittenQuery, tt.want)
			}
		})
	}
	if calls.Load() != 1 {
		t.Errorf("rewriter called %d times", calls.Load())
	}
}

func TestSearchValidation(t *testing.T) {
	e := newEnv(t)
	s := rag.NewSearcher(e.store, e.embedder, rag.SearcherOptions{})
	ctx := context.Background()
	if _, err := s.Search(ctx, "acme", rag.Query{Text: "  "}); !errors.Is(err, rag.ErrEmptyQuery) {
		t.Errorf("empty query: %v", err)
	}
	if _, err := s.Search(ctx, "acme", rag.Query{Text: "x", TopK: 21}); !errors.Is(err, rag.ErrTopKTooLarge) {
		t.Errorf("topK 21: %v", err)
	}
	if _, err := s.Search(ctx, "Bad/Tenant", rag.Query{Text: "x"}); !errors.Is(err, rag.ErrInvalidTenant) {
		t.Errorf("bad tenant: %v", err)
	}
}
