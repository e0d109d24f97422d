package store_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/store"
	"github.com/crispy-enigma/crispy/test/fixture"
)

// Open creates every stream and bucket of the store in one call, runs the other packages' creates
// alongside, and can run again on a node that restarts (every create is an update then).
func TestOpenCreatesEveryStreamAndBucket(t *testing.T) {
	js := fixture.JetStream(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for run := range 2 {
		var also atomic.Int32
		res, err := store.Open(ctx, js, store.OpenOptions{Replicas: 1, Also: []func(context.Context) error{
			func(context.Context) error { also.Add(1); return nil },
		}})
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		if res.Ledger == nil || res.Config == nil || res.Cache == nil || res.Tenants == nil || res.Jobs == nil || also.Load() != 1 {
			t.Fatalf("run %d: %+v, also ran %d times", run, res, also.Load())
		}
	}
	for _, stream := range []string{store.LedgerStream, store.JobsStream, "KV_" + store.BucketConfig, "KV_" + store.BucketCache, "KV_" + store.BucketTenants, "KV_" + store.JobsBucket} {
		if _, err := js.Stream(ctx, stream); err != nil {
			t.Errorf("stream %s: %v", stream, err)
		}
	}
}
