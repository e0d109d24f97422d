package store

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Create is put-if-absent: of concurrent creates of one key exactly one wins; after a Delete the
// key can be created again; a TTL needs a bucket that allows it.
func TestTenantKVCreate(t *testing.T) {
	ctx := t.Context()
	kv := openKV(t, BucketCache, KVOptions{AllowTTL: true})
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := kv.Create(ctx, "acme", "idem.k1", []byte("claim"), time.Hour)
			switch {
			case err == nil:
				wins.Add(1)
			case !errors.Is(err, ErrExists):
				t.Errorf("Create: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d creates won, want 1", wins.Load())
	}
	if err := kv.Create(ctx, "other", "idem.k1", []byte("x"), 0); err != nil {
		t.Fatalf("another tenant's key: %v", err)
	}
	if err := kv.Delete(ctx, "acme", "idem.k1"); err != nil {
		t.Fatal(err)
	}
	if err := kv.Create(ctx, "acme", "idem.k1", []byte("again"), time.Hour); err != nil {
		t.Fatalf("Create after Delete: %v", err)
	}
	if got, err := kv.Get(ctx, "acme", "idem.k1"); err != nil || string(got) != "again" {
		t.Fatalf("Get = %q, %v", got, err)
	}
	plain := openKV(t, BucketConfig, KVOptions{})
	if err := plain.Create(ctx, "acme", "k", nil, time.Hour); !errors.Is(err, ErrTTLNotAllowed) {
		t.Fatalf("Create with a TTL on a bucket without AllowTTL: %v", err)
	}
}
