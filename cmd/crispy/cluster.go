package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/crispy-enigma/crispy/actors"
	"github.com/crispy-enigma/crispy/api"
	"github.com/crispy-enigma/crispy/cluster"
	"github.com/crispy-enigma/crispy/cluster/natskv"
	"github.com/crispy-enigma/crispy/cluster/natsserver"
	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/store"
)

// clusterSettings are serve's multi-node settings. With Name empty the node runs alone exactly as
// before: embedded NATS without listeners, in-memory membership, replicas 1.
type clusterSettings struct {
	Name           string        // --cluster / CRISPY_CLUSTER: protoactor and NATS cluster name
	Host           string        // --cluster-host: protoactor remote (gRPC) listen host
	Port           int           // --cluster-port: protoactor remote port; 0 = a free port
	AdvertisedHost string        // --cluster-advertise: host:port peers dial, when not Host:Port
	MemberTTL      time.Duration // --member-ttl: how long a crashed member stays in the topology

	NATSListen        string // --nats-listen: embedded server's client listener host:port
	NATSClusterListen string // --nats-cluster-listen: embedded server's route listener host:port
	NATSRoutes        string // --nats-routes: peers' route URLs, comma-separated
}

// defaultMemberTTL is --member-ttl's default. Peers drop a crashed member when its key has not been
// refreshed for this long (heartbeats every TTL/3), and the crashed member's grains re-activate
// elsewhere at the next request: 3 s keeps that under 5 s, while two lost heartbeats in a row are
// still tolerated.
const defaultMemberTTL = 3 * time.Second

// joinTimeout bounds how long start-up waits for the NATS cluster (a JetStream meta leader and
// enough servers for the replicated streams): the peers may be starting at the same time.
const joinTimeout = 90 * time.Second

func bindClusterFlags(fs *pflag.FlagSet, getenv func(string) string) *clusterSettings {
	cs := &clusterSettings{Host: "127.0.0.1", MemberTTL: defaultMemberTTL}
	str := func(p *string, name, env, usage string) {
		def := *p
		if v := strings.TrimSpace(getenv(env)); v != "" {
			def = v
		}
		fs.StringVar(p, name, def, fmt.Sprintf("%s (env %s)", usage, env))
	}
	str(&cs.Name, "cluster", "CRISPY_CLUSTER", "join the named cluster: NATS KV membership, replicated JetStream; empty runs a single node")
	str(&cs.Host, "cluster-host", "CRISPY_CLUSTER_HOST", "host of the actor remote (gRPC) listener")
	str(&cs.AdvertisedHost, "cluster-advertise", "CRISPY_CLUSTER_ADVERTISE", "host:port peers use to reach the actor remote, when not cluster-host:cluster-port")
	str(&cs.NATSListen, "nats-listen", "CRISPY_NATS_LISTEN", "embedded NATS client listener host:port (empty: in-process only; a clustered server picks a free loopback port)")
	str(&cs.NATSClusterListen, "nats-cluster-listen", "CRISPY_NATS_CLUSTER_LISTEN", "embedded NATS route listener host:port, for --cluster without --nats-url")
	str(&cs.NATSRoutes, "nats-routes", "CRISPY_NATS_ROUTES", "comma-separated route URLs of the embedded NATS peers (nats://h1:6222,nats://h2:6222); may include this node's own")

	port := 0
	if v, err := strconv.Atoi(strings.TrimSpace(getenv("CRISPY_CLUSTER_PORT"))); err == nil {
		port = v
	}
	fs.IntVar(&cs.Port, "cluster-port", port, "port of the actor remote (gRPC) listener; 0 picks a free one, peers learn it from the membership bucket (env CRISPY_CLUSTER_PORT)")
	ttl := cs.MemberTTL
	if v, err := time.ParseDuration(strings.TrimSpace(getenv("CRISPY_MEMBER_TTL"))); err == nil {
		ttl = v
	}
	fs.DurationVar(&cs.MemberTTL, "member-ttl", ttl, "a crashed member leaves the topology after this long without heartbeats (env CRISPY_MEMBER_TTL)")
	return cs
}

// validate refuses combinations that cannot work, all at once.
func (cs *clusterSettings) validate(env config.Env) error {
	var errs []error
	embeddedCluster := cs.NATSClusterListen != "" || cs.NATSRoutes != ""
	if cs.Name == "" && embeddedCluster {
		errs = append(errs, errors.New("--nats-cluster-listen/--nats-routes need --cluster NAME"))
	}
	if env.NATSURL != "" && (embeddedCluster || cs.NATSListen != "") {
		errs = append(errs, errors.New("--nats-url uses an existing NATS: drop --nats-listen, --nats-cluster-listen and --nats-routes"))
	}
	if cs.Name != "" && env.NATSURL == "" && cs.NATSClusterListen == "" {
		errs = append(errs, errors.New("--cluster needs --nats-url or --nats-cluster-listen (with --nats-routes to the peers)"))
	}
	for _, a := range []struct{ flag, v string }{{"--nats-listen", cs.NATSListen}, {"--nats-cluster-listen", cs.NATSClusterListen}} {
		if a.v == "" {
			continue
		}
		if _, _, err := splitHostPort(a.v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", a.flag, err))
		}
	}
	if cs.MemberTTL < time.Second {
		errs = append(errs, fmt.Errorf("--member-ttl: at least 1s (got %s)", cs.MemberTTL))
	}
	if cs.Port < 0 || cs.Port > 65535 {
		errs = append(errs, fmt.Errorf("--cluster-port: 0–65535 (got %d)", cs.Port))
	}
	return errors.Join(errs...)
}

func splitHostPort(hp string) (string, int, error) {
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, fmt.Errorf("want host:port (got %q): %w", hp, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port in %q", hp)
	}
	return h, port, nil
}

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
func openBackbone(ctx context.Context, env config.Env, cs *clusterSettings, log zerolog.Logger) (_ *backbone, err error) {
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
			if opts.Host, opts.Port, err = splitHostPort(cs.NATSListen); err != nil {
				return nil, err
			}
		}
		if cs.Name != "" {
			opts.ClusterName = cs.Name
			if opts.ClusterHost, opts.ClusterPort, err = splitHostPort(cs.NATSClusterListen); err != nil {
				return nil, err
			}
			opts.Routes = strings.Split(cs.NATSRoutes, ",")
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
		log.Info().Str("clientURL", srv.ClientURL()).Bool("clustered", srv.Clustered()).Int("servers", srv.Servers()).Msg("embedded nats started")
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
	if err := ensureReplicated(joinCtx, b.js, b.replicas); err != nil {
		nc.Close()
		return nil, fmt.Errorf("create replicated streams (replicas %d): %w", b.replicas, err)
	}
	log.Info().Int("replicas", b.replicas).Dur("waited", time.Since(start)).Msg("jetstream cluster ready")
	return b, nil
}

// ensureReplicated creates (or updates) the streams and buckets serve opens, all at once, before
// serve opens them one after the other.
//
// Why: on a cold cluster each replicated create waits for its raft group's first election, ~3 s
// here. One after the other they took ~25 s, and pushed the last ones past start-up's deadline: the
// soak's nodes came up without the LEDGER stream, recording no usage. Concurrently they take about
// one election, and serve's opens are then updates of existing streams, answered at once. (The
// membership bucket is natskv's, created when the member starts.)
func ensureReplicated(ctx context.Context, js jetstream.JetStream, replicas int) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, create := range []func(context.Context) error{
		func(ctx context.Context) error { return actors.EnsureStreams(ctx, js, replicas) },
		func(ctx context.Context) error { _, err := actors.EnsureBudgetBucket(ctx, js, replicas); return err },
		func(ctx context.Context) error {
			_, err := store.OpenLedger(ctx, js, store.LedgerOptions{Replicas: replicas})
			return err
		},
		func(ctx context.Context) error {
			_, err := store.OpenTenantStore(ctx, js, store.TenantStoreOptions{Replicas: replicas})
			return err
		},
		func(ctx context.Context) error {
			_, err := store.OpenTenantKV(ctx, js, store.BucketConfig, store.KVOptions{Replicas: replicas})
			return err
		},
		func(ctx context.Context) error {
			_, err := store.OpenTenantKV(ctx, js, store.BucketCache, store.KVOptions{Replicas: replicas, AllowTTL: true})
			return err
		},
		func(ctx context.Context) error {
			_, err := api.OpenIngestJobs(ctx, js, api.IngestJobsOptions{Replicas: replicas})
			return err
		},
	} {
		g.Go(func() error { return create(ctx) })
	}
	return g.Wait()
}

// startMember starts this node's protoactor member: NATS KV membership in a cluster, the in-memory
// provider alone. The actor remote listens on --cluster-host/--cluster-port either way: a single
// node has that listener too (protoactor always starts it), and a port a firewall or a supervisor
// was told about must be the one it gets.
func startMember(ctx context.Context, env config.Env, cs *clusterSettings, b *backbone, deps actors.Deps, log zerolog.Logger) (*cluster.Node, error) {
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
