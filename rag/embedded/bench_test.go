package embedded

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/rag"
)

const benchDim = 384

func randomVec(r *rand.Rand) []float32 {
	v := make([]float32, benchDim)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

// fill upserts n random chunks in batches, as ingest does.
func fill(b *testing.B, s *Store, tenant string, n int) {
	b.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	ctx := context.Background()
	const batch = 1000
	for start := 0; start < n; start += batch {
		chunks := make([]rag.Chunk, 0, batch)
		for i := start; i < min(n, start+batch); i++ {
			doc := fmt.Sprintf("doc-%d", i/10)
			id := rag.ChunkID(doc, i%10)
			chunks = append(chunks, rag.Chunk{ID: id, DocID: doc, Index: i % 10, Text: "chunk text number " + id,
				Vector: randomVec(r), Meta: map[string]any{"docId": doc, "chunkId": id, "source": "bench"}})
		}
		if err := s.Upsert(ctx, tenant, chunks); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSearch reports p50/p99 latency of exact top-10 search.
func BenchmarkSearch(b *testing.B) {
	for _, bc := range []struct {
		n      int
		serial bool
	}{{10_000, false}, {100_000, false}, {100_000, true}} {
		n := bc.n
		b.Run(fmt.Sprintf("chunks=%d/serial=%v", n, bc.serial), func(b *testing.B) {
			dir := b.TempDir()
			s, err := Open(dir, Options{Dimension: benchDim})
			if err != nil {
				b.Fatal(err)
			}
			fill(b, s, "bench", n)
			s.Close()
			// Reopen to measure the lazy load a restarted server pays once.
			if s, err = Open(dir, Options{Dimension: benchDim}); err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			loadStart := time.Now()
			if got, err := s.Count(context.Background(), "bench"); err != nil || got != n {
				b.Fatalf("loaded %d chunks, %v", got, err)
			}
			loadTime := time.Since(loadStart)
			if bc.serial {
				s.parallelMin = n + 1
			}
			r := rand.New(rand.NewPCG(3, 4))
			queries := make([][]float32, 64)
			for i := range queries {
				queries[i] = randomVec(r)
			}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			loopTop10(b, func(i int) ([]rag.Hit, error) {
				return s.Search(ctx, "bench", queries[i%len(queries)], 10, nil)
			})
			b.ReportMetric(float64(loadTime.Milliseconds()), "load-ms") // after the loop: b.Loop resets metrics
		})
	}
}

// BenchmarkUpsert measures store writes in ingest-sized batches (chunks/s).
func BenchmarkUpsert(b *testing.B) {
	s, err := Open(b.TempDir(), Options{Dimension: benchDim})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	r := rand.New(rand.NewPCG(5, 6))
	ctx := context.Background()
	const batch = 100
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		chunks := make([]rag.Chunk, batch)
		for i := range chunks {
			doc := fmt.Sprintf("doc-%d", n)
			chunks[i] = rag.Chunk{ID: rag.ChunkID(doc, i), DocID: doc, Index: i, Text: "some chunk text to index", Vector: randomVec(r), Meta: map[string]any{"docId": doc}}
		}
		n++
		if err := s.Upsert(ctx, "bench", chunks); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(batch*b.N)/b.Elapsed().Seconds(), "chunks/s")
}

// BenchmarkKeywordSearch reports the latency of a BM25 top-10 search whose words match every chunk
// (the worst case: "the", "text" in a corpus of similar documents), as corpora grow.
func BenchmarkKeywordSearch(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 50_000} {
		b.Run(fmt.Sprintf("chunks=%d", n), func(b *testing.B) {
			s, err := Open(b.TempDir(), Options{Dimension: benchDim})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			fill(b, s, "bench", n)
			ctx := context.Background()
			b.ReportAllocs()
			loopTop10(b, func(i int) ([]rag.Hit, error) {
				return s.KeywordSearch(ctx, "bench", fmt.Sprintf("where is the chunk text number %d", i%n), 10, nil)
			})
		})
	}
}

// loopTop10 runs search (iteration i) in the benchmark loop, fails unless it returns 10 hits, and
// reports its p50 and p99 latency.
func loopTop10(b *testing.B, search func(i int) ([]rag.Hit, error)) {
	var lat []time.Duration
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		hits, err := search(i)
		lat = append(lat, time.Since(start))
		if err != nil || len(hits) != 10 {
			b.Fatalf("%d hits, %v", len(hits), err)
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
