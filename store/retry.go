package store

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Retry is the one retry loop for JetStream requests: every attempt is bounded by Attempt, and a
// Transient failure is tried again after Pause until the caller's context ends. Callers pass only
// work that is safe to repeat (a read, an idempotent create, a publish with a message ID).
type Retry struct {
	// Attempt bounds one attempt; 0 means the caller's context alone bounds it.
	Attempt time.Duration
	// Pause is the wait between attempts; 0 means 50 ms.
	Pause time.Duration
	// OnRetry, if set, hears of every failure that will be retried (attempt is 1-based).
	OnRetry func(attempt int, err error)
	// Always retries every failure, not only Transient ones: for start-up waits whose errors are
	// all "not yet" (a cluster without a JetStream leader answers in many ways).
	Always bool
}

// Do calls fn until it succeeds, fails for good, or ctx ends. It returns fn's last error unwrapped,
// so callers' errors.Is checks keep working.
func (r Retry) Do(ctx context.Context, fn func(context.Context) error) error {
	pause := r.Pause
	if pause <= 0 {
		pause = 50 * time.Millisecond
	}
	for attempt := 1; ; attempt++ {
		actx, cancel := ctx, context.CancelFunc(func() {})
		if r.Attempt > 0 {
			actx, cancel = context.WithTimeout(ctx, r.Attempt)
		}
		err := fn(actx)
		cancel()
		if err == nil || ctx.Err() != nil || !(r.Always || Transient(err)) {
			return err
		}
		if r.OnRetry != nil {
			r.OnRetry(attempt, err)
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// RetryValue is Retry.Do for a call that returns a value.
func RetryValue[T any](ctx context.Context, r Retry, fn func(context.Context) (T, error)) (T, error) {
	var v T
	err := r.Do(ctx, func(ctx context.Context) error {
		var err error
		v, err = fn(ctx)
		return err
	})
	return v, err
}

// Transient is the one definition of a JetStream failure worth retrying: a request nobody answered
// in time (what a stream between leaders, or a cluster still electing one, produces; for an
// asynchronous publish, an ack that timed out or a publisher stalled on unacknowledged ones), a server-side
// 5xx, or a connection that is being re-established. An API error below 500 is an answer and final,
// and so is a stream or bucket that does not exist.
func Transient(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) ||
		errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrConsumerNotFound) {
		return false
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.Code >= 500 || apiErr.ErrorCode == jetstream.JSErrCodeJetStreamNotEnabled
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrConnectionReconnecting) || errors.Is(err, nats.ErrDisconnected) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrAsyncPublishTimeout) ||
		errors.Is(err, jetstream.ErrTooManyStalledMsgs)
}
