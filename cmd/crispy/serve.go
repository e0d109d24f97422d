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
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/crispy-enigma/crispy/actors"
	"github.com/crispy-enigma/crispy/api"
	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/console"
	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/internal/gctune"
	"github.com/crispy-enigma/crispy/metering"
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
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a node: the tenant API on --listen and the operator endpoints on --admin-addr",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			env.LoadSecrets(config.Getenv)
			if err := env.Validate(); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return serve(ctx, env)
		},
	}
	env.BindFlags(cmd.Flags(), config.Getenv)
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

	if env.GCHeadroom > 0 {
		if env.GOGC != "" {
			log.Info().Str("GOGC", env.GOGC).Msg("GOGC is set: --gc-headroom is not applied")
		} else {
			cleanups = append(cleanups, gctune.Start(uint64(env.GCHeadroom)).Stop)
		}
	}

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

	// 1. Backbone: NATS (embedded, JetStream on disk under the data dir, unless a URL is given;
	// with --cluster routed to the peers, every stream and bucket replicated min(3, servers) times),
	// then every stream and bucket, opened once; the SQLite read models; the vector indexes.
	bb, err := openBackbone(ctx, env, log)
	if err != nil {
		return err
	}
	cleanups = append(cleanups, bb.close)
	startCtx, cancelStart := context.WithTimeout(ctx, 30*time.Second)
	defer cancelStart()
	// On a cold cluster the replicated creates wait for their raft groups' first elections: they
	// get the join deadline, not start-up's.
	openCtx, cancelOpen := context.WithTimeout(ctx, joinTimeout)
	defer cancelOpen()
	res, err := store.Open(openCtx, bb.js, store.OpenOptions{Replicas: bb.replicas, Also: []func(context.Context) error{
		func(ctx context.Context) error { return actors.EnsureStreams(ctx, bb.js, bb.replicas) },
		func(ctx context.Context) error {
			_, err := actors.EnsureBudgetBucket(ctx, bb.js, bb.replicas)
			return err
		},
	}})
	if err != nil {
		return err
	}
	// The tenants bucket is the source of tenant configs once seeded; nodes reload on deploy
	// (deploy.go). Services that outlive a request read the configs in force through live.
	ix, startTenantWatch, err := watchDeployedTenants(startCtx, log, res.Tenants, env.Cluster.Name != "", env.NodeName, ix)
	if err != nil {
		return err
	}
	live := config.NewLive(ix)
	dbs := store.OpenTenantDBs(env.DataDir)
	cleanups = append(cleanups, func() { _ = dbs.Close() })
	// Each node projects LEDGER into its own SQLite files, so each needs its own durable consumer.
	proj := store.NewProjector(bb.js, dbs, store.ProjectorOptions{
		Durable: "projector-" + env.NodeName,
		OnError: func(err error) { log.Warn().Err(err).Msg("ledger projector") },
	})
	if err := proj.Start(startCtx); err != nil {
		return err
	}
	cleanups = append(cleanups, proj.Stop)
	indexes, vsHealth := openIndexes(log, env, live)
	cleanups = append(cleanups, func() { _ = indexes.Close() })

	// 2. Grains: this node's cluster member and the client every caller asks grains through.
	placement, afterWork := actors.NewPlacement(), &actors.AfterWork{}
	node, err := startMember(startCtx, env, bb, actors.Deps{JS: bb.js, Replicas: bb.replicas,
		IdleTimeout: env.SessionIdleTimeout, Logger: log, Placement: placement, AfterWork: afterWork}, log)
	if err != nil {
		return err
	}
	placement.Bind(node.Cluster())
	cleanups = append(cleanups, func() {
		node.Stop(true)
		// Retention removals the sessions started still write to JetStream, which closes after this.
		wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := afterWork.Wait(wctx); err != nil {
			log.Warn().Err(err).Msg("actor cluster stopped before its last retention removals ended")
		}
		log.Info().Msg("actor cluster stopped")
	})
	grains := actors.NewClient(node.Cluster(), 10*time.Second).WithTracer(tracing.Tracer("github.com/crispy-enigma/crispy/actors"))

	// 3. Metering: rate limits, model rules, budgets, the response cache, ledger events, metrics.
	metrics := observe.NewMetrics()
	meter := metering.New(metering.Options{
		Env: env, Limiter: grains, Budget: grains, Cache: res.Cache, Ledger: res.Ledger, Metrics: metrics, Logger: log,
		BudgetLease: budgetLease(env), RateLease: rateLease(env),
	})

	// 4. Router: every model call goes through the Meter, embeddings of non-local models included.
	// Each tenant's documents and queries are embedded with its aiModels.embeddings as this router
	// serves it (local/minilm when it cannot), in that model's index; local/extractive answers from
	// the tenant's documents through a retriever over the same index.
	routerOpts, routeWarnings, err := gateway.LoadRouterOptions(env, config.Getenv)
	if err != nil {
		return err
	}
	for _, w := range routeWarnings {
		log.Warn().Msg(w)
	}
	routerOpts.Tracer = tracing.Tracer("github.com/crispy-enigma/crispy/gateway")
	routerOpts.Meter = meter
	embedders := gateway.NewRouter(routerOpts)
	spaces, err := rag.NewSpaces(rag.SpacesOptions{
		Indexes: indexes, Actives: rag.NewActiveIndexes(res.RAGIndex, store.ErrNotFound), Embedders: embedders,
		// Data dirs from before one index per model hold local/hash-embed vectors: they serve until
		// re-embedded.
		Legacy: rag.IndexKey{Model: gateway.HashEmbedID, Dim: gateway.DefaultHashEmbedDimension},
		Logger: log,
	})
	if err != nil {
		return err
	}
	router := embedders.WithLocal(map[string]gateway.ChatModel{
		gateway.ExtractiveModelID: gateway.NewExtractive(rag.NewSpacesRetriever(spaces, live)),
	})

	// 5. Retrieval: ingest, delete, search (cache, rewrite through the metered router), jobs, and
	// the re-embedding of a tenant whose embedding model changed.
	retrieval, err := rag.NewService(rag.ServiceOptions{
		Spaces: spaces, Catalog: dbs, Tenants: live, Ledger: res.Ledger, Cache: res.Cache,
		Models: router, Select: meter, Jobs: res.Jobs, Logger: log,
		Tracer: tracing.Tracer("github.com/crispy-enigma/crispy/rag"),
	})
	if err != nil {
		return err
	}

	// 6. Tools, all registered at once: the model-backed ones through the metered router, kb_search
	// and ingest_docs through the retrieval service, every execution audited in the ledger.
	toolReg, err := newToolRegistry(ledgerAuditor{ledger: res.Ledger, log: log}, tools.Deps{
		Completer: meter.Completer(router), Searcher: retrieval, Ingester: retrieval,
	})
	if err != nil {
		return err
	}
	speechRouter, espeak := newSpeechRouter(log, env)

	// 7. HTTP.
	srv, err := api.New(api.Deps{
		Env: env, Tenants: ix, Logger: log, Metrics: metrics, Version: version, Tracing: tracing,
		Components: []api.Component{
			{Name: "nats", Check: func(context.Context) (string, error) { return "ok", bb.health() }},
			{Name: "cluster", Check: membersComponent(node), Internal: true},
			{Name: "sqlite", Check: func(ctx context.Context) (string, error) { return "ok", dbs.Ping(ctx) }},
			{Name: "vectorStore", Check: vsHealth},
			{Name: "models", Check: func(context.Context) (string, error) { return describeModels(env), nil }},
			{Name: "speech", Check: func(context.Context) (string, error) { return "espeak-ng", espeak.Check() }, Optional: true},
		},
		Meter:  meter,
		Chat:   &api.ChatDeps{Sessions: grains, Models: router},
		Tools:  &api.ToolsDeps{Registry: toolReg},
		Speech: &api.SpeechDeps{Router: speechRouter},
		RAG:    &api.RAGDeps{Service: retrieval},
		Usage:  dbs,
		// The OpenAI-compatible API: its chat calls go through the same metered router as /chat,
		// its Responses API conversations live in the same ChatSession grains.
		OpenAI: &api.OpenAIDeps{Models: router, Sessions: grains},
		// Idempotency-Key records live in the TTL-enabled cache bucket.
		Idempotency: res.Cache,
		// GET /metrics/* (tenant metrics); alert rules live in the config bucket.
		TenantMetrics: &api.TenantMetricsDeps{Reader: dbs, Alerts: res.Config, Prices: router},
		Console:       console.TenantHandler(),
	})
	if err != nil {
		return err
	}
	stopTenantWatch, err := startTenantWatch(ctx, func(next *config.Index) {
		live.Store(next)
		srv.SetTenants(next)
	})
	if err != nil {
		return err
	}
	cleanups = append(cleanups, stopTenantWatch)
	stopIngestWorker, err := retrieval.StartWorker(ctx)
	if err != nil {
		return err
	}
	cleanups = append(cleanups, stopIngestWorker)

	// The operator endpoints carry the console's operator view.
	operator, stopOperator, err := operatorConsole(env, bb, node, metrics)
	if err != nil {
		return err
	}
	cleanups = append(cleanups, stopOperator)
	ln, err := net.Listen("tcp", env.ListenAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", env.ListenAddr, err)
	}
	adminLn, err := net.Listen("tcp", env.AdminAddr)
	if err != nil {
		_ = ln.Close()
		return fmt.Errorf("listen admin %s: %w", env.AdminAddr, err)
	}
	// The operator endpoints, and the re-embedding routes (crispy reindex) beside them.
	adminMux := http.NewServeMux()
	adminMux.Handle("/admin/", api.ReindexHandler(retrieval, env.AdminToken))
	adminMux.Handle("/", api.AdminHandler(metrics, srv.Ready, env.AdminToken, operator))
	admin := &http.Server{Handler: adminMux, ReadHeaderTimeout: 10 * time.Second}
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

// openIndexes returns the vector indexes, one per (embedding model, dimension), embedded or in
// Milvus with --milvus-addr, opened on first use, and how /health reports them.
func openIndexes(log zerolog.Logger, env config.Env, tenants rag.Tenants) (*rag.LazyIndexes, func(ctx context.Context) (string, error)) {
	opened := func(idx *rag.LazyIndexes) string {
		keys := idx.Opened()
		names := make([]string, len(keys))
		for i, k := range keys {
			names[i] = fmt.Sprintf("%s/%d", k.Model, k.Dim)
		}
		sort.Strings(names)
		if len(names) == 0 {
			return "no index open yet"
		}
		return "indexes " + strings.Join(names, ", ")
	}
	if env.MilvusAddr != "" {
		idx := milvus.NewIndexes(milvus.Options{
			Address: env.MilvusAddr,
			Namespace: func(tenant string) (string, error) {
				if cfg, ok := tenants.ByID(tenant); ok && cfg.VectorizeNamespace != "" {
					return cfg.VectorizeNamespace, nil
				}
				return tenant, nil
			},
		})
		log.Info().Str("milvus", env.MilvusAddr).Msg("vector store: milvus, a collection per embedding model")
		return idx, func(ctx context.Context) (string, error) {
			// Milvus's SDK has no ping here; a TCP connect to its gRPC port is the liveness check.
			d := net.Dialer{Timeout: 2 * time.Second}
			c, err := d.DialContext(ctx, "tcp", env.MilvusAddr)
			if err != nil {
				return "milvus unreachable", err
			}
			_ = c.Close()
			return "milvus (" + opened(idx) + ")", nil
		}
	}
	idx := embedded.NewIndexes(env.DataDir, embedded.IndexesOptions{
		LegacyModel: gateway.HashEmbedID, LegacyDimension: gateway.DefaultHashEmbedDimension,
	})
	log.Info().Str("dir", env.DataDir).Msg("vector store: embedded, a file per tenant and embedding model")
	return idx, func(context.Context) (string, error) {
		n := 0
		dirs, _ := os.ReadDir(filepath.Join(env.DataDir, "tenants"))
		for _, d := range dirs {
			if _, err := os.Stat(filepath.Join(env.DataDir, "tenants", d.Name())); err == nil {
				n++
			}
		}
		return fmt.Sprintf("embedded (%d tenants; %s)", n, opened(idx)), nil
	}
}

// rateLease is the metering's rate-limit leases as configured (--rate-lease; 0: off).
func rateLease(env config.Env) metering.RateLeaseOptions {
	l := metering.DefaultRateLease
	l.Life = env.RateLeaseLife
	return l
}

// budgetLease is the metering's budget leases as configured (--budget-lease-calls; 0: off).
func budgetLease(env config.Env) metering.LeaseOptions {
	l := metering.DefaultBudgetLease
	l.Calls = int64(env.BudgetLeaseCalls)
	return l
}
