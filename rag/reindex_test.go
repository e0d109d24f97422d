package rag_test

import (
	"context"
	"errors"
	"math"
	"testing"

	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/gateway/minilm"
	"github.com/crispy-enigma/crispy/rag"
	"github.com/crispy-enigma/crispy/rag/embedded"
	"github.com/crispy-enigma/crispy/store"
	"github.com/crispy-enigma/crispy/test/fixture"
)

// reindexEnv is a tenant with the paraphrase corpus ingested with local/hash-embed (model A) in
// the embedded indexes, local/minilm as model B, and the active-index record in JetStream KV.
type reindexEnv struct {
	indexes  *rag.LazyIndexes
	a, b     gateway.EmbeddingModel
	storeA   rag.VectorStore
	storeB   rag.VectorStore
	actives  *rag.ActiveIndexes
	ingestA  *rag.Ingester
	docCount int
}

func newReindexEnv(t *testing.T) reindexEnv {
	t.Helper()
	ctx := context.Background()
	a := gateway.NewHashEmbedder(0)
	// Model B is local/minilm; under the race detector, which slows it twentyfold, hash-embed at
	// another dimension (another index all the same).
	var b gateway.EmbeddingModel = gateway.NewHashEmbedder(256)
	if !raceEnabled {
		ml, err := minilm.New()
		if err != nil {
			t.Fatal(err)
		}
		b = ml
	}
	x := embedded.NewIndexes(t.TempDir(), embedded.IndexesOptions{LegacyModel: a.ID(), LegacyDimension: a.Dimension()})
	t.Cleanup(func() { x.Close() })
	sa, err := rag.IndexFor(ctx, x, a)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := rag.IndexFor(ctx, x, b)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := store.OpenTenantKV(ctx, fixture.JetStream(t), "ragindex", store.KVOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e := reindexEnv{indexes: x, a: a, b: b, storeA: sa, storeB: sb, actives: rag.NewActiveIndexes(kv, store.ErrNotFound),
		ingestA: rag.NewIngester(sa, a, rag.IngesterOptions{})}
	for _, d := range paraphraseDocs {
		if _, err := e.ingestA.Ingest(ctx, "acme", rag.Document{ID: d.id, Text: d.text}); err != nil {
			t.Fatal(err)
		}
	}
	e.docCount = len(paraphraseDocs)
	if err := e.actives.Switch(ctx, "acme", rag.ActiveIndex{Model: a.ID(), Dimension: a.Dimension()}); err != nil {
		t.Fatal(err)
	}
	return e
}

// searchActive searches the tenant's active index with the active model, as the service does.
func (e reindexEnv) searchActive(t *testing.T, q string) (model string, top string) {
	t.Helper()
	ctx := context.Background()
	ai, ok, err := e.actives.Get(ctx, "acme")
	if err != nil || !ok {
		t.Fatalf("active index: %v, %v", ok, err)
	}
	m := e.a
	if ai.Model == e.b.ID() && ai.Dimension == e.b.Dimension() {
		m = e.b
	}
	vs, err := e.indexes.Index(ctx, ai.Model, ai.Dimension)
	if err != nil {
		t.Fatal(err)
	}
	ans, err := rag.NewSearcher(vs, m, rag.SearcherOptions{}).Retrieve(ctx, "acme", rag.Query{Text: q, TopK: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(ans) == 0 {
		return ai.Model, ""
	}
	return ai.Model, ans[0].Chunk.DocID
}

func (e reindexEnv) activeIndex(t *testing.T) (string, int) {
	t.Helper()
	ai, ok, err := e.actives.Get(context.Background(), "acme")
	if err != nil || !ok {
		t.Fatalf("active index: %v, %v", ok, err)
	}
	return ai.Model, ai.Dimension
}

func TestReindexCancelledKeepsOldIndex(t *testing.T) {
	e := newReindexEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	batches := 0
	_, err := rag.Reindex(ctx, "acme", e.storeA, e.storeB, e.b, rag.ReindexOptions{BatchSize: 4, Progress: func(p rag.ReindexProgress) {
		batches++
		if batches == 2 {
			cancel() // the job is killed mid-copy
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Reindex after cancel: %v, want context.Canceled", err)
	}
	if model, dim := e.activeIndex(t); model != e.a.ID() || dim != e.a.Dimension() {
		t.Fatalf("after a cancelled job the active model is %s, want %s", model, e.a.ID())
	}
	if _, doc := e.searchActive(t, "caffeine adenosine"); doc != "caffeine" {
		t.Errorf("the old index no longer serves: top hit %q", doc)
	}
	n, err := e.storeA.(rag.ChunkCounter).Count(context.Background(), "acme")
	if err != nil || n != e.docCount {
		t.Errorf("old index holds %d chunks (%v), want %d untouched", n, err, e.docCount)
	}
}

func TestReindexThenSwitch(t *testing.T) {
	e := newReindexEnv(t)
	ctx := context.Background()
	var last rag.ReindexProgress
	changed := false
	res, err := rag.Reindex(ctx, "acme", e.storeA, e.storeB, e.b, rag.ReindexOptions{BatchSize: 8, Progress: func(p rag.ReindexProgress) {
		last = p
		if !changed {
			// Writes to the old index during the copy: the reconcile pass must carry them over.
			changed = true
			if _, err := e.ingestA.Ingest(ctx, "acme", rag.Document{ID: "zz-new", Text: "Otters hold hands while sleeping so they do not drift apart."}); err != nil {
				t.Error(err)
			}
			if _, err := e.ingestA.Delete(ctx, "acme", "caffeine"); err != nil {
				t.Error(err)
			}
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	// "caffeine" was copied in the first batch, then deleted: only the reconcile pass removes it.
	if res.Chunks < e.docCount || res.Reconciled < 1 || last.Total != e.docCount {
		t.Errorf("result %+v, last progress %+v; want ≥ %d chunks, ≥ 1 reconciled, total %d", res, last, e.docCount, e.docCount)
	}
	// A write after Reindex returned: the final Reconcile (under the tenant's write lock in the
	// service) carries it over before the switch.
	if _, err := e.ingestA.Ingest(ctx, "acme", rag.Document{ID: "zz-late", Text: "Penguins propose with pebbles."}); err != nil {
		t.Fatal(err)
	}
	if n, err := rag.Reconcile(ctx, "acme", e.storeA, e.storeB, e.b, rag.ReindexOptions{}); err != nil || n != 1 {
		t.Fatalf("final reconcile changed %d documents (%v), want 1", n, err)
	}
	if n, err := rag.Reconcile(ctx, "acme", e.storeA, e.storeB, e.b, rag.ReindexOptions{}); err != nil || n != 0 {
		t.Errorf("a second reconcile changed %d documents (%v), want 0", n, err)
	}
	// Before the switch, searches still use A.
	if model, dim := e.activeIndex(t); model != e.a.ID() || dim != e.a.Dimension() {
		t.Fatalf("active before switch %s/%d", model, dim)
	}
	if err := e.actives.Switch(ctx, "acme", rag.ActiveIndex{Model: e.b.ID(), Dimension: e.b.Dimension()}); err != nil {
		t.Fatal(err)
	}
	if model, dim := e.activeIndex(t); model != e.b.ID() || dim != e.b.Dimension() {
		t.Fatalf("active after switch %s/%d, want %s/%d", model, dim, e.b.ID(), e.b.Dimension())
	}
	if _, doc := e.searchActive(t, "caffeine adenosine receptors"); doc == "caffeine" {
		t.Errorf("a document deleted during the copy is still in the new index")
	}
	if _, doc := e.searchActive(t, "otters sleeping holding hands"); doc != "zz-new" {
		t.Errorf("a document ingested during the copy is missing from the new index (top %q)", doc)
	}
	if _, doc := e.searchActive(t, "penguins pebbles"); doc != "zz-late" {
		t.Errorf("a document ingested after the copy is missing from the new index (top %q)", doc)
	}
	if !raceEnabled {
		if _, doc := e.searchActive(t, "Why is it tough to get enough air on tall peaks?"); doc != "altitude" {
			t.Errorf("after the switch to %s, a paraphrase finds %q, want altitude", e.b.ID(), doc)
		}
	}
	hits, err := e.storeB.(rag.ChunkLister).ListChunks(ctx, "acme", "", 1)
	if err != nil || len(hits) != 1 || hits[0].Meta[rag.MetaEmbeddingModel] != e.b.ID() {
		t.Errorf("new index chunk metadata %v (%v), want embeddingModel %s", hits, err, e.b.ID())
	}
}

// nanEmbedder returns a NaN in the vector of the third text it ever sees.
type nanEmbedder struct {
	gateway.EmbeddingModel
	seen int
}

func (n *nanEmbedder) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	vecs, err := n.EmbeddingModel.Embed(ctx, texts)
	for i := range vecs {
		if n.seen++; n.seen == 3 {
			vecs[i][0] = float32(math.NaN())
		}
	}
	return vecs, err
}

func TestReindexRefusesBadVectors(t *testing.T) {
	e := newReindexEnv(t)
	_, err := rag.Reindex(context.Background(), "acme", e.storeA, e.storeB, &nanEmbedder{EmbeddingModel: e.b}, rag.ReindexOptions{BatchSize: 2})
	if !errors.Is(err, rag.ErrEmbedding) {
		t.Fatalf("Reindex with a NaN vector: %v, want ErrEmbedding", err)
	}
	n, _ := e.storeB.(rag.ChunkCounter).Count(context.Background(), "acme")
	if n != 2 {
		t.Errorf("new index holds %d chunks, want only the 2 of the batch before the bad one", n)
	}
	if model, _ := e.searchActive(t, "x"); model != e.a.ID() {
		t.Errorf("a failed job switched the tenant to %s", model)
	}
}
