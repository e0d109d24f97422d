// Package natsserver runs the embedded NATS server with JetStream that a single node uses when no
// external NATS URL is configured.
package natsserver

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Options configure the embedded server.
type Options struct {
	// StoreDir is where JetStream keeps its files; it survives restarts.
	StoreDir string
	// Host and Port to listen on for clients. Port 0 means no client listener: only in-process
	// connections (the default for a single node); a clustered server still gets one on a random
	// port of Host, because NATS starts routing only once its client listener is up. Port -1 picks a
	// random free port (tests).
	Host string
	Port int
	// ServerName names the server (defaults to a generated one). In a NATS cluster with JetStream it
	// must be unique per server and stable across restarts: JetStream identifies its peers by it.
	ServerName string

	// ClusterName, ClusterHost and ClusterPort configure the route listener that joins this server to
	// peers; JetStream then runs clustered (replicated streams, a meta leader elected by the peers).
	// An empty ClusterName means a standalone server. Every server of one cluster has the same name.
	ClusterName string
	ClusterHost string
	ClusterPort int
	// Routes are the peers' route URLs (nats://host:port of their cluster listeners). Listing this
	// server's own address is harmless: NATS detects and drops the route to itself, so every node of a
	// cluster can be given the same list.
	Routes []string
	// Raft is the timing of JetStream's raft groups in a clustered server; the zero value means
	// ScaledRaftTiming(DefaultElectionTimeout). It is process-wide (see RaftTiming): every clustered
	// server of one process must use the same. A standalone server has no raft groups and ignores it.
	Raft RaftTiming
}

// Server is a running embedded NATS server.
type Server struct {
	ns        *server.Server
	routes    []*url.URL
	clustered bool
	raft      RaftTiming
	stopOnce  sync.Once
}

// Start starts the server and waits until it accepts connections.
func Start(opts Options) (*Server, error) {
	if opts.StoreDir == "" {
		return nil, errors.New("natsserver: StoreDir is required")
	}
	so := &server.Options{
		ServerName: opts.ServerName,
		Host:       opts.Host,
		Port:       opts.Port,
		JetStream:  true,
		StoreDir:   opts.StoreDir,
		NoSigs:     true,
		NoLog:      true,
	}
	if opts.Port == 0 {
		if opts.ClusterName == "" {
			so.DontListen = true
		} else {
			// Routing waits for the client listener to be up, so a clustered server needs one: a
			// random loopback port when none is asked for.
			so.Port = -1
		}
	}
	if so.Host == "" {
		so.Host = "127.0.0.1"
	}
	if opts.ClusterName != "" {
		if opts.ServerName == "" {
			return nil, errors.New("natsserver: a clustered server needs a ServerName unique in the cluster")
		}
		routes, err := parseRoutes(opts.Routes)
		if err != nil {
			return nil, err
		}
		so.Cluster = server.ClusterOpts{Name: opts.ClusterName, Host: opts.ClusterHost, Port: opts.ClusterPort}
		if so.Cluster.Host == "" {
			so.Cluster.Host = "127.0.0.1"
		}
		so.Routes = routes
		// Lame duck mode (Shutdown) closes client connections still open over this long, after a
		// grace period; the node's own connection is drained before, so this bounds only how long
		// external clients (a CLI connected to the client port) delay a stop.
		so.LameDuckDuration = 3 * time.Second
		so.LameDuckGracePeriod = 500 * time.Millisecond
	}
	clustered := opts.ClusterName != ""
	raft := opts.Raft
	if raft == (RaftTiming{}) {
		raft = ScaledRaftTiming(DefaultElectionTimeout)
	}
	if clustered {
		// Before the server exists: raft groups read the timing from their first moment.
		if err := processRaft.acquire(raft); err != nil {
			return nil, err
		}
	}
	ns, err := server.NewServer(so)
	if err != nil {
		if clustered {
			processRaft.release()
		}
		return nil, fmt.Errorf("natsserver: new server: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		ns.WaitForShutdown()
		if clustered {
			processRaft.release()
		}
		return nil, errors.New("natsserver: not ready for connections after 10s")
	}
	return &Server{ns: ns, routes: so.Routes, clustered: clustered, raft: raft}, nil
}

// Raft is the raft timing the server runs with; meaningful only for a clustered server.
func (s *Server) Raft() RaftTiming { return s.raft }

// parseRoutes turns route URLs into what the server options take.
func parseRoutes(raw []string) ([]*url.URL, error) {
	out := make([]*url.URL, 0, len(raw))
	for _, r := range raw {
		r = strings.TrimSpace(r)
		if r == "" {
			continue
		}
		if !strings.Contains(r, "://") {
			r = "nats://" + r
		}
		u, err := url.Parse(r)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("natsserver: route %q: want nats://host:port", r)
		}
		out = append(out, u)
	}
	return out, nil
}

// Servers is how many servers this one expects in its cluster: itself plus its distinct routes
// (excluding its own cluster address). It is what replica counts are derived from before the
// routes are up.
func (s *Server) Servers() int {
	n := 1
	self := ""
	if a := s.ns.ClusterAddr(); a != nil {
		self = a.String()
	}
	seen := map[string]bool{}
	for _, u := range s.routes {
		if u.Host == self || seen[u.Host] {
			continue
		}
		seen[u.Host] = true
		n++
	}
	return n
}

// Clustered reports whether the server runs with routes (JetStream clustered).
func (s *Server) Clustered() bool { return s.clustered }

// Connect returns a client connection to the server: in-process when there is no listener.
func (s *Server) Connect(name string, extra ...nats.Option) (*nats.Conn, error) {
	opts := append([]nats.Option{nats.Name(name), nats.InProcessServer(s.ns), nats.MaxReconnects(-1)}, extra...)
	nc, err := nats.Connect("", opts...)
	if err != nil {
		return nil, fmt.Errorf("natsserver: connect: %w", err)
	}
	return nc, nil
}

// ClientURL is the URL clients in other processes use; empty when the server does not listen.
func (s *Server) ClientURL() string {
	if s.ns.Addr() == nil {
		return ""
	}
	return s.ns.ClientURL()
}

// Healthy reports whether the server and its JetStream are running.
func (s *Server) Healthy() error {
	if !s.ns.Running() {
		return errors.New("nats server not running")
	}
	if !s.ns.JetStreamEnabled() {
		return errors.New("jetstream not enabled")
	}
	return nil
}

// Shutdown stops the server and waits for it, flushing JetStream to disk.
//
// A clustered server first hands off the raft leaderships it holds (lame duck mode): it steps down
// as leader of every stream, consumer and the meta group, becomes an observer so it is not elected
// again, and waits a second for the new leaders before stopping. A plain Shutdown also steps down
// but stops at once, so requests in flight to it go unanswered until the peers elect new leaders;
// the soak saw publishes on the surviving nodes stall for seconds at every restart.
//
// Only the first call has an effect; later ones return at once.
func (s *Server) Shutdown() {
	s.stopOnce.Do(func() {
		if s.clustered {
			s.ns.LameDuckShutdown()
		} else {
			s.ns.Shutdown()
		}
		// WaitForShutdown returns once the server's goroutines, raft groups included, have ended:
		// only then may another server of this process change the raft timing.
		s.ns.WaitForShutdown()
		if s.clustered {
			processRaft.release()
		}
	})
}
