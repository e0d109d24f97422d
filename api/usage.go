package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/store"
)

// Ledger records usage, audit and session events (the LEDGER stream; store.Ledger). Events carry
// counts, IDs and outcomes, never prompts or replies.
type Ledger interface {
	Append(ctx context.Context, ev store.Event) error
}

// UsageReader answers GET /usage from the tenant's read model (store.TenantDBs).
type UsageReader interface {
	Usage(ctx context.Context, tenantID string, from, to time.Time, groupBy string) ([]store.UsageRow, error)
}

// ModelPricer says who serves a model and at what price (gateway.Router.Describe). When the chat
// models implement it, model_call events carry the provider and the cost.
type ModelPricer interface {
	Describe(model string) (gateway.ModelInfo, error)
}

var _ ModelPricer = (*gateway.Router)(nil)

// ledgerTimeout bounds one ledger append; it runs detached from the request (a client that left must
// not lose the record of what it used).
const ledgerTimeout = 5 * time.Second

// appendEvent records ev. A nil ledger records nothing; a failed append is logged and never fails
// the request: the answer matters more than its bookkeeping.
func (s *Server) appendEvent(ctx context.Context, ev store.Event) {
	if s.ledger == nil {
		return
	}
	if ev.ID == "" {
		ev.ID = uuid.NewString()
	}
	if ev.Time.IsZero() {
		ev.Time = s.now()
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ledgerTimeout)
	defer cancel()
	if err := s.ledger.Append(ctx, ev); err != nil {
		s.log.Warn().Err(err).Str("tenantId", ev.TenantID).Str("traceId", ev.TraceID).Str("kind", ev.Kind).
			Msg("ledger append failed")
	}
}

// recordRejection records a rate-limit or budget rejection for the tenant's audit.
func (s *Server) recordRejection(c echo.Context, kind, userID string, detail map[string]any) {
	t := tenantOf(c)
	s.appendEvent(c.Request().Context(), store.Event{
		Kind: kind, TenantID: t.TenantID, TraceID: traceID(c), SessionID: state(c).sessionID, UserID: userID,
		Subject: c.Path(), Outcome: "rejected", Detail: detail,
	})
}

// modelCall is the bookkeeping of one chat model call: budget reservation, response cache key,
// and what its model_call event, metrics and log line say.
type modelCall struct {
	tenant     *config.TenantConfig
	traceID    string
	sessionID  string
	userID     string
	primary    string
	newSession bool // the session had no history: storing this exchange creates it
	started    time.Time

	estimate      int64  // CONTRACT.md's estimate of the whole call (input + max output)
	reservationID string // the Budget grain's reservation; "" = the tenant has no budget
	cacheKey      string // response cache key; "" = not cacheable
}

// callObserver counts the router's retries and fallbacks for this call.
func (s *Server) callObserver() *gateway.CallObserver {
	return &gateway.CallObserver{
		OnRetry:    func(model string, _ int, _ error) { s.metrics.ModelRetries.WithLabelValues(model).Inc() },
		OnFallback: func(from, to string, _ error) { s.metrics.ModelFallbacks.WithLabelValues(from, to).Inc() },
	}
}

// finishModelCall settles a call that reached the model: it charges the budget, records the
// model_call event, counts the metrics and writes the one log line per model call. outcome is ok,
// error or cancelled.
//
// Budget decision: whatever the outcome, the tokens the stream reports (exact from the provider, or
// estimated from what was produced when it reported none) are committed, and the rest of the
// reservation is freed. A cancelled or failed stream still consumed its input and produced some
// output upstream, which the provider bills; charging it keeps the budget honest.
func (s *Server) finishModelCall(ctx context.Context, call *modelCall, model string, u gateway.Usage, outcome string) {
	if call == nil {
		return
	}
	t := call.tenant.TenantID
	latency := s.now().Sub(call.started)
	s.metrics.ModelCalls.WithLabelValues(t, model, outcome).Inc()
	s.metrics.ModelTokens.WithLabelValues(t, model, "in").Add(float64(u.TokensIn))
	s.metrics.ModelTokens.WithLabelValues(t, model, "out").Add(float64(u.TokensOut))
	s.metrics.ModelLatency.WithLabelValues(model, outcome).Observe(latency.Seconds())
	// The budget commit (two KV writes) and the ledger append are independent round trips to
	// JetStream: run them at once, and return when both are done.
	var committed chan struct{}
	if call.reservationID != "" {
		committed = make(chan struct{})
		go func() {
			defer close(committed)
			s.commitBudget(ctx, call, int64(u.TokensIn+u.TokensOut))
		}()
	}
	defer func() {
		if committed != nil {
			<-committed
		}
	}()

	var info gateway.ModelInfo
	if p, ok := s.chat.Models.(ModelPricer); ok {
		info, _ = p.Describe(model)
	}
	cost := float64(u.TokensIn)/1000*info.PricePer1KIn + float64(u.TokensOut)/1000*info.PricePer1KOut
	s.appendEvent(ctx, store.Event{
		Kind: store.KindModelCall, TenantID: t, TraceID: call.traceID, SessionID: call.sessionID, UserID: call.userID,
		Model: model, Provider: info.Provider, TokensIn: u.TokensIn, TokensOut: u.TokensOut, Estimated: u.Estimated,
		LatencyMs: latency.Milliseconds(), Cost: cost, Outcome: outcome,
	})
	s.logModelCall(call, model, info.Provider, u, latency, outcome, false)
}

// modelOpenFailed settles a call whose model never answered (every model failed before its first
// token): the reservation is released, nothing is charged.
func (s *Server) modelOpenFailed(ctx context.Context, call *modelCall, err error) {
	t := call.tenant.TenantID
	latency := s.now().Sub(call.started)
	s.metrics.ModelCalls.WithLabelValues(t, call.primary, "error").Inc()
	s.metrics.ModelLatency.WithLabelValues(call.primary, "error").Observe(latency.Seconds())
	s.releaseBudget(ctx, call)
	outcome := "error"
	if errors.Is(err, context.Canceled) {
		outcome = "cancelled"
	}
	var info gateway.ModelInfo
	if p, ok := s.chat.Models.(ModelPricer); ok {
		info, _ = p.Describe(call.primary)
	}
	s.appendEvent(ctx, store.Event{
		Kind: store.KindModelCall, TenantID: t, TraceID: call.traceID, SessionID: call.sessionID, UserID: call.userID,
		Model: call.primary, Provider: info.Provider, LatencyMs: latency.Milliseconds(), Outcome: outcome,
		ErrorCode: CodeAIError,
	})
	s.logModelCall(call, call.primary, info.Provider, gateway.Usage{}, latency, outcome, false)
}

// logModelCall writes the one log line per model call (issue 4): never the prompt or the reply.
func (s *Server) logModelCall(call *modelCall, model, provider string, u gateway.Usage, latency time.Duration, outcome string, cached bool) {
	ev := s.log.Info()
	if outcome == "error" {
		ev = s.log.Warn()
	}
	if ev == nil {
		return
	}
	ev.Str("traceId", call.traceID).Str("tenantId", call.tenant.TenantID).
		Str("sessionId", call.sessionID).Str("model", model).Str("provider", provider).
		Int("tokensIn", u.TokensIn).Int("tokensOut", u.TokensOut).Bool("estimated", u.Estimated).
		Bool("cached", cached).Float64("latencyMs", float64(latency.Microseconds())/1000).
		Str("outcome", outcome).Msg("model_call")
}

// sessionStored records session_created after the first exchange of a session was stored.
func (s *Server) sessionStored(ctx context.Context, call *modelCall) {
	if call == nil || !call.newSession {
		return
	}
	s.appendEvent(ctx, store.Event{
		Kind: store.KindSessionCreated, TenantID: call.tenant.TenantID, TraceID: call.traceID,
		SessionID: call.sessionID, UserID: call.userID,
	})
}

// sessionCleared records session_cleared after DELETE /chat/:sessionId.
func (s *Server) sessionCleared(c echo.Context, sessionID string) {
	s.appendEvent(c.Request().Context(), store.Event{
		Kind: store.KindSessionCleared, TenantID: tenantOf(c).TenantID, TraceID: traceID(c), SessionID: sessionID,
	})
}

// defaultUsageWindow is GET /usage's range when from is absent.
const defaultUsageWindow = 30 * 24 * time.Hour

// usageTotals sums the rows of GET /usage.
type usageTotals struct {
	Requests  int64   `json:"requests"`
	TokensIn  int64   `json:"tokensIn"`
	TokensOut int64   `json:"tokensOut"`
	Cost      float64 `json:"cost"`
	Cached    int64   `json:"cached"`
	Estimated int64   `json:"estimated"`
}

// getUsage is GET /usage?from=&to=&groupBy=day|model (CONTRACT.md "Tenant metrics", ours): the
// calling tenant's model calls from its own read model. from and to are RFC 3339 dates
// ("2026-01-02", a whole UTC day: to's day is included), RFC 3339 times (to exclusive) or epoch
// milliseconds. Defaults: to = now, from = to − 30 days, groupBy = day.
func (s *Server) getUsage(c echo.Context) error {
	t := tenantOf(c)
	now := s.now().UTC()
	to := now
	if v := c.QueryParam("to"); v != "" {
		ts, dateOnly, err := parseUsageTime(v)
		if err != nil {
			return errInvalidRequest("to: must be an RFC 3339 date or time, or epoch milliseconds")
		}
		to = ts
		if dateOnly {
			to = ts.AddDate(0, 0, 1)
		}
	}
	from := to.Add(-defaultUsageWindow)
	if v := c.QueryParam("from"); v != "" {
		ts, _, err := parseUsageTime(v)
		if err != nil {
			return errInvalidRequest("from: must be an RFC 3339 date or time, or epoch milliseconds")
		}
		from = ts
	}
	if !from.Before(to) {
		return errInvalidRequest("from: must be before to")
	}
	groupBy := c.QueryParam("groupBy")
	switch groupBy {
	case "":
		groupBy = "day"
	case "day", "model":
	default:
		return errInvalidRequest("groupBy: must be day or model")
	}
	rows, err := s.usage.Usage(c.Request().Context(), t.TenantID, from, to, groupBy)
	if err != nil {
		return Wrap(http.StatusServiceUnavailable, CodeUnavailable, "usage is unavailable, retry shortly", err)
	}
	if rows == nil {
		rows = []store.UsageRow{}
	}
	var tot usageTotals
	for _, r := range rows {
		tot.Requests += r.Requests
		tot.TokensIn += r.TokensIn
		tot.TokensOut += r.TokensOut
		tot.Cost += r.Cost
		tot.Cached += r.Cached
		tot.Estimated += r.Estimated
	}
	return ok(c, http.StatusOK, map[string]any{
		"from": from.Format(time.RFC3339Nano), "to": to.Format(time.RFC3339Nano), "groupBy": groupBy,
		"rows": rows, "totals": tot,
	})
}

// parseUsageTime reads epoch milliseconds, an RFC 3339 date or an RFC 3339 time, in UTC.
func parseUsageTime(v string) (t time.Time, dateOnly bool, err error) {
	if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
		if ms < 0 {
			return time.Time{}, false, errors.New("negative epoch")
		}
		return time.UnixMilli(ms).UTC(), false, nil
	}
	if d, err := time.Parse(time.DateOnly, v); err == nil {
		return d.UTC(), true, nil
	}
	ts, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, false, err
	}
	return ts.UTC(), false, nil
}
