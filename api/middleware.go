package api

import (
	"fmt"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/observe"
)

const stateKey = "crispy.request"

// requestState is what the middleware learns about a request, kept in one typed value instead of
// several loosely typed context keys.
type requestState struct {
	start     time.Time
	traceID   string
	tenant    *config.TenantConfig
	source    string // header | host | apiKey
	keyID     string // ID of the API key that authenticated, if any
	sessionID string
	err       *Error
}

func state(c echo.Context) *requestState {
	st, _ := c.Get(stateKey).(*requestState)
	return st
}

func traceID(c echo.Context) string {
	if st := state(c); st != nil {
		return st.traceID
	}
	return ""
}

// tenantOf returns the resolved tenant; routes only run after resolveTenant succeeded.
func tenantOf(c echo.Context) *config.TenantConfig { return state(c).tenant }

// observeRequest is the outermost middleware: trace ID, panic recovery, one log line and the
// metrics for every request.
func (s *Server) observeRequest(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		req := c.Request()
		st := &requestState{start: time.Now(), traceID: observe.TraceIDFrom(req.Header.Get)}
		c.Set(stateKey, st)
		setHeader(c.Response().Header(), hdrTraceID, st.traceID)
		ctx := observe.WithTraceID(req.Context(), st.traceID)
		var span trace.Span // nil unless tracing is on
		if s.tracer.Enabled() {
			// Named by route when it ends (the route is known only after routing).
			ctx, span = s.tracer.Start(ctx, "HTTP "+req.Method, trace.SpanKindServer)
		}
		c.SetRequest(req.WithContext(ctx))
		s.metrics.HTTPInFlight.Inc()
		s.inflight.Add(1)

		defer func() {
			if p := recover(); p != nil {
				perr := Wrap(http.StatusInternalServerError, CodeInternal, "internal error", fmt.Errorf("panic: %v", p))
				s.log.Error().Str("traceId", st.traceID).Str("panic", fmt.Sprint(p)).
					Bytes("stack", debug.Stack()).Msg("handler panic")
				c.Error(perr)
			}
			s.inflight.Add(-1)
			s.metrics.HTTPInFlight.Dec()
			s.record(c, st)
			if span != nil {
				endRequestSpan(span, c, st)
			}
		}()
		if err := next(c); err != nil {
			c.Error(err)
		}
		return nil
	}
}

// routeOf is the request's route pattern, or "unmatched": bounded label cardinality, never the raw
// path.
func routeOf(c echo.Context, st *requestState) string {
	route := c.Path()
	if route == "" || (st.err != nil && st.err.Code == CodeNotFound) {
		return "unmatched"
	}
	return route
}

func tenantIDOf(st *requestState) string {
	if st.tenant != nil {
		return st.tenant.TenantID
	}
	return ""
}

// endRequestSpan names the request's span by its route, records tenant, status and our trace ID
// (which joins the span with the log lines), and ends it.
func endRequestSpan(span trace.Span, c echo.Context, st *requestState) {
	route, status := routeOf(c, st), c.Response().Status
	span.SetName(c.Request().Method + " " + route)
	span.SetAttributes(
		attribute.String("http.route", route),
		attribute.String("http.request.method", c.Request().Method),
		attribute.Int("http.response.status_code", status),
		attribute.String("tenant", tenantIDOf(st)),
		attribute.String("crispy.trace_id", st.traceID),
	)
	if status >= 500 {
		msg := http.StatusText(status)
		if st.err != nil {
			msg = st.err.Code
		}
		span.SetStatus(codes.Error, msg)
	}
	span.End()
}

func (s *Server) record(c echo.Context, st *requestState) {
	status := c.Response().Status
	route := routeOf(c, st)
	tenant := tenantIDOf(st)
	elapsed := time.Since(st.start)
	method := c.Request().Method
	code := statusLabel(status)
	s.metrics.HTTPRequests.WithLabelValues(route, method, code, tenant).Inc()
	s.metrics.HTTPDuration.WithLabelValues(route, method, code, tenant).Observe(elapsed.Seconds())

	lvl := zerolog.InfoLevel
	if status >= 500 {
		lvl = zerolog.ErrorLevel
	}
	ev := s.log.WithLevel(lvl)
	if ev == nil {
		return
	}
	ev = ev.Str("tenantId", tenant).Str("traceId", st.traceID).Str("route", route).
		Str("method", method).Int("status", status).
		Float64("durationMs", float64(elapsed.Microseconds())/1000).
		Int64("bytes", c.Response().Size)
	if st.sessionID != "" {
		ev = ev.Str("sessionId", st.sessionID)
	}
	if st.err != nil {
		ev = ev.Str("code", st.err.Code)
		if st.err.Err != nil {
			ev = ev.AnErr("cause", st.err.Err)
		}
	}
	ev.Msg("http_request")
}

// resolveTenant runs docs/api.md's order after the trace ID: tenant resolution → config lookup →
// authentication → body size. Routing has already happened in Echo, but a route's handler
// (including the 404/405 ones) only runs after this passes.
func (s *Server) resolveTenant(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		if n := headerBytes(req); n > MaxHeaderBytes {
			return NewError(http.StatusRequestHeaderFieldsTooLarge, CodeInvalidRequest,
				fmt.Sprintf("request headers exceed the limit of %d bytes", MaxHeaderBytes))
		}
		st := state(c)
		ix := s.tenants.Load()
		key, err := credentials(req.Header)
		if err != nil {
			return err
		}
		res := ix.Resolve(config.ResolveInput{
			TenantHeader: req.Header.Get("x-tenant-id"),
			Host:         req.Host,
			APIKey:       key,
		})
		if res.TenantID == "" {
			if key != "" {
				// A key that names no tenant is a bad credential, not a missing tenant.
				return NewError(http.StatusUnauthorized, CodeUnauthorized, "missing or invalid API key")
			}
			return NewError(http.StatusBadRequest, CodeTenantRequired,
				"tenant required: send x-tenant-id, use a tenant's host, or send its API key")
		}
		cfg, found := ix.ByID(res.TenantID)
		if !found {
			return NewError(http.StatusNotFound, CodeTenantUnknown, "unknown tenant")
		}
		auth := ix.Authenticate(cfg, key)
		switch auth.Result {
		case config.AuthOK:
		case config.AuthForbidden:
			return NewError(http.StatusForbidden, CodeForbidden, "this API key belongs to another tenant")
		default:
			return NewError(http.StatusUnauthorized, CodeUnauthorized, "missing or invalid API key")
		}
		st.tenant, st.source, st.keyID = cfg, res.Source, auth.KeyID

		release, ok := s.slots.Acquire(cfg.TenantID)
		if !ok {
			c.Response().Header().Set("Retry-After", "1")
			return NewError(http.StatusServiceUnavailable, CodeUnavailable,
				"this tenant has too many requests in flight; retry after the time in Retry-After")
		}
		defer release()

		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			limit := s.bodyLimit(c) // rag.go: POST /ingest has its own, larger limit
			if req.ContentLength > limit {
				return errPayloadTooLarge(limit)
			}
			// A body without Content-Length (chunked) is cut off at the limit; reading past it
			// yields *http.MaxBytesError, which asError maps to the same 413.
			req.Body = http.MaxBytesReader(c.Response(), req.Body, limit)
			MinRateBody(c.Response(), req, 0, 0)
		}
		return next(c)
	}
}

// MaxHeaderBytes bounds a request's headers (the request line and Host included) with an envelope
// answer. http.Server.MaxHeaderBytes is twice this: between the two the handler answers 431 with
// the envelope; beyond it Go's server answers a plain-text 431 before any handler runs (net/http
// has no hook for the answers it writes itself, as for a negative Content-Length or an invalid Host).
const MaxHeaderBytes = 32 << 10

// headerBytes is the size of the request head as the client sent it, near enough.
func headerBytes(r *http.Request) int {
	n := len(r.Method) + len(r.RequestURI) + len(r.Proto) + len(r.Host) + 4
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// credentials returns the API key a request presents. Credentials that disagree (an x-api-key and
// an Authorization bearer naming different keys, or two x-tenant-id headers) are refused rather
// than resolved by a precedence rule the client may not know.
func credentials(h http.Header) (string, error) {
	if len(h.Values("x-tenant-id")) > 1 {
		return "", errInvalidRequest("x-tenant-id: send it once")
	}
	if len(h.Values("x-api-key")) > 1 || len(h.Values("Authorization")) > 1 {
		return "", errInvalidRequest("send one x-api-key and at most one Authorization header")
	}
	byHeader := config.APIKeyFromHeaders(h.Get("x-api-key"), "")
	byBearer := config.APIKeyFromHeaders("", h.Get("Authorization"))
	if byHeader != "" && byBearer != "" && byHeader != byBearer {
		return "", errInvalidRequest("x-api-key and Authorization name different keys: send one")
	}
	return config.APIKeyFromHeaders(h.Get("x-api-key"), h.Get("Authorization")), nil
}
