package rag_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/gateway/minilm"
	"github.com/crispy-enigma/crispy/rag"
	"github.com/crispy-enigma/crispy/rag/embedded"
)

// badEmbedder corrupts what a real model returns: a wrong dimension, a NaN, an infinity, or one
// vector too few.
type badEmbedder struct {
	gateway.EmbeddingModel
	corrupt func([][]float32) [][]float32
}

func (b badEmbedder) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	vecs, err := b.EmbeddingModel.Embed(ctx, texts)
	if err != nil {
		return nil, err
	}
	return b.corrupt(vecs), nil
}

// TestBadInput: every hostile document or model answer is a clear, typed error, never a panic,
// and the document's previous version stays searchable (nothing half-written).
func TestBadInput(t *testing.T) {
	ctx := context.Background()
	hash := gateway.NewHashEmbedder(0)
	inf := float32(math.Inf(1))
	tests := []struct {
		name    string
		text    string
		data    []byte
		model   gateway.EmbeddingModel
		wantErr error // nil: ingests
	}{
		{"empty text", "", nil, hash, rag.ErrEmptyDocument},
		{"only spaces", " \n\t ", nil, hash, rag.ErrEmptyDocument},
		{"only punctuation", "!!! ... ??? — ;;; ***", nil, hash, rag.ErrEmptyDocument},
		{"1 MB of one word", strings.Repeat("a", 1<<20), nil, hash, nil},
		{"1 MB of one word repeated", strings.Repeat("word ", 1<<20/5), nil, hash, nil},
		{"invalid UTF-8 is repaired", "caf\xe9 au lait \xff\xfe", nil, hash, nil},
		{"invalid UTF-8 bytes with words", "", []byte("hello \xff\xfe world \x80"), hash, nil},
		{"invalid UTF-8 bytes only", "", []byte{0xff, 0xfe, 0x00, 0x01, 0x80}, hash, rag.ErrEmptyDocument},
		{"wrong dimension", "some text", nil, badEmbedder{hash, func(v [][]float32) [][]float32 { v[0] = v[0][:10]; return v }}, rag.ErrEmbedding},
		{"NaN", "some text", nil, badEmbedder{hash, func(v [][]float32) [][]float32 { v[0][3] = float32(math.NaN()); return v }}, rag.ErrEmbedding},
		{"infinity", "some text", nil, badEmbedder{hash, func(v [][]float32) [][]float32 { v[0][0] = inf; return v }}, rag.ErrEmbedding},
		{"missing vector", "some text", nil, badEmbedder{hash, func(v [][]float32) [][]float32 { return v[:0] }}, rag.ErrEmbedding},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := embedded.Open(t.TempDir(), embedded.Options{Dimension: hash.Dimension()})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			// The previous version of the document, which a failed re-ingest must leave in place.
			if _, err := rag.NewIngester(st, hash, rag.IngesterOptions{}).Ingest(ctx, "acme", rag.Document{ID: "doc", Text: "previous version about lighthouses"}); err != nil {
				t.Fatal(err)
			}
			_, err = rag.NewIngester(st, tt.model, rag.IngesterOptions{}).Ingest(ctx, "acme", rag.Document{ID: "doc", Text: tt.text, Data: tt.data})
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Ingest: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), "doc") {
				t.Fatalf("Ingest: %v, want %v naming the document", err, tt.wantErr)
			}
			hits, err := st.KeywordSearch(ctx, "acme", "lighthouses", 5, nil)
			if err != nil || len(hits) != 1 {
				t.Errorf("previous version after a failed ingest: %d hits, %v", len(hits), err)
			}
		})
	}
}

// A query the model answers badly is an ErrEmbedding, not a search over a poisoned vector.
func TestBadQueryVector(t *testing.T) {
	ctx := context.Background()
	hash := gateway.NewHashEmbedder(0)
	st, err := embedded.Open(t.TempDir(), embedded.Options{Dimension: hash.Dimension()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	nan := badEmbedder{hash, func(v [][]float32) [][]float32 { v[0][1] = float32(math.NaN()); return v }}
	for _, q := range []string{"lighthouses", "!!!", strings.Repeat("x", 1<<20)} {
		if _, err := rag.NewSearcher(st, nan, rag.SearcherOptions{}).Search(ctx, "acme", rag.Query{Text: q}); !errors.Is(err, rag.ErrEmbedding) {
			t.Errorf("query %.10q with a NaN vector: %v, want ErrEmbedding", q, err)
		}
	}
}

// local/minilm on hostile text: a megabyte-long word, invalid UTF-8, punctuation — vectors of
// the right length, finite (it truncates to its 256-token window).
func TestMiniLMOnHostileText(t *testing.T) {
	if raceEnabled {
		t.Skip("slow under the race detector")
	}
	m, err := minilm.New()
	if err != nil {
		t.Fatal(err)
	}
	texts := []string{strings.Repeat("a", 1<<20), strings.Repeat("word ", 1<<18), "caf\xe9 \xff\xfe", "!!! ??? ...", "🙂🙂🙂"}
	vecs, err := m.Embed(context.Background(), texts)
	if err != nil {
		t.Fatal(err)
	}
	if err := rag.CheckVectors(m, vecs, len(texts)); err != nil {
		t.Error(err)
	}
}
