package gateway

import (
	"context"
	"math"
	"testing"
)

func dot(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}

func TestHashEmbedDeterministic(t *testing.T) {
	a := NewHashEmbedder(0).EmbedOne("The quick brown fox jumps over the lazy dog")
	b := NewHashEmbedder(0).EmbedOne("The quick brown fox jumps over the lazy dog")
	if len(a) != DefaultHashEmbedDimension {
		t.Fatalf("dimension %d, want %d", len(a), DefaultHashEmbedDimension)
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("component %d differs: %v vs %v", i, a[i], b[i])
		}
	}
}

func TestHashEmbedUnitNorm(t *testing.T) {
	h := NewHashEmbedder(128)
	for _, text := range []string{"a b c", "install the package with go get", "Ünïcödé straße", "日本語のテキスト", "x"} {
		v := h.EmbedOne(text)
		if n := math.Sqrt(dot(v, v)); math.Abs(n-1) > 1e-5 {
			t.Errorf("%q: norm %v, want 1", text, n)
		}
	}
}

func TestHashEmbedSimilarCloserThanUnrelated(t *testing.T) {
	h := NewHashEmbedder(0)
	tests := []struct {
		query, similar, unrelated string
	}{
		{"how do I install the server", "Installing the server: run go install", "Bananas are rich in potassium"},
		{"reset my password", "To reset a password open settings", "The weather in Paris is mild"},
		{"Straße in München", "Die Straße führt nach München", "quantum chromodynamics lecture"},
		{"東京の天気", "東京の天気は晴れ", "パスワードをリセット"},
	}
	for _, tt := range tests {
		q := h.EmbedOne(tt.query)
		s, u := dot(q, h.EmbedOne(tt.similar)), dot(q, h.EmbedOne(tt.unrelated))
		if s <= u {
			t.Errorf("%q: similar %.3f <= unrelated %.3f", tt.query, s, u)
		}
	}
}

func TestHashEmbedEmptyIsZeroVector(t *testing.T) {
	h := NewHashEmbedder(16)
	vecs, err := h.Embed(context.Background(), []string{"", "   ", "!!!"})
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range vecs {
		if len(v) != 16 {
			t.Fatalf("vector %d has length %d", i, len(v))
		}
		for _, x := range v {
			if x != 0 || math.IsNaN(float64(x)) {
				t.Fatalf("vector %d not zero: %v", i, v)
			}
		}
	}
}

func TestHashEmbedBatchOrderAndCancel(t *testing.T) {
	h := NewHashEmbedder(32)
	vecs, err := h.Embed(context.Background(), []string{"alpha", "beta"})
	if err != nil {
		t.Fatal(err)
	}
	if dot(vecs[0], h.EmbedOne("alpha")) < 0.9999 || dot(vecs[1], h.EmbedOne("beta")) < 0.9999 {
		t.Fatal("batch output not in input order")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.Embed(ctx, []string{"x"}); err == nil {
		t.Fatal("want error on cancelled context")
	}
}

func BenchmarkHashEmbed1000Chars(b *testing.B) {
	h := NewHashEmbedder(0)
	text := ""
	for len(text) < 1000 {
		text += "The embedded vector store keeps chunks per tenant in SQLite. "
	}
	b.ReportAllocs()
	for b.Loop() {
		h.EmbedOne(text)
	}
}
