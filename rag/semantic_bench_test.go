package rag_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/gateway/minilm"
	"github.com/crispy-enigma/crispy/rag"
	"github.com/crispy-enigma/crispy/rag/embedded"
)

// BenchmarkSemanticSearch is README's search latency at 10k and 100k chunks per tenant with
// local/minilm on the embedded store: one Searcher.Retrieve per iteration — the query embedded by
// minilm, exact vector search, BM25, fusion — reporting p50 and p99 wall time and the CPU time
// per query (steadier on a shared machine).
//
// The corpus: the 44 passages of the quality sets are embedded by minilm once; chunk i is passage
// i mod 44 with " (variant i)" appended to its text (so BM25 has 100k rows to rank) and its vector
// plus Gaussian noise (σ 0.02 per dimension, then normalised), so 100k vectors sit where real
// passages do rather than spread uniformly, without spending hours embedding 100k texts. Queries
// are the paraphrase questions, embedded inside the timed loop.
//
//	go test ./rag -run '^$' -bench BenchmarkSemanticSearch -benchtime 200x
func BenchmarkSemanticSearch(b *testing.B) {
	m, err := minilm.New()
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var texts []string
	for _, t := range qualityCorpus {
		texts = append(texts, t)
	}
	for _, d := range paraphraseDocs {
		texts = append(texts, d.text)
	}
	base, err := m.Embed(ctx, texts)
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("chunks=%d", n), func(b *testing.B) {
			st, err := embedded.Open(b.TempDir(), embedded.Options{Dimension: minilm.Dimension, Model: m.ID()})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			r := rand.New(rand.NewPCG(7, 8))
			const batch = 1000
			for start := 0; start < n; start += batch {
				chunks := make([]rag.Chunk, 0, batch)
				for i := start; i < min(n, start+batch); i++ {
					doc := fmt.Sprintf("doc-%d", i)
					v := slices.Clone(base[i%len(base)])
					for j := range v {
						v[j] += float32(r.NormFloat64() * 0.02)
					}
					text := fmt.Sprintf("%s (variant %d)", texts[i%len(texts)], i)
					chunks = append(chunks, rag.Chunk{ID: rag.ChunkID(doc, 0), DocID: doc, Text: text, Vector: v,
						Meta: map[string]any{"docId": doc, rag.MetaEmbeddingModel: m.ID()}})
				}
				if err := st.Upsert(ctx, "bench", chunks); err != nil {
					b.Fatal(err)
				}
			}
			s := rag.NewSearcher(st, m, rag.SearcherOptions{})
			var lat []time.Duration
			b.ReportAllocs()
			cpu0 := processCPU()
			for i := 0; b.Loop(); i++ {
				start := time.Now()
				hits, err := s.Retrieve(ctx, "bench", rag.Query{Text: paraphraseDocs[i%len(paraphraseDocs)].q, TopK: rag.DefaultTopK})
				lat = append(lat, time.Since(start))
				if err != nil || len(hits) != rag.DefaultTopK {
					b.Fatalf("%d hits, %v", len(hits), err)
				}
			}
			cpu := processCPU() - cpu0
			slices.Sort(lat)
			b.ReportMetric(float64(cpu.Microseconds())/1000/float64(len(lat)), "cpu-ms/query")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}
