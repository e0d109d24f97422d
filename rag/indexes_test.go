package rag_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/crispy-enigma/crispy/rag"
	"github.com/crispy-enigma/crispy/rag/embedded"
)

// Concurrent first uses of one pair open its store once and share it; a failed open is retried.
func TestLazyIndexesOpenOnce(t *testing.T) {
	dir := t.TempDir()
	var opens, fails atomic.Int32
	x := rag.NewIndexes(func(ctx context.Context, model string, dim int) (rag.VectorStore, error) {
		if model == "flaky" && fails.Add(1) == 1 {
			return nil, errors.New("first open fails")
		}
		opens.Add(1)
		return embedded.Open(dir, embedded.Options{Dimension: dim, Model: model, File: embedded.IndexFile(model, dim, embedded.IndexesOptions{})})
	})
	defer x.Close()
	ctx := context.Background()
	stores := make([]rag.VectorStore, 16)
	var wg sync.WaitGroup
	for i := range stores {
		wg.Go(func() {
			vs, err := x.Index(ctx, "model/a", 8)
			if err != nil {
				t.Error(err)
			}
			stores[i] = vs
		})
	}
	wg.Wait()
	for _, vs := range stores[1:] {
		if vs != stores[0] {
			t.Fatal("concurrent first uses got different stores")
		}
	}
	if n := opens.Load(); n != 1 {
		t.Errorf("opened %d times, want 1", n)
	}
	if _, err := x.Index(ctx, "flaky", 8); err == nil {
		t.Error("the failing open succeeded")
	}
	if _, err := x.Index(ctx, "flaky", 8); err != nil {
		t.Errorf("retry after a failed open: %v", err)
	}
	if got := len(x.Opened()); got != 2 {
		t.Errorf("Opened lists %d pairs, want 2", got)
	}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := x.Index(ctx, "model/a", 8); !errors.Is(err, rag.ErrIndexesClosed) {
		t.Errorf("Index after Close: %v, want ErrIndexesClosed", err)
	}
}
