package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/rs/zerolog"

	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/observe"
	"github.com/crispy-enigma/crispy/store"
)

// Component is a dependency whose state /health and /readyz report.
type Component struct {
	Name  string
	Check func(ctx context.Context) (state string, err error)
	// Internal marks a state that describes the deployment (the cluster's member addresses): the
	// operator's /readyz shows it, a tenant's /health only "ok" or "down".
	Internal bool
	// Optional marks an engine the node serves requests without (espeak-ng): when its check fails
	// it is "degraded" in /health and the node stays ready.
	Optional bool
}

// Deps are what the server needs; cmd/crispy wires them.
type Deps struct {
	Env        config.Env
	Tenants    *config.Index
	Logger     zerolog.Logger
	Metrics    *observe.Metrics
	Version    string
	Components []Component
	Now        func() time.Time

	// Meter rate-limits requests and records their ledger events (metering.Meter); required with
	// Chat, Tools, Speech or RAG. Model calls are metered by the Router it is wired into.
	Meter Metering

	Chat   *ChatDeps   // nil: chat routes answer 503 unavailable
	Tools  *ToolsDeps  // nil: /schema/tools and /tools/execute are not registered; tool_name in /chat is refused
	Speech *SpeechDeps // nil: /tts and /tts/voices are not registered
	RAG    *RAGDeps    // nil: /ingest, /documents, /search and /ingest/jobs are not registered

	// Usage backs GET /usage (usage.go); nil: the route is not registered.
	Usage UsageReader
	// TenantMetrics backs GET /metrics/* (metrics.go); nil: those routes are not registered.
	TenantMetrics *TenantMetricsDeps
	// OpenAI serves the OpenAI-compatible API (v1.go) under /v1; nil: not registered.
	OpenAI *OpenAIDeps
	// Idempotency keeps Idempotency-Key records (idempotency.go; the TTL-enabled cache bucket);
	// nil ignores the header.
	Idempotency IdempotencyStore
	// Tracing records one span per HTTP request (observe.SetupTracing); nil records none. The grain
	// client, the model router and the retrieval service are given their tracers by the caller
	// (actors.Client.WithTracer, gateway.RouterOptions.Tracer, rag.ServiceOptions.Tracer); their
	// spans are children of the request's through the request context.
	Tracing *observe.Tracing
	// Console serves the web console's static pages under /console/ (console.TenantHandler), before
	// tenant resolution: the pages carry no data and call the API with the tenant's key like any client.
	Console http.Handler
}

// Server is the tenant-facing HTTP server.
type Server struct {
	env       config.Env
	tenants   atomic.Pointer[config.Index]
	log       zerolog.Logger
	metrics   *observe.Metrics
	version   string
	comps     []Component
	now       func() time.Time
	started   time.Time
	echo      *echo.Echo
	chat      *ChatDeps
	tools     *ToolsDeps
	speech    *SpeechDeps
	rag       *RAGDeps
	inflight  atomic.Int64 // requests being served, reported when shutdown runs out of time
	compCache componentCache
	embCache  embeddingCache // health.go
	meter     Metering
	usage     UsageReader      // usage.go
	analytics *store.Analytics // metrics.go; nil: no /metrics/* routes
	idem      IdempotencyStore // idempotency.go
	openai    *OpenAIDeps      // v1.go
	tracer    observe.Tracer   // HTTP request spans
	clients   *ClientAddrs     // clientaddr.go: the client behind trusted proxies
	slots     *TenantSlots     // limits.go: each tenant's requests in flight
}

// New builds the server and its routes.
func New(d Deps) (*Server, error) {
	if d.Tenants == nil {
		return nil, errors.New("api: Deps.Tenants is required")
	}
	if d.Metrics == nil {
		d.Metrics = observe.NewMetrics()
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if (d.Tools != nil && d.Tools.Registry == nil) || (d.Speech != nil && d.Speech.Router == nil) {
		return nil, errors.New("api: Deps.Tools and Deps.Speech need their service")
	}
	if d.Meter == nil && (d.Chat != nil || d.Tools != nil || d.Speech != nil || d.RAG != nil) {
		return nil, errors.New("api: Deps.Meter is required with Chat, Tools, Speech or RAG (it rate-limits them)")
	}
	s := &Server{
		env: d.Env, log: d.Logger, metrics: d.Metrics, version: d.Version, comps: d.Components,
		now: d.Now, started: d.Now(), chat: d.Chat,
		tracer:  d.Tracing.Tracer("github.com/crispy-enigma/crispy/api"),
		clients: NewClientAddrs(d.Env.ParsedTrustedProxies()),
		slots:   NewTenantSlots(d.Env.MaxInflightPerTenant),
	}
	s.tools, s.speech, s.idem, s.openai = d.Tools, d.Speech, d.Idempotency, d.OpenAI
	s.meter, s.usage = d.Meter, d.Usage
	if d.TenantMetrics != nil && d.TenantMetrics.Reader == nil {
		return nil, errors.New("api: Deps.TenantMetrics needs a Reader")
	}
	if d.TenantMetrics != nil {
		s.analytics = newAnalytics(d.TenantMetrics, d.Now)
	}
	s.tenants.Store(d.Tenants)
	if d.RAG != nil {
		if d.RAG.Service == nil {
			return nil, errors.New("api: Deps.RAG needs the retrieval Service")
		}
		r := *d.RAG
		if r.MaxUploadSize <= 0 {
			r.MaxUploadSize = DefaultMaxUploadSize
		}
		s.rag = &r
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleError
	if d.Console != nil {
		e.Pre(echo.WrapMiddleware(consoleFirst(d.Console)))
	}
	// cors.go: preflights are answered before authentication; openapi.go: GET /openapi.json needs
	// no tenant; idempotency.go: replays after authentication.
	e.Use(s.observeRequest, s.cors, withPublicRoutes(e, s.resolveTenant), s.idempotency)
	s.routes(e)
	s.echo = e
	s.setMetricLabels(d.Tenants)
	return s, nil
}

// SetTenants swaps the tenant index atomically; requests in flight keep the config they started with.
func (s *Server) SetTenants(ix *config.Index) {
	s.tenants.Store(ix)
	s.setMetricLabels(ix)
}

// Handler returns the HTTP handler (for tests and for embedding in another server).
func (s *Server) Handler() http.Handler { return s.echo }

func (s *Server) routes(e *echo.Echo) {
	e.GET("/health", s.health)
	e.HEAD("/health", s.health)
	if s.chat != nil {
		s.chatRoutes(e)
	}
	if s.tools != nil {
		s.toolRoutes(e)
	}
	if s.speech != nil {
		s.ttsRoutes(e)
	}
	if s.usage != nil {
		e.GET("/usage", s.getUsage) // usage.go
	}
	if s.analytics != nil {
		s.metricsRoutes(e) // metrics.go
	}
	if s.rag != nil {
		s.ragRoutes(e)
	}
	if s.openai != nil {
		s.v1Routes(e) // v1.go
	}
}

// Serve accepts connections on ln until Shutdown.
//
// A client address may hold at most Env.MaxConnsPerClient connections (trusted proxies exempt):
// connections past that are closed when accepted, so a client holding many slow connections costs
// no goroutines (limits.go). Headers must arrive within ReadHeaderTimeout and bodies at a minimum
// rate (resolveTenant); there is no ReadTimeout or WriteTimeout, which would cut long SSE streams.
func (s *Server) Serve(ln net.Listener) error {
	ln = LimitConnsPerClient(ln, s.env.MaxConnsPerClient, s.env.ParsedTrustedProxies())
	srv := &http.Server{
		Handler:           s.echo,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    2 * MaxHeaderBytes, // middleware.go answers 431 with the envelope above MaxHeaderBytes
	}
	s.echo.Server = srv
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting requests and waits for those in flight (streams included) until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	if err := s.echo.Shutdown(ctx); err != nil {
		return fmt.Errorf("api: shutdown with %d requests in flight: %w", s.inflight.Load(), err)
	}
	if s.meter != nil {
		if err := s.meter.Wait(ctx); err != nil {
			return fmt.Errorf("api: shutdown before every model call was settled: %w", err)
		}
	}
	return nil
}

// handleError writes every error envelope: handler errors, Echo's 404/405, and panics.
func (s *Server) handleError(err error, c echo.Context) {
	var he *echo.HTTPError
	var e *Error
	switch {
	case errors.As(err, &e):
	case errors.As(err, &he):
		e = fromEchoError(he)
	default:
		e = asError(err)
	}
	st := state(c)
	if st != nil {
		st.err = e
	}
	if c.Response().Committed {
		return // a stream already started; it reported the failure in-band
	}
	write := writeError
	if isV1(c) {
		write = writeV1Error // v1_errors.go
	}
	if werr := write(c, e); werr != nil {
		s.log.Debug().Err(werr).Str("traceId", traceID(c)).Msg("write error response")
	}
}

func fromEchoError(he *echo.HTTPError) *Error {
	switch he.Code {
	case http.StatusNotFound:
		return NewError(http.StatusNotFound, CodeNotFound, "no route for this path")
	case http.StatusMethodNotAllowed:
		return NewError(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "method not allowed on this route")
	case http.StatusRequestEntityTooLarge:
		return NewError(http.StatusRequestEntityTooLarge, CodePayloadTooLarge, "request body too large")
	case http.StatusBadRequest:
		return NewError(http.StatusBadRequest, CodeInvalidRequest, fmt.Sprint(he.Message))
	}
	if he.Code >= 400 && he.Code < 500 {
		return NewError(he.Code, CodeInvalidRequest, http.StatusText(he.Code))
	}
	return Wrap(http.StatusInternalServerError, CodeInternal, "internal error", he)
}

func statusLabel(code int) string { return strconv.Itoa(code) }

// consoleFirst answers /console and /console/... with the console's handler and passes everything
// else on.
func consoleFirst(console http.Handler) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/console" || strings.HasPrefix(r.URL.Path, "/console/") {
				console.ServeHTTP(w, r)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}
