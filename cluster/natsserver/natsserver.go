// Package natsserver runs the embedded NATS server with JetStream that a single node uses when no
// external NATS URL is configured.
package natsserver

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Options configure the embedded server.
type Options struct {
	// StoreDir is where JetStream keeps its files; it survives restarts.
	StoreDir string
	// Host and Port to listen on for clients. Port 0 means no client listener: only in-process
	// connections (the default for a single node). Port -1 picks a random free port (tests).
	Host string
	Port int
	// ServerName names the server (defaults to a generated one).
	ServerName string
}

// Server is a running embedded NATS server.
type Server struct {
	ns *server.Server
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
		so.DontListen = true
	}
	if so.Host == "" {
		so.Host = "127.0.0.1"
	}
	ns, err := server.NewServer(so)
	if err != nil {
		return nil, fmt.Errorf("natsserver: new server: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("natsserver: not ready for connections after 10s")
	}
	return &Server{ns: ns}, nil
}

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
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}
