package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/crispy-enigma/crispy/actors"
	"github.com/crispy-enigma/crispy/api"
	"github.com/crispy-enigma/crispy/cluster"
	"github.com/crispy-enigma/crispy/cluster/natsserver"
	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/observe"
	"github.com/crispy-enigma/crispy/store"
	"github.com/crispy-enigma/crispy/tenants"
)

func newServeCmd() *cobra.Command {
	env := config.DefaultEnv()
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a node: the tenant API on --listen and the operator endpoints on --admin-addr",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			env.LoadSecrets(os.Getenv)
			if err := env.Validate(); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return serve(ctx, env)
		},
	}
	env.BindFlags(cmd.Flags(), os.Getenv)
	return cmd
}

// loadTenants reads the tenants dir, or the embedded defaults when the dir does not exist.
func loadTenants(log zerolog.Logger, dir string) (*config.Index, error) {
	var (
		cfgs     []*config.TenantConfig
		warnings []string
		err      error
	)
	if _, statErr := os.Stat(dir); errors.Is(statErr, fs.ErrNotExist) {
		log.Warn().Str("dir", dir).Msg("tenants dir not found: using the built-in example tenants")
		cfgs, warnings, err = config.LoadTenants(tenants.Defaults())
	} else {
		cfgs, warnings, err = config.LoadTenantsDir(dir)
	}
	if err != nil {
		return nil, fmt.Errorf("load tenants: %w", err)
	}
	ix, err := config.NewIndex(cfgs)
	if err != nil {
		return nil, fmt.Errorf("index tenants: %w", err)
	}
	for _, w := range append(warnings, ix.Warnings()...) {
		log.Warn().Msg(w)
	}
	log.Info().Int("tenants", ix.Len()).Msg("tenants loaded")
	return ix, nil
}

// serve runs one node until ctx ends, then drains: HTTP first (in-flight requests and streams
// finish), then the actor cluster, then NATS, then the databases.
func serve(ctx context.Context, env config.Env) error {
	log, err := observe.NewLogger(observe.LogOptions{Level: env.LogLevel, Format: env.LogFormat, Node: env.NodeName})
	if err != nil {
		return err
	}
	log.Info().Str("version", version).Interface("settings", env.Redacted()).Msg("starting")
	for _, w := range env.Warnings() {
		log.Warn().Msg(w)
	}
	ix, err := loadTenants(log, env.TenantsDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(env.DataDir, 0o755); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}

	var cleanups []func()
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}()

	// NATS: embedded (JetStream on disk under the data dir) unless a URL is given.
	var nc *nats.Conn
	var natsHealth func() error
	closed := make(chan struct{})
	onClosed := nats.ClosedHandler(func(*nats.Conn) { close(closed) })
	if env.NATSURL == "" {
		srv, err := natsserver.Start(natsserver.Options{StoreDir: filepath.Join(env.DataDir, "nats"), ServerName: env.NodeName})
		if err != nil {
			return err
		}
		cleanups = append(cleanups, func() { srv.Shutdown(); log.Info().Msg("nats stopped") })
		if nc, err = srv.Connect("crispy-"+env.NodeName, onClosed); err != nil {
			return err
		}
		natsHealth = srv.Healthy
	} else {
		if nc, err = nats.Connect(env.NATSURL, nats.Name("crispy-"+env.NodeName), nats.MaxReconnects(-1), onClosed); err != nil {
			return fmt.Errorf("connect nats %s: %w", env.NATSURL, err)
		}
		natsHealth = func() error {
			if !nc.IsConnected() {
				return errors.New("not connected")
			}
			return nil
		}
	}
	cleanups = append(cleanups, func() {
		// Drain is asynchronous: wait for it, so the embedded server is not shut down under it.
		if err := nc.Drain(); err == nil {
			select {
			case <-closed:
			case <-time.After(5 * time.Second):
				nc.Close()
			}
		}
	})
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}

	startCtx, cancelStart := context.WithTimeout(ctx, 30*time.Second)
	defer cancelStart()
	if _, err := store.OpenTenantKV(startCtx, js, "config", store.KVOptions{Replicas: 1}); err != nil {
		return err
	}
	if _, err := store.OpenTenantKV(startCtx, js, "cache", store.KVOptions{Replicas: 1, AllowTTL: true}); err != nil {
		return err
	}
	dbs := store.OpenTenantDBs(env.DataDir)
	cleanups = append(cleanups, func() { _ = dbs.Close() })

	if err := actors.EnsureStreams(startCtx, js, 1); err != nil {
		return err
	}
	node, err := cluster.Start(startCtx, cluster.Options{
		ClusterName: "crispy", NodeName: env.NodeName, Host: "127.0.0.1",
		Kinds:  actors.Kinds(actors.Deps{JS: js, Replicas: 1, IdleTimeout: env.SessionIdleTimeout, Logger: log}),
		Logger: log,
	})
	if err != nil {
		return err
	}
	cleanups = append(cleanups, func() { node.Stop(true); log.Info().Msg("actor cluster stopped") })
	grains := actors.NewClient(node.Cluster(), 10*time.Second)

	router := gateway.NewRouter(gateway.RouterOptionsFromEnv(env))
	var auditor api.Auditor = logAuditor{log: log}
	if ledger, err := store.OpenLedger(startCtx, js, store.LedgerOptions{Replicas: 1}); err != nil {
		log.Warn().Err(err).Msg("tool audit: ledger unavailable, audit records go to the log")
	} else {
		auditor = ledgerAuditor{ledger: ledger, log: log}
	}
	toolReg, err := newToolRegistry(env, router, auditor)
	if err != nil {
		return err
	}
	speechRouter, espeak := newSpeechRouter(log, env)
	metrics := observe.NewMetrics()
	srv, err := api.New(api.Deps{
		Env: env, Tenants: ix, Logger: log, Metrics: metrics, Version: version,
		Components: []api.Component{
			{Name: "nats", Check: func(context.Context) (string, error) { return "ok", natsHealth() }},
			{Name: "sqlite", Check: func(ctx context.Context) (string, error) { return "ok", dbs.Ping(ctx) }},
			{Name: "vectorStore", Check: func(context.Context) (string, error) { return "embedded (not configured yet)", nil }},
			{Name: "models", Check: func(context.Context) (string, error) { return describeModels(env), nil }},
			{Name: "speech", Check: func(context.Context) (string, error) { return "espeak-ng", espeak.Check() }},
		},
		Chat:   &api.ChatDeps{Sessions: grains, Limiter: grains, Models: router},
		Tools:  &api.ToolsDeps{Registry: toolReg, Limiter: grains},
		Speech: &api.SpeechDeps{Router: speechRouter, Limiter: grains},
	})
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", env.ListenAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", env.ListenAddr, err)
	}
	adminLn, err := net.Listen("tcp", env.AdminAddr)
	if err != nil {
		_ = ln.Close()
		return fmt.Errorf("listen admin %s: %w", env.AdminAddr, err)
	}
	admin := &http.Server{Handler: api.AdminHandler(metrics, srv.Ready, env.AdminToken), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	go func() {
		if err := admin.Serve(adminLn); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	log.Info().Str("listen", ln.Addr().String()).Str("admin", adminLn.Addr().String()).Msg("serving")

	select {
	case <-ctx.Done():
	case err := <-errc:
		if err != nil {
			log.Error().Err(err).Msg("server failed")
		}
	}
	log.Info().Msg("shutting down: draining requests")
	drainCtx, cancel := context.WithTimeout(context.Background(), env.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(drainCtx); err != nil {
		log.Warn().Err(err).Msg("drain incomplete")
	}
	_ = admin.Shutdown(drainCtx)
	log.Info().Msg("http stopped")
	return nil
}

// describeModels names the model backends for /health: the built-in local models, which are not
// language models, and the configured OpenAI-compatible provider (its key is never shown).
func describeModels(env config.Env) string {
	d := "local/extractive (built-in, not an LLM)"
	if env.OpenAIBaseURL != "" {
		d += "; openai-compatible at " + env.OpenAIBaseURL
	}
	if env.CloudflareToken != "" {
		d += "; @cf/ models via Workers AI"
	}
	return d
}
