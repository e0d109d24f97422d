// Package vectorstoretest is the conformance suite every rag.VectorStore
// implementation runs (the embedded store here, Milvus under test/): the
// behaviour issue 5 requires — upsert, replace, delete, filtered search,
// tenant isolation, restart persistence, top-K and metadata limits, unicode.
package vectorstoretest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/rag"
)

// Dim is the vector dimension the suite uses; open must return stores of it.
const Dim = 8

// VectorStoreWithReopen is a fresh, empty store plus a way to open it again
// on the same data (the suite closes Store before calling Reopen).
type VectorStoreWithReopen struct {
	Store  rag.VectorStore
	Reopen func(t *testing.T) rag.VectorStore
}

// Run runs every conformance test; open is called once per subtest and must
// return an empty store (tenant names used: "tenant-a", "tenant-b").
func Run(t *testing.T, open func(t *testing.T) VectorStoreWithReopen) {
	tests := []struct {
		name string
		run  func(t *testing.T, h VectorStoreWithReopen)
	}{
		{"upsert then search finds nearest first", testUpsertSearch},
		{"upsert by ID replaces the chunk", testUpsertReplaces},
		{"re-ingest with fewer chunks leaves none of the old ones", testReplaceDoc},
		{"ReplaceDoc swaps a document's chunks (when implemented)", testReplaceDocAtomic},
		{"delete removes every chunk of the doc only", testDelete},
		{"filtered search", testFilter},
		{"tenant isolation", testTenantIsolation},
		{"restart persistence", testPersistence},
		{"topK limit", testTopK},
		{"metadata limit names the chunk", testMetadataLimit},
		{"unicode text and metadata round-trip", testUnicode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := open(t)
			t.Cleanup(func() { h.Store.Close() })
			tt.run(t, h)
		})
	}
}

// axis returns a unit vector along dimension i, slightly tilted toward
// dimension (i+1) by tilt, so similarities are distinct and predictable.
func axis(i int, tilt float32) []float32 {
	v := make([]float32, Dim)
	v[i%Dim] = 1
	v[(i+1)%Dim] = tilt
	return v
}

func chunk(docID string, i int, vec []float32, meta map[string]any) rag.Chunk {
	id := rag.ChunkID(docID, i)
	m := map[string]any{"docId": docID, "chunkId": id, "text": fmt.Sprintf("text of %s", id)}
	for k, v := range meta {
		m[k] = v
	}
	return rag.Chunk{ID: id, DocID: docID, Index: i, Text: fmt.Sprintf("text of %s", id), Vector: vec, Meta: m}
}

func ids(hits []rag.Hit) []string {
	out := make([]string, len(hits))
	for i, h := range hits {
		out[i] = h.Chunk.ID
	}
	return out
}

func mustUpsert(t *testing.T, s rag.VectorStore, tenant string, chunks ...rag.Chunk) {
	t.Helper()
	if err := s.Upsert(context.Background(), tenant, chunks); err != nil {
		t.Fatalf("upsert: %v", err)
	}
}

func mustSearch(t *testing.T, s rag.VectorStore, tenant string, vec []float32, k int, filter map[string]any) []rag.Hit {
	t.Helper()
	hits, err := s.Search(context.Background(), tenant, vec, k, filter)
	if err != nil {
		t.Fatalf("search: %v", err)
	}
	return hits
}

func equal(a, b []string) bool { return strings.Join(a, "|") == strings.Join(b, "|") }

func testUpsertSearch(t *testing.T, h VectorStoreWithReopen) {
	s := h.Store
	mustUpsert(t, s, "tenant-a",
		chunk("d1", 0, axis(0, 0), nil), chunk("d1", 1, axis(1, 0), nil), chunk("d2", 0, axis(0, 0.5), nil))
	hits := mustSearch(t, s, "tenant-a", axis(0, 0), 3, nil)
	if got := ids(hits); !equal(got, []string{"d1:0", "d2:0", "d1:1"}) {
		t.Fatalf("order %v, want [d1:0 d2:0 d1:1]", got)
	}
	if hits[0].Score < 0.999 || hits[0].Score > 1.001 {
		t.Errorf("identical vector scored %v, want cosine 1", hits[0].Score)
	}
	if hits[0].Chunk.Text != "text of d1:0" || hits[0].Chunk.DocID != "d1" || hits[0].Chunk.Meta["chunkId"] != "d1:0" {
		t.Errorf("hit chunk not returned whole: %+v", hits[0].Chunk)
	}
	if got := mustSearch(t, s, "tenant-a", axis(0, 0), 1, nil); len(got) != 1 {
		t.Errorf("topK 1 returned %d hits", len(got))
	}
}

func testUpsertReplaces(t *testing.T, h VectorStoreWithReopen) {
	s := h.Store
	mustUpsert(t, s, "tenant-a", chunk("d1", 0, axis(0, 0), nil))
	c := chunk("d1", 0, axis(3, 0), map[string]any{"title": "new"})
	c.Text = "replaced"
	mustUpsert(t, s, "tenant-a", c)
	hits := mustSearch(t, s, "tenant-a", axis(3, 0), 5, nil)
	if len(hits) != 1 || hits[0].Chunk.Text != "replaced" || hits[0].Chunk.Meta["title"] != "new" || hits[0].Score < 0.999 {
		t.Fatalf("after replace: %+v", hits)
	}
}

// The ingest path: DeleteDoc then Upsert the new chunks.
func testReplaceDoc(t *testing.T, h VectorStoreWithReopen) {
	s := h.Store
	ctx := context.Background()
	mustUpsert(t, s, "tenant-a", chunk("d1", 0, axis(0, 0), nil), chunk("d1", 1, axis(1, 0), nil), chunk("d1", 2, axis(2, 0), nil))
	n, err := s.DeleteDoc(ctx, "tenant-a", "d1")
	if err != nil || n != 3 {
		t.Fatalf("DeleteDoc = %d, %v; want 3", n, err)
	}
	mustUpsert(t, s, "tenant-a", chunk("d1", 0, axis(5, 0), nil))
	hits := mustSearch(t, s, "tenant-a", axis(2, 0), 10, nil)
	if got := ids(hits); !equal(got, []string{"d1:0"}) {
		t.Fatalf("after re-ingest: %v, want only d1:0", got)
	}
}

func testReplaceDocAtomic(t *testing.T, h VectorStoreWithReopen) {
	r, ok := h.Store.(rag.DocReplacer)
	if !ok {
		t.Skip("store does not implement rag.DocReplacer")
	}
	s := h.Store
	mustUpsert(t, s, "tenant-a", chunk("d1", 0, axis(0, 0), nil), chunk("d1", 1, axis(1, 0), nil), chunk("d2", 0, axis(2, 0), nil))
	n, err := r.ReplaceDoc(context.Background(), "tenant-a", "d1", []rag.Chunk{chunk("d1", 0, axis(3, 0), map[string]any{"v": 2})})
	if err != nil || n != 2 {
		t.Fatalf("ReplaceDoc = %d, %v; want 2 deleted", n, err)
	}
	hits := mustSearch(t, s, "tenant-a", axis(3, 0), 10, nil)
	if got := ids(hits); !equal(got, []string{"d1:0", "d2:0"}) || hits[0].Chunk.Meta["v"] != float64(2) {
		t.Fatalf("after ReplaceDoc: %v (meta %v)", got, hits[0].Chunk.Meta)
	}
	if _, err := r.ReplaceDoc(context.Background(), "tenant-a", "d1", []rag.Chunk{chunk("other", 0, axis(0, 0), nil)}); err == nil {
		t.Fatal("ReplaceDoc accepted a chunk of another document")
	}
}

func testDelete(t *testing.T, h VectorStoreWithReopen) {
	s := h.Store
	ctx := context.Background()
	mustUpsert(t, s, "tenant-a", chunk("d1", 0, axis(0, 0), nil), chunk("d1", 1, axis(1, 0), nil), chunk("d2", 0, axis(2, 0), nil))
	n, err := s.DeleteDoc(ctx, "tenant-a", "d1")
	if err != nil || n != 2 {
		t.Fatalf("DeleteDoc = %d, %v; want 2", n, err)
	}
	if got := ids(mustSearch(t, s, "tenant-a", axis(0, 0), 10, nil)); !equal(got, []string{"d2:0"}) {
		t.Fatalf("after delete: %v, want [d2:0]", got)
	}
	if n, err := s.DeleteDoc(ctx, "tenant-a", "missing"); err != nil || n != 0 {
		t.Fatalf("deleting a missing doc = %d, %v; want 0, nil", n, err)
	}
	if ks, ok := s.(rag.KeywordSearcher); ok {
		hits, err := ks.KeywordSearch(ctx, "tenant-a", "text d1", 10, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range hits {
			if h.Chunk.DocID == "d1" {
				t.Fatalf("keyword index still returns deleted chunk %s", h.Chunk.ID)
			}
		}
	}
}

func testFilter(t *testing.T, h VectorStoreWithReopen) {
	s := h.Store
	mustUpsert(t, s, "tenant-a",
		chunk("d1", 0, axis(0, 0), map[string]any{"source": "wiki", "year": 2024, "public": true}),
		chunk("d2", 0, axis(0, 0.1), map[string]any{"source": "blog", "year": 2023, "public": true}),
		chunk("d3", 0, axis(0, 0.2), map[string]any{"source": "wiki", "year": 2023, "public": false}))
	tests := []struct {
		filter map[string]any
		want   []string
	}{
		{map[string]any{"source": "wiki"}, []string{"d1:0", "d3:0"}},
		{map[string]any{"year": 2023}, []string{"d2:0", "d3:0"}},
		{map[string]any{"year": 2023.0, "public": false}, []string{"d3:0"}},
		{map[string]any{"docId": "d2"}, []string{"d2:0"}},
		{map[string]any{"source": "nowhere"}, nil},
		{map[string]any{"missingKey": "x"}, nil},
	}
	for _, tt := range tests {
		if got := ids(mustSearch(t, s, "tenant-a", axis(0, 0), 10, tt.filter)); !equal(got, tt.want) {
			t.Errorf("filter %v: %v, want %v", tt.filter, got, tt.want)
		}
	}
}

func testTenantIsolation(t *testing.T, h VectorStoreWithReopen) {
	s := h.Store
	ctx := context.Background()
	mustUpsert(t, s, "tenant-a", chunk("secret", 0, axis(0, 0), nil))
	mustUpsert(t, s, "tenant-b", chunk("other", 0, axis(4, 0), nil))
	if got := ids(mustSearch(t, s, "tenant-b", axis(0, 0), 20, nil)); !equal(got, []string{"other:0"}) {
		t.Fatalf("tenant-b sees %v", got)
	}
	if got := ids(mustSearch(t, s, "tenant-b", axis(0, 0), 5, map[string]any{"docId": "secret"})); len(got) != 0 {
		t.Fatalf("tenant-b filter by docId sees %v", got)
	}
	if n, err := s.DeleteDoc(ctx, "tenant-b", "secret"); err != nil || n != 0 {
		t.Fatalf("tenant-b deleted %d chunks of tenant-a (%v)", n, err)
	}
	if got := ids(mustSearch(t, s, "tenant-a", axis(0, 0), 5, nil)); !equal(got, []string{"secret:0"}) {
		t.Fatalf("tenant-a lost its chunk: %v", got)
	}
	if ks, ok := s.(rag.KeywordSearcher); ok {
		hits, err := ks.KeywordSearch(ctx, "tenant-b", "text secret", 10, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range hits {
			if h.Chunk.DocID == "secret" {
				t.Fatal("tenant-b keyword search returned tenant-a's chunk")
			}
		}
	}
}

func testPersistence(t *testing.T, h VectorStoreWithReopen) {
	mustUpsert(t, h.Store, "tenant-a", chunk("d1", 0, axis(0, 0), map[string]any{"title": "T"}), chunk("d2", 0, axis(1, 0), nil))
	if _, err := h.Store.DeleteDoc(context.Background(), "tenant-a", "d2"); err != nil {
		t.Fatal(err)
	}
	if err := h.Store.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	s := h.Reopen(t)
	t.Cleanup(func() { s.Close() })
	hits := mustSearch(t, s, "tenant-a", axis(0, 0), 10, nil)
	if got := ids(hits); !equal(got, []string{"d1:0"}) {
		t.Fatalf("after reopen: %v, want [d1:0]", got)
	}
	if hits[0].Chunk.Meta["title"] != "T" || hits[0].Score < 0.999 {
		t.Fatalf("after reopen: chunk %+v score %v", hits[0].Chunk, hits[0].Score)
	}
}

func testTopK(t *testing.T, h VectorStoreWithReopen) {
	s := h.Store
	var chunks []rag.Chunk
	for i := range 30 {
		chunks = append(chunks, chunk("d", i, axis(i, float32(i)/30), nil))
	}
	mustUpsert(t, s, "tenant-a", chunks...)
	if got := mustSearch(t, s, "tenant-a", axis(0, 0), rag.MaxTopK, nil); len(got) != rag.MaxTopK {
		t.Fatalf("topK %d returned %d hits", rag.MaxTopK, len(got))
	}
	if _, err := s.Search(context.Background(), "tenant-a", axis(0, 0), rag.MaxTopK+1, nil); !errors.Is(err, rag.ErrTopKTooLarge) {
		t.Fatalf("topK %d: err %v, want ErrTopKTooLarge", rag.MaxTopK+1, err)
	}
}

func testMetadataLimit(t *testing.T, h VectorStoreWithReopen) {
	s := h.Store
	ok := chunk("d", 0, axis(0, 0), map[string]any{"blob": strings.Repeat("x", rag.MaxMetadataBytes-200)})
	mustUpsert(t, s, "tenant-a", ok)
	big := chunk("d", 1, axis(1, 0), map[string]any{"blob": strings.Repeat("x", rag.MaxMetadataBytes)})
	err := s.Upsert(context.Background(), "tenant-a", []rag.Chunk{chunk("d", 2, axis(2, 0), nil), big})
	if !errors.Is(err, rag.ErrMetadataTooLarge) || !strings.Contains(err.Error(), "d:1") {
		t.Fatalf("err %v, want ErrMetadataTooLarge naming d:1", err)
	}
	if got := ids(mustSearch(t, s, "tenant-a", axis(2, 0), 10, nil)); !equal(got, []string{"d:0"}) {
		t.Fatalf("a rejected batch stored chunks: %v", got)
	}
}

func testUnicode(t *testing.T, h VectorStoreWithReopen) {
	s := h.Store
	c := chunk("документ-ü", 0, axis(0, 0), map[string]any{"title": "日本語のタイトル 🚀", "source": "Ünïcødé"})
	c.Text = "Grüße aus München — 東京 🚀"
	mustUpsert(t, s, "tenant-a", c)
	hits := mustSearch(t, s, "tenant-a", axis(0, 0), 1, map[string]any{"source": "Ünïcødé"})
	if len(hits) != 1 || hits[0].Chunk.Text != c.Text || hits[0].Chunk.ID != "документ-ü:0" || hits[0].Chunk.Meta["title"] != "日本語のタイトル 🚀" {
		t.Fatalf("unicode round-trip: %+v", hits)
	}
	if ks, ok := s.(rag.KeywordSearcher); ok {
		hits, err := ks.KeywordSearch(context.Background(), "tenant-a", "grusse MÜNCHEN", 5, nil)
		if err != nil || len(hits) != 1 {
			t.Fatalf("keyword search with diacritics: %v, %v", ids(hits), err)
		}
	}
}
