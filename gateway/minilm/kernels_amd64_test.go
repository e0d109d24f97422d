package minilm

import (
	"context"
	"testing"
)

// TestGenericMatchesReference runs the model with the pure-Go kernels (what
// a CPU without AVX2 runs) on the short reference texts (they are slow).
func TestGenericMatchesReference(t *testing.T) {
	m := newModel(t)
	ref := loadReference(t)
	saved := hasAVX2FMA
	hasAVX2FMA = false
	t.Cleanup(func() { hasAVX2FMA = saved })
	for _, it := range ref.Items {
		if len(it.IDs) > 8 {
			continue
		}
		v, err := m.Embed(context.Background(), []string{it.Text})
		if err != nil {
			t.Fatal(err)
		}
		if c := cosine(v[0], it.Vector); c < 0.999 {
			t.Errorf("%.40q: cosine %.6f < 0.999", it.Text, c)
		}
	}
}
