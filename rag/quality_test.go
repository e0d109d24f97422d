package rag_test

import (
	"context"
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/rag"
)

// A small corpus written for this check (general knowledge, no copyrighted
// text) and questions phrased differently from the passages.
var qualityCorpus = map[string]string{
	"moon":      "The Moon is Earth's only natural satellite. It orbits Earth about every 27 days and always shows the same face, because its rotation is tidally locked. Its gravity causes the ocean tides.",
	"bees":      "Honey bees live in colonies with a single queen, thousands of female workers and some male drones. Workers collect nectar and pollen from flowers and turn nectar into honey, which they store in wax combs.",
	"volcano":   "A volcano is an opening in the crust where molten rock, ash and gases escape. Magma that reaches the surface is called lava. Many volcanoes sit along the edges of tectonic plates, such as the Pacific Ring of Fire.",
	"photo":     "Photosynthesis is how plants use sunlight, water and carbon dioxide to make glucose, releasing oxygen as a by-product. It happens in chloroplasts, which contain the green pigment chlorophyll.",
	"heart":     "The human heart pumps blood through the body. It has four chambers: two atria and two ventricles. The right side sends blood to the lungs to pick up oxygen; the left side pumps it to the rest of the body.",
	"chess":     "Chess is played on a board of 64 squares by two players. Each side starts with sixteen pieces. The goal is checkmate: attacking the opposing king so that it cannot escape capture.",
	"tea":       "Tea is brewed from the leaves of the Camellia sinensis plant. Green tea is not oxidised, while black tea leaves are fully oxidised before drying, which gives them a darker colour and stronger flavour.",
	"rainbow":   "A rainbow appears when sunlight is refracted, reflected and dispersed inside raindrops. White light splits into its colours, from red on the outside of the arc to violet on the inside.",
	"sourdough": "Sourdough bread rises thanks to a starter, a fermented mixture of flour and water that contains wild yeast and lactic acid bacteria. The bacteria give the bread its sour taste.",
	"rome":      "The Roman Empire was ruled by emperors from Augustus in 27 BC. At its largest it surrounded the Mediterranean Sea. The western half fell in 476 AD, while the eastern half lasted until 1453.",
	"install":   "To install the crispy server, download the release archive, unpack it and run crispy serve. With no flags it starts a single node with embedded NATS and an embedded vector store.",
	"ratelimit": "Each tenant has a rate limit: requests per minute and a burst allowance. A client that goes over the limit gets HTTP status 429 with a Retry-After header telling it when to try again.",
}

var qualityQuestions = []struct{ q, doc string }{
	{"Why do we always see the same side of the moon?", "moon"},
	{"Who lays the eggs in a bee colony and how is honey made?", "bees"},
	{"What is lava?", "volcano"},
	{"How do plants make sugar from light?", "photo"},
	{"How many chambers does the heart have?", "heart"},
	{"How do you win a game of chess?", "chess"},
	{"What is the difference between green and black tea?", "tea"},
	{"Why are rainbows colourful?", "rainbow"},
	{"What makes sourdough taste sour?", "sourdough"},
	{"When did the western Roman Empire fall?", "rome"},
	{"How do I set up the server?", "install"},
	{"What happens when a client sends too many requests?", "ratelimit"},
}

// TestRetrievalQuality reports recall@5 and top-1 of local/hash-embed alone,
// BM25 alone and the fused hybrid, and requires the hybrid to find the right
// document in the top 5 for at least 10 of the 12 questions.
func TestRetrievalQuality(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for id, text := range qualityCorpus {
		if _, err := e.ingester.Ingest(ctx, "quality", rag.Document{ID: id, Text: text}); err != nil {
			t.Fatal(err)
		}
	}
	type score struct{ top1, at5 int }
	var vec, bm25, hybrid score
	tally := func(s *score, docs []string, want string) {
		for i, d := range docs {
			if d == want {
				if i == 0 {
					s.top1++
				}
				if i < 5 {
					s.at5++
				}
				return
			}
		}
	}
	docsOf := func(hits []rag.Hit) []string {
		var out []string
		for _, h := range hits {
			out = append(out, h.Chunk.DocID)
		}
		return out
	}
	for _, qq := range qualityQuestions {
		// As Searcher does for a lexical embedder: content words only.
		v, err := e.embedder.Embed(ctx, []string{strings.Join(rag.QueryTerms(qq.q), " ")})
		if err != nil {
			t.Fatal(err)
		}
		vh, err := e.store.Search(ctx, "quality", v[0], rag.MaxTopK, nil)
		if err != nil {
			t.Fatal(err)
		}
		kh, err := e.store.KeywordSearch(ctx, "quality", strings.Join(rag.QueryTerms(qq.q), " "), rag.MaxTopK, nil)
		if err != nil {
			t.Fatal(err)
		}
		var fused []string
		for _, f := range rag.FuseRRF(rag.RRFK, vh, kh) {
			fused = append(fused, f.Chunk.DocID)
		}
		tally(&vec, docsOf(vh), qq.doc)
		tally(&bm25, docsOf(kh), qq.doc)
		tally(&hybrid, fused, qq.doc)
	}
	n := len(qualityQuestions)
	for _, r := range []struct {
		name string
		s    score
	}{{"hash-embed", vec}, {"bm25", bm25}, {"hybrid", hybrid}} {
		t.Logf("%-10s recall@5 %2d/%d  top-1 %2d/%d", r.name, r.s.at5, n, r.s.top1, n)
	}
	if hybrid.at5 < 11 {
		t.Errorf("hybrid recall@5 %d/%d, want at least 11", hybrid.at5, n)
	}
}
