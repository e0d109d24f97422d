package cluster_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/crispy-enigma/crispy/cluster"
	"github.com/crispy-enigma/crispy/test/fixture"
)

// A lookup of a stream or bucket that does not exist is an answer: RetryingJetStream returns it at
// once instead of retrying until the caller's deadline (the budget grain creates a missing bucket,
// the chat session a missing stream).
func TestRetryingJetStreamMissingIsAnAnswer(t *testing.T) {
	js := fixture.JetStream(t)
	retried := 0
	r := cluster.RetryingJetStream{JetStream: js, OnRetry: func(string, error) { retried++ }}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := r.Stream(ctx, "NOPE"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("Stream: %v, want ErrStreamNotFound", err)
	}
	if _, err := r.KeyValue(ctx, "nope"); !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Errorf("KeyValue: %v, want ErrBucketNotFound", err)
	}
	if retried != 0 || ctx.Err() != nil {
		t.Errorf("retried %d times (ctx %v): a missing stream or bucket was retried", retried, ctx.Err())
	}
	if _, err := r.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "present"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.KeyValue(ctx, "present"); err != nil {
		t.Errorf("KeyValue of an existing bucket: %v", err)
	}
}
