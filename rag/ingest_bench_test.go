package rag_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/rag"
	"github.com/crispy-enigma/crispy/rag/embedded"
)

// BenchmarkIngest is the whole ingest path with local/hash-embed (parse,
// chunk at 1000/100, embed at 384 dimensions, replace in the embedded store)
// and reports chunks/s.
func BenchmarkIngest(b *testing.B) {
	emb := gateway.NewHashEmbedder(0)
	store, err := embedded.Open(b.TempDir(), embedded.Options{Dimension: emb.Dimension()})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	in := rag.NewIngester(store, emb, rag.IngesterOptions{})
	var doc strings.Builder
	for i := 0; doc.Len() < 20000; i++ {
		fmt.Fprintf(&doc, "## Section %d\nThe embedded store keeps chunk %d of every tenant in SQLite with an FTS5 index. "+
			"Search fuses cosine similarity and BM25 by reciprocal rank, then quotes the best sentences.\n\n", i, i)
	}
	text := doc.String()
	ctx := context.Background()
	chunks := 0
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		res, err := in.Ingest(ctx, "bench", rag.Document{ID: fmt.Sprintf("doc-%d", i), Text: text, ContentType: "text/markdown"})
		if err != nil {
			b.Fatal(err)
		}
		chunks += res.Chunks
	}
	b.ReportMetric(float64(chunks)/b.Elapsed().Seconds(), "chunks/s")
}
