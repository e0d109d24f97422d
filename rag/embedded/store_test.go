package embedded

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/crispy-enigma/crispy/rag"
	"github.com/crispy-enigma/crispy/rag/vectorstoretest"
)

func TestConformance(t *testing.T) {
	vectorstoretest.Run(t, func(t *testing.T) vectorstoretest.VectorStoreWithReopen {
		dir := t.TempDir()
		open := func(t *testing.T) rag.VectorStore {
			s, err := Open(dir, Options{Dimension: vectorstoretest.Dim})
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		return vectorstoretest.VectorStoreWithReopen{Store: open(t), Reopen: open}
	})
}

func TestFTSQueryIsSanitised(t *testing.T) {
	tests := []struct{ in, want string }{
		{"hello world", `"hello" OR "world"`},
		{`"unbalanced AND (NEAR text:`, `"unbalanced" OR "and" OR "near" OR "text"`},
		{"*** ---", ""},
		{"Hello hello", `"hello"`},
	}
	for _, tt := range tests {
		if got := FTSQuery(tt.in); got != tt.want {
			t.Errorf("FTSQuery(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func newStore(t *testing.T, dim int) *Store {
	t.Helper()
	s, err := Open(t.TempDir(), Options{Dimension: dim})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestKeywordSearchBM25(t *testing.T) {
	s := newStore(t, 4)
	ctx := context.Background()
	texts := map[string]string{
		"a": "The installer copies the binary into your path.",
		"b": "Bananas and apples are fruit.",
		"c": "Run the installer, then run the installer again to upgrade the installer.",
	}
	for id, text := range texts {
		if err := s.Upsert(ctx, "t1", []rag.Chunk{{ID: id + ":0", DocID: id, Text: text, Vector: []float32{1, 0, 0, 0}, Meta: map[string]any{"kind": id}}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range []string{`installer"`, `installer NEAR(`, `text:installer`, `installer*`} {
		hits, err := s.KeywordSearch(ctx, "t1", q, 5, nil)
		if err != nil {
			t.Fatalf("query %q broke MATCH: %v", q, err)
		}
		if len(hits) != 2 || hits[0].Chunk.ID != "c:0" || hits[1].Chunk.ID != "a:0" || hits[0].Score <= hits[1].Score {
			t.Fatalf("query %q: %v", q, hits)
		}
	}
	hits, err := s.KeywordSearch(ctx, "t1", "installer", 5, map[string]any{"kind": "a"})
	if err != nil || len(hits) != 1 || hits[0].Chunk.ID != "a:0" {
		t.Fatalf("filtered keyword search: %v %v", hits, err)
	}
	if hits, err := s.KeywordSearch(ctx, "t1", "!!!", 5, nil); err != nil || len(hits) != 0 {
		t.Fatalf("wordless query: %v %v", hits, err)
	}
}

// In a corpus large enough to prune, words in at least half of the chunks do not take part in the
// match (their BM25 weight is ~0, yet each match costs a score): the ranking of the chunks with the
// rare words is unchanged, the chunks matching only the common words are not returned, and a query
// of common words alone still answers with its rarest word.
func TestKeywordSearchIgnoresWordsInMostChunks(t *testing.T) {
	s := newStore(t, 4)
	ctx := context.Background()
	var chunks []rag.Chunk
	for i := range minCorpusForPruning {
		text := fmt.Sprintf("the keeper climbs the stairs number %d", i)
		switch i {
		case 7:
			text = "the lighthouse keeper climbs the lighthouse stairs"
		case 8:
			text = "the lighthouse at dusk"
		}
		if i%3 == 0 {
			text += " every evening"
		}
		chunks = append(chunks, rag.Chunk{ID: fmt.Sprintf("d%d:0", i), DocID: fmt.Sprintf("d%d", i), Text: text, Vector: []float32{1, 0, 0, 0}})
	}
	if err := s.Upsert(ctx, "t1", chunks); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		query string
		first []string // the top hits, in any order
		n     int      // hits in all
	}{
		{"Where is the lighthouse keeper?", []string{"d7:0", "d8:0"}, 2}, // "the", "keeper" are in most chunks
		{"evening lighthouse", []string{"d7:0", "d8:0"}, 3},              // "evening" is in a third: kept, ranks below
		{"the keeper climbs", nil, 3},                                    // all common: the rarest, "climbs", is kept
		{"submarine", nil, 0},                                            // in no chunk
	}
	for _, tt := range tests {
		hits, err := s.KeywordSearch(ctx, "t1", tt.query, 3, nil)
		if err != nil {
			t.Fatalf("%q: %v", tt.query, err)
		}
		var got []string
		for _, h := range hits {
			got = append(got, h.Chunk.ID)
		}
		if len(got) != tt.n {
			t.Errorf("%q: %v, want %d hits", tt.query, got, tt.n)
			continue
		}
		top := slices.Sorted(slices.Values(got[:len(tt.first)]))
		if !slices.Equal(top, tt.first) {
			t.Errorf("%q: %v, want %v first", tt.query, got, tt.first)
		}
	}
}

func TestInvalidInput(t *testing.T) {
	s := newStore(t, 4)
	ctx := context.Background()
	if err := s.Upsert(ctx, "../etc", []rag.Chunk{{ID: "a:0", DocID: "a", Vector: make([]float32, 4)}}); !errors.Is(err, rag.ErrInvalidTenant) {
		t.Errorf("path-like tenant: %v", err)
	}
	if err := s.Upsert(ctx, "t1", []rag.Chunk{{ID: "a:0", DocID: "a", Vector: make([]float32, 3)}}); !errors.Is(err, rag.ErrDimensionMismatch) {
		t.Errorf("wrong dimension: %v", err)
	}
	if _, err := s.Search(ctx, "t1", make([]float32, 4), 0, nil); err == nil {
		t.Error("topK 0 accepted")
	}
	dir := t.TempDir()
	s1, _ := Open(dir, Options{Dimension: 4})
	if err := s1.Upsert(ctx, "t1", []rag.Chunk{{ID: "a:0", DocID: "a", Vector: []float32{1, 0, 0, 0}}}); err != nil {
		t.Fatal(err)
	}
	s1.Close()
	s2, _ := Open(dir, Options{Dimension: 8})
	defer s2.Close()
	if _, err := s2.Search(ctx, "t1", make([]float32, 8), 1, nil); !errors.Is(err, rag.ErrDimensionMismatch) {
		t.Errorf("reopen with another dimension: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Search(ctx, "t1", make([]float32, 4), 1, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("after close: %v", err)
	}
}

// Concurrent writers and readers on one tenant (run with -race).
func TestConcurrentUse(t *testing.T) {
	s := newStore(t, 4)
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 20 {
				doc := fmt.Sprintf("w%d-%d", w, i)
				if err := s.Upsert(ctx, "t1", []rag.Chunk{{ID: doc + ":0", DocID: doc, Text: "alpha beta", Vector: []float32{1, float32(i), 0, float32(w)}}}); err != nil {
					t.Error(err)
					return
				}
				if _, err := s.Search(ctx, "t1", []float32{1, 0, 0, 0}, 5, nil); err != nil {
					t.Error(err)
					return
				}
				if _, err := s.KeywordSearch(ctx, "t1", "alpha", 5, nil); err != nil {
					t.Error(err)
					return
				}
				if i%3 == 0 {
					if _, err := s.DeleteDoc(ctx, "t1", doc); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	n, err := s.Count(ctx, "t1")
	if err != nil || n != 4*13 {
		t.Fatalf("count %d, %v; want %d", n, err, 4*13)
	}
}

// The parallel shard path must agree with the serial scan.
func TestParallelSearchMatchesSerial(t *testing.T) {
	const dim = 8
	s := newStore(t, dim)
	ctx := context.Background()
	s.parallelMin = 64
	n := 1001
	chunks := make([]rag.Chunk, n)
	for i := range chunks {
		v := make([]float32, dim)
		for j := range v {
			v[j] = float32((i*7+j*13)%97) - 48
		}
		chunks[i] = rag.Chunk{ID: fmt.Sprintf("d%d:0", i), DocID: fmt.Sprintf("d%d", i), Vector: v}
	}
	if err := s.Upsert(ctx, "t1", chunks); err != nil {
		t.Fatal(err)
	}
	q := rag.Normalize([]float32{1, -2, 3, -4, 5, -6, 7, -8})
	ti, _ := s.tenant(ctx, "t1")
	ti.mu.RLock()
	par := ti.topK(q, 20, nil, dim, s.parallelMin)
	serial := topList{k: 20}
	for i := range ti.ids {
		serial.offer(i, rag.Dot(q, ti.vecs[i*dim:(i+1)*dim]))
	}
	ti.mu.RUnlock()
	for i := range par {
		if par[i].score != serial.items[i].score {
			t.Fatalf("rank %d: parallel %v, serial %v", i, par[i], serial.items[i])
		}
	}
}

// Many first requests for one tenant share one load; other tenants are
// served meanwhile (run with -race).
func TestConcurrentFirstLoad(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s1, err := Open(dir, Options{Dimension: 4})
	if err != nil {
		t.Fatal(err)
	}
	var chunks []rag.Chunk
	for i := range 200 {
		chunks = append(chunks, rag.Chunk{ID: fmt.Sprintf("d:%d", i), DocID: "d", Index: i, Vector: []float32{1, float32(i), 0, 0}})
	}
	if err := s1.Upsert(ctx, "big", chunks); err != nil {
		t.Fatal(err)
	}
	s1.Close()
	s2, err := Open(dir, Options{Dimension: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	var wg sync.WaitGroup
	for i := range 8 {
		tenant := "big"
		if i%2 == 1 {
			tenant = fmt.Sprintf("small-%d", i)
		}
		wg.Go(func() {
			n, err := s2.Count(ctx, tenant)
			if err != nil {
				t.Error(err)
				return
			}
			if want := map[bool]int{true: 200, false: 0}[tenant == "big"]; n != want {
				t.Errorf("tenant %s: count %d, want %d", tenant, n, want)
			}
		})
	}
	wg.Wait()
}

// TestDeleteGivesMemoryBack: deleting a large document left its vectors' memory held (the
// slices were only shortened, the position map never shrinks). After the delete the index holds
// about what remains.
func TestDeleteGivesMemoryBack(t *testing.T) {
	const dim = 8
	s := newStore(t, dim)
	ctx := context.Background()
	big := make([]rag.Chunk, 5000)
	for i := range big {
		v := make([]float32, dim)
		v[i%dim] = 1
		big[i] = rag.Chunk{ID: fmt.Sprintf("big:%d", i), DocID: "big", Vector: v}
	}
	if err := s.Upsert(ctx, "t1", append(big, rag.Chunk{ID: "small:0", DocID: "small", Vector: []float32{1, 0, 0, 0, 0, 0, 0, 0}})); err != nil {
		t.Fatal(err)
	}
	if n, err := s.DeleteDoc(ctx, "t1", "big"); err != nil || n != len(big) {
		t.Fatalf("delete: %d, %v", n, err)
	}
	ti, _ := s.tenant(ctx, "t1")
	ti.mu.RLock()
	defer ti.mu.RUnlock()
	if len(ti.ids) != 1 || cap(ti.ids) > compactMinRows || cap(ti.vecs) > compactMinRows*dim {
		t.Fatalf("after deleting 5000 of 5001 rows: %d rows, capacity %d ids, %d floats", len(ti.ids), cap(ti.ids), cap(ti.vecs))
	}
	if i, ok := ti.pos["small:0"]; !ok || ti.ids[i] != "small:0" {
		t.Fatalf("position map lost the remaining row: %v", ti.pos)
	}
	hits, err := s.Search(ctx, "t1", []float32{1, 0, 0, 0, 0, 0, 0, 0}, 5, nil)
	if err != nil || len(hits) != 1 || hits[0].Chunk.ID != "small:0" {
		t.Fatalf("search after compaction: %v, %v", hits, err)
	}
}

func TestIndexesConformance(t *testing.T) {
	vectorstoretest.RunIndexes(t, func(t *testing.T) vectorstoretest.IndexesWithReopen {
		dir := t.TempDir()
		open := func(*testing.T) rag.Indexes { return NewIndexes(dir, IndexesOptions{}) }
		return vectorstoretest.IndexesWithReopen{Indexes: open(t), Reopen: open, Models: [2]string{"model/a", "model/b"}}
	})
}

// A data dir from before one file per model: its vectors.db (hash-embed vectors, no model
// recorded) keeps serving as the legacy pair, and a file of another model is refused.
func TestIndexesKeepLegacyFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	old, err := Open(dir, Options{Dimension: vectorstoretest.Dim})
	if err != nil {
		t.Fatal(err)
	}
	v := make([]float32, vectorstoretest.Dim)
	v[0] = 1
	if err := old.Upsert(ctx, "acme", []rag.Chunk{{ID: "d:0", DocID: "d", Text: "old", Vector: v, Meta: map[string]any{}}}); err != nil {
		t.Fatal(err)
	}
	old.Close()
	x := NewIndexes(dir, IndexesOptions{LegacyModel: "local/hash-embed", LegacyDimension: vectorstoretest.Dim})
	defer x.Close()
	vs, err := x.Index(ctx, "local/hash-embed", vectorstoretest.Dim)
	if err != nil {
		t.Fatal(err)
	}
	hits, err := vs.Search(ctx, "acme", v, 5, nil)
	if err != nil || len(hits) != 1 || hits[0].Chunk.Text != "old" {
		t.Fatalf("legacy search = %v, %v", hits, err)
	}
	other, err := Open(dir, Options{Dimension: vectorstoretest.Dim, Model: "local/minilm"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.Search(ctx, "acme", v, 5, nil); !errors.Is(err, ErrModelMismatch) {
		t.Errorf("another model on the legacy file: %v, want ErrModelMismatch", err)
	}
}
