package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/crispy-enigma/crispy/store"
)

// MaxReplicas is the most JetStream replicas a stream or bucket gets: three tolerate the loss of one
// server with a quorum left; more only slow every write down.
const MaxReplicas = 3

// Replicas is the replica count for JetStream streams and KV buckets in a NATS cluster of servers
// servers: min(3, servers), at least 1.
func Replicas(servers int) int {
	return max(1, min(MaxReplicas, servers))
}

// retryPause is the pause between attempts of WaitJetStream and Retry.
const retryPause = 250 * time.Millisecond

// WaitJetStream waits until JetStream answers account requests, which in a NATS cluster means a meta
// leader has been elected: before that, creating a stream fails with "JetStream system temporarily
// unavailable". It returns the last error when ctx ends first.
func WaitJetStream(ctx context.Context, js jetstream.JetStream) error {
	return Retry(ctx, func(ctx context.Context) error {
		_, err := js.AccountInfo(ctx)
		return err
	})
}

// Retry calls fn until it succeeds or ctx ends, pausing between attempts; each attempt gets at most
// two seconds. It is for start-up steps that fail only until the NATS cluster has settled (a
// replicated stream needs its replicas' servers to be up, an election takes a moment), so every
// failure is "not yet".
func Retry(ctx context.Context, fn func(context.Context) error) error {
	if err := (store.Retry{Attempt: 2 * time.Second, Pause: retryPause, Always: true}).Do(ctx, fn); err != nil {
		return fmt.Errorf("cluster: gave up waiting for JetStream: %w", err)
	}
	return nil
}

// setupAttempt bounds one stream or bucket management call of a RetryingJetStream.
const setupAttempt = 3 * time.Second

// RetryingJetStream is a JetStream whose CreateOrUpdate calls for streams, buckets and consumers,
// UpdateStream, and the Stream and KeyValue lookups are retried, each attempt bounded, until the
// caller's ctx ends.
//
// Why: while the nodes of a new NATS cluster start together, they create the same replicated
// streams at the same moment. One node's create then races another's, falls back to an update of a
// stream whose raft group is still forming, and that request can go unanswered until the caller's
// deadline; a stream whose replicas' servers are not all up yet is refused. A second attempt a moment
// later succeeds. The calls are idempotent, so retrying them is safe; everything else passes through.
type RetryingJetStream struct {
	jetstream.JetStream
	// OnRetry, if set, is told about every failed attempt that will be retried.
	OnRetry func(op string, err error)
}

var _ jetstream.JetStream = RetryingJetStream{}

func retryValue[T any](ctx context.Context, onRetry func(string, error), op string, fn func(context.Context) (T, error)) (T, error) {
	return store.RetryValue(ctx, store.Retry{Attempt: setupAttempt, Pause: retryPause, OnRetry: func(_ int, err error) {
		if onRetry != nil {
			onRetry(op, err)
		}
	}}, fn)
}

func (r RetryingJetStream) CreateOrUpdateStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	st, err := retryValue(ctx, r.OnRetry, "stream "+cfg.Name, func(ctx context.Context) (jetstream.Stream, error) {
		return r.JetStream.CreateOrUpdateStream(ctx, cfg)
	})
	if err != nil {
		return nil, err
	}
	return retryingStream{Stream: st, onRetry: r.OnRetry}, nil
}

// Stream and KeyValue lookups are retried like the creates: start-up looks a bucket's stream up
// right after creating it, and on a cold cluster that request went unanswered until the 90 s join
// deadline (seen in the soak). A stream that does not exist is an answer (404), not retried.
func (r RetryingJetStream) Stream(ctx context.Context, name string) (jetstream.Stream, error) {
	return retryValue(ctx, r.OnRetry, "stream info "+name, func(ctx context.Context) (jetstream.Stream, error) {
		return r.JetStream.Stream(ctx, name)
	})
}

func (r RetryingJetStream) KeyValue(ctx context.Context, bucket string) (jetstream.KeyValue, error) {
	return retryValue(ctx, r.OnRetry, "bucket "+bucket, func(ctx context.Context) (jetstream.KeyValue, error) {
		return r.JetStream.KeyValue(ctx, bucket)
	})
}

// UpdateStream is retried too: start-up turns options the KV API cannot set (direct gets off) on
// a bucket's stream right after creating it, and on a cold cluster that update went unanswered
// until the 90 s join deadline.
func (r RetryingJetStream) UpdateStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	return retryValue(ctx, r.OnRetry, "stream update "+cfg.Name, func(ctx context.Context) (jetstream.Stream, error) {
		return r.JetStream.UpdateStream(ctx, cfg)
	})
}

func (r RetryingJetStream) CreateOrUpdateObjectStore(ctx context.Context, cfg jetstream.ObjectStoreConfig) (jetstream.ObjectStore, error) {
	return retryValue(ctx, r.OnRetry, "object store "+cfg.Bucket, func(ctx context.Context) (jetstream.ObjectStore, error) {
		return r.JetStream.CreateOrUpdateObjectStore(ctx, cfg)
	})
}

// retryingStream retries CreateOrUpdateConsumer on a stream returned by RetryingJetStream, for the
// same reason.
type retryingStream struct {
	jetstream.Stream
	onRetry func(string, error)
}

func (s retryingStream) CreateOrUpdateConsumer(ctx context.Context, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	return retryValue(ctx, s.onRetry, "consumer "+cfg.Durable, func(ctx context.Context) (jetstream.Consumer, error) {
		return s.Stream.CreateOrUpdateConsumer(ctx, cfg)
	})
}

func (r RetryingJetStream) CreateOrUpdateKeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	return retryValue(ctx, r.OnRetry, "bucket "+cfg.Bucket, func(ctx context.Context) (jetstream.KeyValue, error) {
		return r.JetStream.CreateOrUpdateKeyValue(ctx, cfg)
	})
}

func (r RetryingJetStream) CreateOrUpdateConsumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	return retryValue(ctx, r.OnRetry, "consumer "+cfg.Durable, func(ctx context.Context) (jetstream.Consumer, error) {
		return r.JetStream.CreateOrUpdateConsumer(ctx, stream, cfg)
	})
}
