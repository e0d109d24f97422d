package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
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
// replicated stream needs its replicas' servers to be up, an election takes a moment).
func Retry(ctx context.Context, fn func(context.Context) error) error {
	for {
		attempt, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := fn(attempt)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: gave up waiting for JetStream: %w", err)
		case <-time.After(retryPause):
		}
	}
}
