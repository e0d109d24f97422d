package vectorstoretest

import (
	"context"
	"errors"
	"testing"

	"github.com/crispy-enigma/crispy/rag"
)

// IndexesWithReopen is a fresh rag.Indexes, a way to open it again on the same data (the suite
// closes Indexes first), and the two model IDs the suite uses: fresh ones for stores that outlive
// the test (Milvus collections), fixed ones otherwise.
type IndexesWithReopen struct {
	Indexes rag.Indexes
	Reopen  func(t *testing.T) rag.Indexes
	Models  [2]string
}

// RunIndexes runs the per-(model, dimension) conformance tests: two models side by side for one
// tenant never see each other's chunks, through vector search, keyword search (when the store has
// it) and deletes, and each keeps its data across a reopen.
func RunIndexes(t *testing.T, open func(t *testing.T) IndexesWithReopen) {
	tests := []struct {
		name string
		run  func(t *testing.T, h IndexesWithReopen)
	}{
		{"two models for one tenant do not mix", testModelsApart},
		{"one model at two dimensions is two indexes", testDimensionsApart},
		{"the same pair is the same index", testSameIndex},
		{"invalid model or dimension", testInvalidIndex},
		{"each index persists", testIndexesPersist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := open(t)
			t.Cleanup(func() { h.Indexes.Close() })
			tt.run(t, h)
		})
	}
}

func mustIndex(t *testing.T, x rag.Indexes, model string, dim int) rag.VectorStore {
	t.Helper()
	vs, err := x.Index(context.Background(), model, dim)
	if err != nil {
		t.Fatalf("Index(%q, %d): %v", model, dim, err)
	}
	return vs
}

// textChunk is chunk with its own text, so keyword search can tell the indexes apart.
func textChunk(docID string, i int, vec []float32, text string) rag.Chunk {
	c := chunk(docID, i, vec, map[string]any{"text": text})
	c.Text = text
	return c
}

func testModelsApart(t *testing.T, h IndexesWithReopen) {
	ctx := context.Background()
	a := mustIndex(t, h.Indexes, h.Models[0], Dim)
	b := mustIndex(t, h.Indexes, h.Models[1], Dim)
	// The same chunk ID in both, with different vectors and text: each index keeps its own.
	mustUpsert(t, a, "tenant-a", textChunk("doc", 0, axis(0, 0), "alpha aardvark"))
	mustUpsert(t, b, "tenant-a", textChunk("doc", 0, axis(3, 0), "beta badger"), textChunk("other", 0, axis(4, 0), "beta bison"))
	if got := mustSearch(t, a, "tenant-a", axis(3, 0), 5, nil); len(got) != 1 || got[0].Chunk.Text != "alpha aardvark" {
		t.Fatalf("model A search = %v, want only its own chunk", texts(got))
	}
	if got := mustSearch(t, b, "tenant-a", axis(3, 0), 5, nil); len(got) != 2 || got[0].Chunk.Text != "beta badger" {
		t.Fatalf("model B search = %v, want its two chunks, badger first", texts(got))
	}
	if ka, ok := a.(rag.KeywordSearcher); ok {
		hits, err := ka.KeywordSearch(ctx, "tenant-a", "badger", 5, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(hits) != 0 {
			t.Errorf("keyword search of model A found model B's %v", texts(hits))
		}
		kb := b.(rag.KeywordSearcher)
		if hits, err = kb.KeywordSearch(ctx, "tenant-a", "badger", 5, nil); err != nil || len(hits) != 1 {
			t.Errorf("keyword search of model B = %v, %v; want its badger chunk", texts(hits), err)
		}
	}
	if n, err := a.DeleteDoc(ctx, "tenant-a", "doc"); err != nil || n != 1 {
		t.Fatalf("delete in A = %d, %v; want 1", n, err)
	}
	if got := mustSearch(t, b, "tenant-a", axis(3, 0), 5, nil); len(got) != 2 {
		t.Errorf("a delete in A removed chunks of B: %v", texts(got))
	}
}

func testDimensionsApart(t *testing.T, h IndexesWithReopen) {
	small := mustIndex(t, h.Indexes, h.Models[0], Dim)
	big := mustIndex(t, h.Indexes, h.Models[0], 2*Dim)
	mustUpsert(t, small, "tenant-a", chunk("doc", 0, axis(0, 0), nil))
	wide := make([]float32, 2*Dim)
	wide[Dim+1] = 1
	mustUpsert(t, big, "tenant-a", chunk("doc", 0, wide, nil))
	if got := mustSearch(t, big, "tenant-a", wide, 5, nil); len(got) != 1 || got[0].Score < 0.99 {
		t.Errorf("search at dimension %d = %v, want the one wide chunk", 2*Dim, got)
	}
	if err := small.Upsert(context.Background(), "tenant-a", []rag.Chunk{chunk("x", 0, wide, nil)}); !errors.Is(err, rag.ErrDimensionMismatch) {
		t.Errorf("a %d-dimension vector in the %d index: %v, want ErrDimensionMismatch", 2*Dim, Dim, err)
	}
}

func testSameIndex(t *testing.T, h IndexesWithReopen) {
	a := mustIndex(t, h.Indexes, h.Models[0], Dim)
	mustUpsert(t, a, "tenant-a", chunk("doc", 0, axis(0, 0), nil))
	again := mustIndex(t, h.Indexes, h.Models[0], Dim)
	if got := mustSearch(t, again, "tenant-a", axis(0, 0), 5, nil); len(got) != 1 {
		t.Errorf("the same pair opened twice sees %d chunks, want 1", len(got))
	}
}

func testInvalidIndex(t *testing.T, h IndexesWithReopen) {
	for _, tt := range []struct {
		model string
		dim   int
	}{{"", Dim}, {h.Models[0], 0}, {h.Models[0], -1}, {h.Models[0], rag.MaxDimension + 1}, {"a\nb", Dim}} {
		if _, err := h.Indexes.Index(context.Background(), tt.model, tt.dim); !errors.Is(err, rag.ErrInvalidIndex) {
			t.Errorf("Index(%q, %d): %v, want ErrInvalidIndex", tt.model, tt.dim, err)
		}
	}
}

func testIndexesPersist(t *testing.T, h IndexesWithReopen) {
	mustUpsert(t, mustIndex(t, h.Indexes, h.Models[0], Dim), "tenant-a", textChunk("doc", 0, axis(0, 0), "alpha"))
	mustUpsert(t, mustIndex(t, h.Indexes, h.Models[1], Dim), "tenant-a", textChunk("doc", 0, axis(0, 0), "beta"))
	if err := h.Indexes.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Indexes.Index(context.Background(), h.Models[0], Dim); err == nil {
		t.Error("Index after Close succeeded")
	}
	x := h.Reopen(t)
	t.Cleanup(func() { x.Close() })
	for i, want := range []string{"alpha", "beta"} {
		got := mustSearch(t, mustIndex(t, x, h.Models[i], Dim), "tenant-a", axis(0, 0), 5, nil)
		if len(got) != 1 || got[0].Chunk.Text != want {
			t.Errorf("after reopen, model %d holds %v, want [%s]", i, texts(got), want)
		}
	}
}

func texts(hits []rag.Hit) []string {
	out := make([]string, len(hits))
	for i, h := range hits {
		out[i] = h.Chunk.Text
	}
	return out
}
