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
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/crispy-enigma/crispy/actors"
	"github.com/crispy-enigma/crispy/api"
	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/observe"
	"github.com/crispy-enigma/crispy/rag"
	"github.com/crispy-enigma/crispy/rag/embedded"
	"github.com/crispy-enigma/crispy/rag/milvus"
	"github.com/crispy-enigma/crispy/store"
	"github.com/crispy-enigma/crispy/tenants"
	"github.com/crispy-enigma/crispy/tools"
)

func newServeCmd() *cobra.Command {
	env := config.DefaultEnv()
	var cs *clusterSettings
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a node: the tenant API on --listen and the operator endpoints on --admin-addr",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			env.LoadSecrets(os.Getenv)
			if err := env.Validate(); err != nil {
				return err
			}
			if err := cs.validate(env); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return serve(ctx, env, cs)
		},
	}
	env.BindFlags(cmd.Flags(), os.Getenv)
	cs = bindClusterFlags(cmd.Flags(), os.Getenv)
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
func serve(ctx context.Context, env config.Env, cs *clusterSettings) error {
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

	// Tracing is off (no-op tracers) unless --otlp-endpoint is set. Shut down last, so the spans of
	// the requests drained on shutdown are exported.
	tracing, err := observe.SetupTracing(ctx, observe.TracingOptions{Endpoint: env.OTLPEndpoint, Version: version})
	if err != nil {
		return err
	}
	if tracing != nil {
		log.Info().Str("endpoint", env.OTLPEndpoint).Msg("exporting traces over OTLP/HTTP")
		cleanups = append(cleanups, func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := tracing.Shutdown(sctx); err != nil {
				log.Warn().Err(err).Msg("tracing shutdown")
			}
		})
	}

	// NATS: embedded (JetStream on disk under the data dir) unless a URL is given; with --cluster,
	// routed to the peers and every stream and bucket replicated min(3, servers) times (cluster.go).
	bb, err := openBackbone(ctx, env, cs, log)
	if err != nil {
		return err
	}
	cleanups = append(cleanups, bb.close)
	js, natsHealth, replicas := bb.js, bb.health, bb.replicas

	startCtx, cancelStart := context.WithTimeout(ctx, 30*time.Second)
	defer cancelStart()
	// The tenants bucket is the source of tenant configs once seeded; nodes reload on deploy (deploy.go).
	ix, startTenantWatch, err := watchDeployedTenants(startCtx, log, js, replicas, cs.Name != "", env.NodeName, ix)
	if err != nil {
		return err
	}
	// What outlives start-up and needs tenant configs (the Milvus partition names) reads the index
	// the watcher swaps in, not the one loaded at start.
	var tenantsNow atomic.Pointer[config.Index]
	tenantsNow.Store(ix)
	configKV, err := store.OpenTenantKV(startCtx, js, store.BucketConfig, store.KVOptions{Replicas: replicas})
	if err != nil {
		return err
	}
	chatCache, err := store.OpenTenantKV(startCtx, js, store.BucketCache, store.KVOptions{Replicas: replicas, AllowTTL: true})
	if err != nil {
		return err
	}
	dbs := store.OpenTenantDBs(env.DataDir)
	cleanups = append(cleanups, func() { _ = dbs.Close() })

	if err := actors.EnsureStreams(startCtx, js, replicas); err != nil {
		return err
	}
	if _, err := actors.EnsureBudgetBucket(startCtx, js, replicas); err != nil {
		return err
	}
	placement := actors.NewPlacement()
	node, err := startMember(startCtx, env, cs, bb,
		actors.Deps{JS: js, Replicas: replicas, IdleTimeout: env.SessionIdleTimeout, Logger: log, Placement: placement}, log)
	if err != nil {
		return err
	}
	placement.Bind(node.Cluster())
	cleanups = append(cleanups, func() { node.Stop(true); log.Info().Msg("actor cluster stopped") })
	grains := actors.NewClient(node.Cluster(), 10*time.Second).WithTracer(tracing.Tracer("github.com/crispy-enigma/crispy/actors"))

	ragw, err := openRAG(startCtx, log, env, js, replicas, dbs, func(id string) (*config.TenantConfig, bool) {
		return tenantsNow.Load().ByID(id)
	})
	if err != nil {
		return err
	}
	cleanups = append(cleanups, ragw.close)
	routerOpts, routeWarnings, err := gateway.LoadRouterOptions(env, os.Getenv)
	if err != nil {
		return err
	}
	for _, w := range routeWarnings {
		log.Warn().Msg(w)
	}
	routerOpts.Local = map[string]gateway.ChatModel{gateway.ExtractiveModelID: gateway.NewExtractive(ragw.retriever)}
	routerOpts.Tracer = tracing.Tracer("github.com/crispy-enigma/crispy/gateway")
	router := gateway.NewRouter(routerOpts)
	ragw.deps.Models = router
	ragw.deps.Limiter = grains
	// Without the ledger a node would serve without recording usage, audit or session metadata:
	// that is a failed start, not a degraded mode (the soak once started three nodes that way).
	ledger, err := store.OpenLedger(startCtx, js, store.LedgerOptions{Replicas: replicas})
	if err != nil {
		return err
	}
	auditor := ledgerAuditor{ledger: ledger, log: log}
	// Each node projects LEDGER into its own SQLite files, so each needs its own durable consumer.
	proj := store.NewProjector(js, dbs, store.ProjectorOptions{
		Durable: "projector-" + env.NodeName,
		OnError: func(err error) { log.Warn().Err(err).Msg("ledger projector") },
	})
	if err := proj.Start(startCtx); err != nil {
		return err
	}
	cleanups = append(cleanups, proj.Stop)
	toolReg, err := newToolRegistry(auditor)
	if err != nil {
		return err
	}
	speechRouter, espeak := newSpeechRouter(log, env)
	metrics := observe.NewMetrics()
	srv, err := api.New(api.Deps{
		Env: env, Tenants: ix, Logger: log, Metrics: metrics, Version: version, Tracing: tracing,
		Components: []api.Component{
			{Name: "nats", Check: func(context.Context) (string, error) { return "ok", natsHealth() }},
			{Name: "cluster", Check: membersComponent(node)},
			{Name: "sqlite", Check: func(ctx context.Context) (string, error) { return "ok", dbs.Ping(ctx) }},
			{Name: "vectorStore", Check: ragw.health},
			{Name: "models", Check: func(context.Context) (string, error) { return describeModels(env), nil }},
			{Name: "speech", Check: func(context.Context) (string, error) { return "espeak-ng", espeak.Check() }},
		},
		Chat:   &api.ChatDeps{Sessions: grains, Limiter: grains, Models: router, Budget: grains, Cache: chatCache},
		Tools:  &api.ToolsDeps{Registry: toolReg, Limiter: grains},
		Speech: &api.SpeechDeps{Router: speechRouter, Limiter: grains},
		RAG:    ragw.deps,
		Ledger: ledger,
		Usage:  dbs,
		// Idempotency-Key records live in the TTL-enabled cache bucket.
		Idempotency: chatCache,
		// GET /metrics/* (tenant metrics); alert rules live in the config bucket.
		TenantMetrics: &api.TenantMetricsDeps{Reader: dbs, Alerts: configKV, Prices: router},
	})
	if err != nil {
		return err
	}
	// The model-backed tools call the tenant's chat model metered like /chat (budget, ledger);
	// kb_search and ingest_docs reach the documents through the API's own ingest and search paths.
	completer := api.NewModelCompleter(srv.Metered(router), env)
	late := []tools.Tool{tools.Summarize(completer), tools.ExtractEntities(completer), tools.ClassifyIntent(completer)}
	if kb := srv.KnowledgeBase(); kb != nil {
		late = append(late, tools.KBSearch(kb), tools.IngestDocs(kb))
	}
	for _, tool := range late {
		if err := toolReg.Register(tool); err != nil {
			return fmt.Errorf("register tool %s: %w", tool.Name, err)
		}
	}
	stopTenantWatch, err := startTenantWatch(ctx, func(next *config.Index) {
		tenantsNow.Store(next)
		srv.SetTenants(next)
	})
	if err != nil {
		return err
	}
	cleanups = append(cleanups, stopTenantWatch)
	stopIngestWorker, err := srv.StartIngestWorker(ctx)
	if err != nil {
		return err
	}
	cleanups = append(cleanups, stopIngestWorker)

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

// ragWiring is the RAG side of a node: the vector store (embedded, or Milvus with --milvus-addr),
// the embedder, the ingest job queue, and what /health says about the store.
type ragWiring struct {
	deps      *api.RAGDeps
	retriever *api.Retriever
	health    func(ctx context.Context) (string, error)
	close     func()
}

// openRAG opens the vector store and the job queue. Embeddings are local/hash-embed for every
// tenant: no embedding provider is wired yet, so a tenant whose aiModels.embeddings names another
// model (the original's @cf/baai/bge-m3) is embedded locally too; the API logs that once per tenant.
// Limiter and Models are set by the caller once the grains and the router exist.
func openRAG(ctx context.Context, log zerolog.Logger, env config.Env, js jetstream.JetStream, replicas int, dbs *store.TenantDBs, lookup func(id string) (*config.TenantConfig, bool)) (*ragWiring, error) {
	emb := gateway.NewHashEmbedder(0)
	w := &ragWiring{}
	var vs rag.VectorStore
	if env.MilvusAddr != "" {
		ms, err := milvus.Open(ctx, milvus.Options{
			Address: env.MilvusAddr, Model: emb.ID(), Dimension: emb.Dimension(),
			Namespace: func(tenant string) (string, error) {
				if cfg, ok := lookup(tenant); ok && cfg.VectorizeNamespace != "" {
					return cfg.VectorizeNamespace, nil
				}
				return tenant, nil
			},
		})
		if err != nil {
			return nil, fmt.Errorf("milvus %s: %w", env.MilvusAddr, err)
		}
		vs = ms
		w.health = func(ctx context.Context) (string, error) {
			// Milvus's SDK has no ping here; a TCP connect to its gRPC port is the liveness check.
			d := net.Dialer{Timeout: 2 * time.Second}
			c, err := d.DialContext(ctx, "tcp", env.MilvusAddr)
			if err != nil {
				return "milvus unreachable", err
			}
			_ = c.Close()
			return "milvus (collection " + ms.Collection() + ")", nil
		}
		log.Info().Str("milvus", env.MilvusAddr).Str("collection", ms.Collection()).Msg("vector store: milvus")
	} else {
		es, err := embedded.Open(env.DataDir, embedded.Options{Dimension: emb.Dimension()})
		if err != nil {
			return nil, fmt.Errorf("embedded vector store: %w", err)
		}
		vs = es
		w.health = func(context.Context) (string, error) {
			n := 0
			dirs, _ := os.ReadDir(filepath.Join(env.DataDir, "tenants"))
			for _, d := range dirs {
				if _, err := os.Stat(filepath.Join(env.DataDir, "tenants", d.Name(), "vectors.db")); err == nil {
					n++
				}
			}
			return fmt.Sprintf("embedded (%d tenants)", n), nil
		}
		log.Info().Str("dir", env.DataDir).Msg("vector store: embedded")
	}
	cache, err := store.OpenTenantKV(ctx, js, store.BucketCache, store.KVOptions{Replicas: replicas, AllowTTL: true})
	if err != nil {
		_ = vs.Close()
		return nil, err
	}
	jobs, err := api.OpenIngestJobs(ctx, js, api.IngestJobsOptions{Replicas: replicas})
	if err != nil {
		_ = vs.Close()
		return nil, err
	}
	ledger, err := store.OpenLedger(ctx, js, store.LedgerOptions{Replicas: replicas})
	if err != nil {
		_ = vs.Close()
		return nil, err
	}
	w.retriever = api.NewRetriever(vs, emb, nil)
	w.deps = &api.RAGDeps{Store: vs, Embedder: emb, Catalog: dbs, Ledger: ledger, Cache: cache, Jobs: jobs}
	w.close = func() { _ = vs.Close() }
	return w, nil
}
