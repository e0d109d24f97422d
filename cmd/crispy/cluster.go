package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/crispy-enigma/crispy/actors"
	"github.com/crispy-enigma/crispy/cluster"
	"github.com/crispy-enigma/crispy/cluster/natskv"
	"github.com/crispy-enigma/crispy/cluster/natsserver"
	"github.com/crispy-enigma/crispy/config"
)

// joinTimeout bounds how long start-up waits for the NATS cluster (a JetStream meta leader and
// enough servers for the replicated streams): the peers may be starting at the same time.
const joinTimeout = 90 * time.Second

// backbone is the node's NATS: the connection, JetStream, and how many replicas streams get.
type backbone struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	replicas int
	health   func() error
	close    func() // drains the connection, then stops the embedded server
}

// openBackbone connects to NATS (embedded unless --nats-url) and, in a cluster, waits for the
// JetStream meta leader and for enough servers to create the replicated CHAT stream: every other
// stream and bucket created at start-up then succeeds at once.
func openBackbone(ctx context.Context, env config.Env, log zerolog.Logger) (_ *backbone, err error) {
	cs := env.Cluster
	b := &backbone{replicas: 1}
	var shutdownServer func()
	defer func() {
		if err != nil && shutdownServer != nil {
			shutdownServer()
		}
	}()
	closed := make(chan struct{})
	onClosed := nats.ClosedHandler(func(*nats.Conn) { close(closed) })
	if env.NATSURL == "" {
		opts := natsserver.Options{StoreDir: filepath.Join(env.DataDir, "nats"), ServerName: env.NodeName}
		if cs.NATSListen != "" {
			if opts.Host, opts.Port, err = config.SplitHostPort(cs.NATSListen); err != nil {
				return nil, err
			}
		}
		if cs.Name != "" {
			opts.ClusterName = cs.Name
			if opts.ClusterHost, opts.ClusterPort, err = config.SplitHostPort(cs.NATSClusterListen); err != nil {
				return nil, err
			}
			opts.Routes = strings.Split(cs.NATSRoutes, ",")
			opts.Raft = natsserver.ScaledRaftTiming(cs.NATSElectionTimeout)
		}
		srv, err := natsserver.Start(opts)
		if err != nil {
			return nil, err
		}
		shutdownServer = func() { srv.Shutdown(); log.Info().Msg("nats stopped") }
		if b.nc, err = srv.Connect("crispy-"+env.NodeName, onClosed); err != nil {
			return nil, err
		}
		b.health = srv.Healthy
		if cs.Name != "" {
			b.replicas = cluster.Replicas(srv.Servers())
		}
		ev := log.Info().Str("clientURL", srv.ClientURL()).Bool("clustered", srv.Clustered()).Int("servers", srv.Servers())
		if srv.Clustered() {
			ev = ev.Stringer("raft", srv.Raft())
		}
		ev.Msg("embedded nats started")
	} else {
		if b.nc, err = nats.Connect(env.NATSURL, nats.Name("crispy-"+env.NodeName), nats.MaxReconnects(-1), onClosed); err != nil {
			return nil, fmt.Errorf("connect nats %s: %w", env.NATSURL, err)
		}
		nc := b.nc
		b.health = func() error {
			if !nc.IsConnected() {
				return errors.New("not connected")
			}
			return nil
		}
		if cs.Name != "" {
			// The server pool holds the configured URLs plus the servers the cluster announced.
			b.replicas = cluster.Replicas(len(nc.Servers()))
		}
	}
	nc := b.nc
	b.close = func() {
		// Drain is asynchronous: wait for it, so the embedded server is not shut down under it.
		if err := nc.Drain(); err == nil {
			select {
			case <-closed:
			case <-time.After(5 * time.Second):
				nc.Close()
			}
		}
		if shutdownServer != nil {
			shutdownServer()
		}
	}
	if b.js, err = jetstream.New(nc); err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if cs.Name == "" {
		return b, nil
	}
	joinCtx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	start := time.Now()
	b.js = cluster.RetryingJetStream{JetStream: b.js, OnRetry: func(op string, err error) {
		log.Warn().Err(err).Str("op", op).Msg("jetstream cluster not settled yet; retrying")
	}}
	if err := cluster.WaitJetStream(joinCtx, b.js); err != nil {
		nc.Close()
		return nil, err
	}
	log.Info().Int("replicas", b.replicas).Dur("waited", time.Since(start)).Msg("jetstream cluster ready")
	return b, nil
}

// startMember starts this node's protoactor member: NATS KV membership in a cluster, the in-memory
// provider alone. The actor remote listens on --cluster-host/--cluster-port either way: a single
// node has that listener too (protoactor always starts it), and a port a firewall or a supervisor
// was told about must be the one it gets.
func startMember(ctx context.Context, env config.Env, b *backbone, deps actors.Deps, log zerolog.Logger) (*cluster.Node, error) {
	cs := env.Cluster
	// Alone for good: no membership provider, and a JetStream no other process can reach (embedded,
	// no client listener), so no other activation of a chat session can ever write its messages.
	deps.SingleMember = cs.Name == "" && env.NATSURL == "" && cs.NATSListen == ""
	opts := cluster.Options{
		ClusterName: "crispy", NodeName: env.NodeName, Host: cs.Host, Port: cs.Port, AdvertisedHost: cs.AdvertisedHost,
		Kinds: actors.Kinds(deps), Logger: log,
	}
	if cs.Name != "" {
		opts.ClusterName = cs.Name
		opts.Provider = natskv.New(b.js, natskv.Options{TTL: cs.MemberTTL, Replicas: b.replicas, Logger: log})
	}
	return cluster.Start(ctx, opts)
}

// membersComponent reports the members this node sees, for /health's components.
func membersComponent(n *cluster.Node) func(context.Context) (string, error) {
	return func(context.Context) (string, error) {
		ms := n.Members()
		return fmt.Sprintf("%d members: %s", len(ms), strings.Join(ms, " ")), nil
	}
}
