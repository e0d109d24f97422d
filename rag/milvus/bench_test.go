package milvus

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/rag"
	"github.com/milvus-io/milvus-sdk-go/v2/entity"
)

// BenchmarkSearch measures one tenant's search over n chunks of dimension
// 384 (local/hash-embed's) at each consistency level, reporting p50 and p99
// besides the mean. It needs MILVUS_ADDR like the tests.
func BenchmarkSearch(b *testing.B) {
	const dim = 384
	for _, n := range []int{10_000} {
		opts := Options{Address: milvusAddr(b), Model: freshModel(b), Dimension: dim}
		dropAfter(b, opts)
		s := open(b, opts)
		ctx := context.Background()
		rng := rand.New(rand.NewPCG(1, 2))
		randVec := func() []float32 {
			v := make([]float32, dim)
			for i := range v {
				v[i] = float32(rng.NormFloat64())
			}
			return v
		}
		start := time.Now()
		for lo := 0; lo < n; lo += 1000 {
			batch := make([]rag.Chunk, 0, 1000)
			for i := lo; i < min(lo+1000, n); i++ {
				doc := fmt.Sprintf("doc%d", i/10)
				batch = append(batch, chunk(doc, i%10, randVec(), map[string]any{"docId": doc, "source": "bench"}))
			}
			if err := s.Upsert(ctx, "tenant-a", batch); err != nil {
				b.Fatal(err)
			}
		}
		b.Logf("upserted %d chunks in %v (%.0f chunks/s)", n, time.Since(start), float64(n)/time.Since(start).Seconds())
		s.Close()
		for _, lvl := range []struct {
			name string
			l    entity.ConsistencyLevel
		}{{"strong", entity.ClStrong}, {"session", entity.ClSession}, {"bounded", entity.ClBounded}} {
			b.Run(fmt.Sprintf("chunks=%d/%s", n, lvl.name), func(b *testing.B) {
				o := opts
				o.Consistency = lvl.l
				s := open(b, o)
				defer s.Close()
				q := randVec()
				lat := make([]time.Duration, 0, b.N)
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					t0 := time.Now()
					if _, err := s.Search(ctx, "tenant-a", q, 10, nil); err != nil {
						b.Fatal(err)
					}
					lat = append(lat, time.Since(t0))
				}
				b.StopTimer()
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			})
		}
	}
}
