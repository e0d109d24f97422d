package store

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
)

// Resources are the node's JetStream streams and buckets that the store owns, each opened once.
type Resources struct {
	Ledger  *Ledger      // stream LEDGER: usage, audit, session and document events
	Config  *TenantKV    // bucket "config": per-tenant settings such as alert rules
	Cache   *TenantKV    // bucket "cache" (TTL): the response cache and the search cache
	Tenants *TenantStore // bucket "tenants": deployed tenant configs, with history
	Jobs    *JobQueue    // stream INGEST_JOBS, object store INGEST_PAYLOAD, bucket "jobs"
	// RAGIndex is bucket "ragindex": each tenant's active vector index and its latest
	// re-embedding job (rag.ActiveIndexes), with a short history of switches.
	RAGIndex *TenantKV
}

// OpenOptions configure Open.
type OpenOptions struct {
	// Replicas is the JetStream replica count of every stream and bucket (min(3, servers)).
	Replicas int
	// Also are other packages' streams and buckets (the grains' CHAT stream and budgets bucket),
	// created alongside the store's.
	Also []func(ctx context.Context) error
}

// Open creates (or updates) every stream and bucket, all at once, and returns the store's.
//
// Why at once: on a cold cluster each replicated create waits for its raft group's first election,
// ~3 s. One after the other they took ~25 s and pushed the last ones past start-up's deadline (the
// soak's nodes came up without the LEDGER stream, recording no usage); concurrently they take about
// one election.
func Open(ctx context.Context, js jetstream.JetStream, opts OpenOptions) (*Resources, error) {
	var r Resources
	g, gctx := errgroup.WithContext(ctx)
	open := func(name string, fn func(ctx context.Context) error) {
		g.Go(func() error {
			if err := fn(gctx); err != nil {
				return fmt.Errorf("open %s: %w", name, err)
			}
			return nil
		})
	}
	open("ledger", func(ctx context.Context) (err error) {
		r.Ledger, err = OpenLedger(ctx, js, LedgerOptions{Replicas: opts.Replicas})
		return err
	})
	open("config bucket", func(ctx context.Context) (err error) {
		r.Config, err = OpenTenantKV(ctx, js, BucketConfig, KVOptions{Replicas: opts.Replicas})
		return err
	})
	open("cache bucket", func(ctx context.Context) (err error) {
		r.Cache, err = OpenTenantKV(ctx, js, BucketCache, KVOptions{Replicas: opts.Replicas, AllowTTL: true})
		return err
	})
	open("tenants bucket", func(ctx context.Context) (err error) {
		r.Tenants, err = OpenTenantStore(ctx, js, TenantStoreOptions{Replicas: opts.Replicas})
		return err
	})
	open("ragindex bucket", func(ctx context.Context) (err error) {
		r.RAGIndex, err = OpenTenantKV(ctx, js, BucketRAGIndex, KVOptions{Replicas: opts.Replicas, History: 5})
		return err
	})
	open("job queue", func(ctx context.Context) (err error) {
		r.Jobs, err = OpenJobQueue(ctx, js, JobQueueOptions{Replicas: opts.Replicas})
		return err
	})
	for i, fn := range opts.Also {
		open(fmt.Sprintf("stream %d", i), fn)
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return &r, nil
}
