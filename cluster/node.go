// Package cluster starts and stops the protoactor cluster member of a node: actor system, remote
// (gRPC on Host:Port), the identity lookup of cluster/lookup (rendezvous hashing, one activation per
// identity) and
// a membership provider.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	protocluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/rs/zerolog"

	"github.com/crispy-enigma/crispy/cluster/lookup"
)

// Options configure a cluster member.
type Options struct {
	// ClusterName must be the same on every member (default "crispy").
	ClusterName string
	// NodeName names this member in logs.
	NodeName string
	// Host and Port of the remote (gRPC) listener; Host defaults to 127.0.0.1, Port 0 picks a free port.
	Host string
	Port int
	// AdvertisedHost is the host:port peers dial to reach this member when it differs from
	// Host:Port (listening on 0.0.0.0, NAT, containers); empty means Host:Port.
	AdvertisedHost string
	// Kinds are the grain kinds this member hosts (actors.Kinds).
	Kinds []*protocluster.Kind
	// Provider is the membership provider; nil means an in-memory provider for a single process
	// (one node, or several members in one test process sharing the provider's agent).
	Provider protocluster.ClusterProvider
	// RequestTimeout is the cluster's default grain request timeout (default 5s).
	RequestTimeout time.Duration
	// Logger receives protoactor's logs (raised to at least warn: its info logs are per-topology chatter).
	Logger zerolog.Logger
}

// Node is a running cluster member.
type Node struct {
	c        *protocluster.Cluster
	log      zerolog.Logger
	stopOnce sync.Once
}

// Start starts a cluster member and joins the cluster. protoactor waits about a second for the
// first topology before returning.
func Start(ctx context.Context, opts Options) (n *Node, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if opts.ClusterName == "" {
		opts.ClusterName = "crispy"
	}
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 5 * time.Second
	}
	if opts.Provider == nil {
		opts.Provider = NewInMemoryProvider(NewInMemoryAgent())
	}
	log := opts.Logger.With().Str("component", "cluster").Str("node", opts.NodeName).Logger()
	protoLog := log
	if protoLog.GetLevel() < zerolog.WarnLevel {
		protoLog = protoLog.Level(zerolog.WarnLevel)
	}

	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(zerolog.NewSlogHandler(protoLog))
	}))
	var remoteOpts []remote.ConfigOption
	if opts.AdvertisedHost != "" {
		remoteOpts = append(remoteOpts, remote.WithAdvertisedHost(opts.AdvertisedHost))
	}
	cfg := protocluster.Configure(opts.ClusterName, opts.Provider, lookup.New(),
		remote.Configure(opts.Host, opts.Port, remoteOpts...),
		protocluster.WithKinds(opts.Kinds...),
		protocluster.WithRequestTimeout(opts.RequestTimeout),
	)
	c := protocluster.New(system, cfg)

	// protoactor reports start failures (port in use, provider errors) by panicking.
	defer func() {
		if r := recover(); r != nil {
			system.Shutdown()
			n, err = nil, fmt.Errorf("cluster: start member %q: %v", opts.NodeName, r)
		}
	}()
	c.StartMember()
	log.Info().Str("address", system.Address()).Int("kinds", len(opts.Kinds)).Msg("cluster member started")
	return &Node{c: c, log: log}, nil
}

// Cluster is the protoactor cluster, for actors.NewClient.
func (n *Node) Cluster() *protocluster.Cluster { return n.c }

// Address is this member's remote address (host:port).
func (n *Node) Address() string { return n.c.ActorSystem.Address() }

// Members returns the addresses of the members this node currently sees, sorted.
func (n *Node) Members() []string {
	ms := n.c.MemberList.Members().Members()
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.Address())
	}
	sort.Strings(out)
	return out
}

// WaitMembers waits until this node sees want members, or ctx ends.
func (n *Node) WaitMembers(ctx context.Context, want int) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for len(n.Members()) != want {
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: waiting for %d members (see %v): %w", want, n.Members(), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// Stop leaves the cluster. graceful deregisters from the membership provider first, so that peers
// see this member leave at once (rather than after its TTL) and stop routing to it; otherwise the
// member just stops, as if it crashed, but still stops the provider's timers so nothing keeps running
// in this process. Only the first call has an effect.
//
// Why not protoactor's graceful shutdown: it stops the placement actor, which poisons every
// activation and waits for each in turn (up to 10 s apiece: a grain busy with a store call or
// behind a deep mailbox), then sleeps 2 s "for ownership transfer" — the lookup transfers nothing.
// After load that took 25 s and logged placement-actor timeouts, past the shutdown budget. Nothing
// is lost by not stopping grains one by one: a chat session replies only after JetStream
// acknowledged its writes, and budget counters are in JetStream too; a rate limiter's window is
// memory either way. The HTTP drain before this already ended the requests that used them.
func (n *Node) Stop(graceful bool) {
	n.stopOnce.Do(func() {
		start := time.Now()
		provider := n.c.Config.ClusterProvider
		if err := provider.Shutdown(graceful); err != nil && !errors.Is(err, context.Canceled) {
			n.log.Warn().Err(err).Msg("cluster provider shutdown")
		}
		n.c.Shutdown(false)
		n.log.Info().Bool("graceful", graceful).Dur("took", time.Since(start)).Msg("cluster member stopped")
	})
}
