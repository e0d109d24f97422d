// Package metering owns what happens around every model call of a tenant: the rate limit, model
// selection (one rule: the allow-list and the fallback), the token budget (reserve before, commit
// after), the response cache, the ledger events, the metrics and the one log line per call.
//
// The gateway's Router calls a Meter before and after each call (gateway.Meter), so /chat, the
// model-backed tools, the search rewrite and every future endpoint are metered the same way
// without knowing it. The HTTP layer calls the Meter directly only for what is not a model call:
// the rate limit of a request and the ledger events of sessions, searches and speech.
package metering

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/crispy-enigma/crispy/actors"
	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/observe"
	"github.com/crispy-enigma/crispy/store"
)

// RateLimiter decides whether a tenant's user may make one more request (the RateLimiter grain).
type RateLimiter interface {
	Allow(ctx context.Context, tenantID, userID string, lim actors.RateLimit) (actors.RateDecision, error)
}

// Budgets holds and charges a tenant's token budget (the Budget grain; actors.Client).
type Budgets interface {
	Reserve(ctx context.Context, tenantID, reservationID string, tokens int64, lim actors.TokenBudget) (actors.BudgetDecision, error)
	Commit(ctx context.Context, tenantID, reservationID string, actual int64) error
	Release(ctx context.Context, tenantID, reservationID string) error
}

// Ledger records usage, audit and session events (the LEDGER stream; store.Ledger). Events carry
// counts, IDs and outcomes, never prompts or replies.
type Ledger interface {
	Append(ctx context.Context, ev store.Event) error
}

// ResponseCache is the tenant-scoped KV bucket `cache` (store.TenantKV): every key is stored under
// the tenant's own prefix, and Get returns an error wrapping store.ErrNotFound for a miss.
type ResponseCache interface {
	Get(ctx context.Context, tenantID, key string) ([]byte, error)
	Put(ctx context.Context, tenantID, key string, value []byte, ttl time.Duration) error
}

var (
	_ RateLimiter   = (*actors.Client)(nil)
	_ Budgets       = (*actors.Client)(nil)
	_ Ledger        = (*store.Ledger)(nil)
	_ ResponseCache = (*store.TenantKV)(nil)
	_ gateway.Meter = (*Meter)(nil)
)

// Options are a Meter's dependencies. Every one but Env may be nil: what it backs is then off
// (no rate limit, no budget, no cache, no ledger).
type Options struct {
	Env     config.Env // MODEL_ID and FALLBACK_MODEL_ID, part of model selection
	Limiter RateLimiter
	Budget  Budgets
	Cache   ResponseCache
	Ledger  Ledger
	Metrics *observe.Metrics // nil: a private registry
	Logger  zerolog.Logger
	Now     func() time.Time // nil: time.Now
}

// Meter meters a node's model calls and requests. It is safe for concurrent use.
type Meter struct {
	env     config.Env
	limiter RateLimiter
	budget  Budgets
	cache   ResponseCache
	ledger  Ledger
	metrics *observe.Metrics
	log     zerolog.Logger
	now     func() time.Time
	settle  settler
}

// New returns a Meter over o's dependencies.
func New(o Options) *Meter {
	if o.Metrics == nil {
		o.Metrics = observe.NewMetrics()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Meter{
		env: o.Env, limiter: o.Limiter, budget: o.Budget, cache: o.Cache, ledger: o.Ledger,
		metrics: o.Metrics, log: o.Logger, now: o.Now, settle: settler{sem: make(chan struct{}, maxSettling)},
	}
}

// Metrics are the Prometheus metrics the Meter counts into.
func (m *Meter) Metrics() *observe.Metrics { return m.metrics }

// call is the bookkeeping of one model call between BeforeCall and its After.
type call struct {
	tenant   *config.TenantConfig
	meta     gateway.RequestMeta
	primary  string
	started  time.Time
	estimate int64  // the budget estimate of the whole call (input + max output)
	reserved string // the Budget grain's reservation; "" = the tenant has no budget
	cacheKey string // response cache key; "" = not cacheable
}

// BeforeCall implements gateway.Meter: the model rule, then the response cache (a hit answers the
// call and is not charged), then the budget reservation. A refusal is ErrModelNotAllowed,
// a *BudgetError (ErrBudgetExceeded) or ErrBudgetUnavailable.
func (m *Meter) BeforeCall(ctx context.Context, gc *gateway.Call) (gateway.Ticket, error) {
	req := &gc.Request
	t := req.Meta.Tenant
	if t == nil {
		return gateway.Ticket{}, fmt.Errorf("metering: model call without a tenant (route %q)", req.Meta.Route)
	}
	if err := checkAllowed(t, req.Model); err != nil {
		return gateway.Ticket{}, err
	}
	if t.Flag("modelAllowList") && !allowed(t, gc.Fallback) {
		gc.Fallback = ""
	}
	c := &call{tenant: t, meta: req.Meta, primary: req.Model, started: m.now()}
	if hit, ok := m.lookupCache(ctx, c, req); ok { // cache.go
		return gateway.Ticket{Answer: hit, Cache: gateway.CacheHit, After: func(ctx context.Context, res gateway.CallResult) {
			m.finishCached(ctx, c, res)
		}}, nil
	}
	if req.MaxTokens <= 0 && budgeted(t) {
		// An unbounded request is bounded by what it reserves: the gateway cuts its stream there,
		// so a model that would answer at length cannot spend past the budget.
		req.MaxTokens = DefaultMaxOutputTokens
	}
	if err := m.reserve(ctx, c, Estimate(req.Messages, req.MaxTokens)); err != nil { // budget.go
		return gateway.Ticket{}, err
	}
	tk := gateway.Ticket{Observer: m.observer(), After: func(ctx context.Context, res gateway.CallResult) { m.finish(ctx, c, res) }}
	if c.cacheKey != "" {
		tk.Cache, tk.KeepReply = gateway.CacheMiss, true
	}
	return tk, nil
}

// observer counts the router's retries and fallbacks.
func (m *Meter) observer() *gateway.CallObserver {
	return &gateway.CallObserver{
		OnRetry:    func(model string, _ int, _ error) { m.metrics.ModelRetries.WithLabelValues(model).Inc() },
		OnFallback: func(from, to string, _ error) { m.metrics.ModelFallbacks.WithLabelValues(from, to).Inc() },
	}
}

// finish settles a call that went to the models. A call that never got an answer releases its
// reservation and charges nothing. Otherwise, whatever the outcome, the tokens the stream reports
// (exact from the provider, or estimated from what was produced) are committed and the rest of the
// reservation is freed: a cancelled or failed stream still consumed its input and produced some
// output upstream, which the provider bills; charging it keeps the budget honest.
//
// The cache write runs here, before the caller answers, so an identical request that follows is a
// hit; the budget commit and the ledger append (several JetStream round trips) run in the
// background, off the client's path. Budgets stay exact because the reservation holds the tokens
// until the commit.
func (m *Meter) finish(ctx context.Context, c *call, res gateway.CallResult) {
	if res.Outcome == gateway.OutcomeOK && res.Reply != "" {
		m.storeCache(ctx, c, res.Model, res.Reply) // cache.go
	}
	work := m.later()
	ctx = context.WithoutCancel(ctx)
	work(func() {
		t := c.tenant.TenantID
		latency := m.now().Sub(c.started)
		model, u := res.Model, res.Usage
		m.metrics.ModelCalls.WithLabelValues(t, model, res.Outcome).Inc()
		m.metrics.ModelLatency.WithLabelValues(model, res.Outcome).Observe(latency.Seconds())
		if res.FirstToken > 0 {
			m.metrics.ModelTTFT.WithLabelValues(model).Observe(res.FirstToken.Seconds())
		}
		ev := store.Event{
			Kind: store.KindModelCall, TenantID: t, TraceID: c.meta.TraceID, SessionID: c.meta.SessionID, UserID: c.meta.UserID,
			Model: model, Provider: res.Info.Provider, LatencyMs: latency.Milliseconds(), Outcome: res.Outcome,
		}
		if !res.Answered {
			m.release(ctx, c)
			ev.ErrorCode = CodeAIError
			m.appendEvent(ctx, ev)
			m.logCall(c, model, res.Info.Provider, gateway.Usage{}, latency, res.Outcome, false)
			return
		}
		m.metrics.ModelTokens.WithLabelValues(t, model, "in").Add(float64(u.TokensIn))
		m.metrics.ModelTokens.WithLabelValues(t, model, "out").Add(float64(u.TokensOut))
		// The commit (two KV writes) and the ledger append are independent round trips: run them at
		// once, and return when both are done.
		var committed chan struct{}
		if c.reserved != "" {
			committed = make(chan struct{})
			go func() {
				defer close(committed)
				m.commit(ctx, c, int64(u.TokensIn+u.TokensOut))
			}()
		}
		ev.TokensIn, ev.TokensOut, ev.Estimated = u.TokensIn, u.TokensOut, u.Estimated
		ev.Cost = float64(u.TokensIn)/1000*res.Info.PricePer1KIn + float64(u.TokensOut)/1000*res.Info.PricePer1KOut
		m.appendEvent(ctx, ev)
		m.logCall(c, model, res.Info.Provider, u, latency, res.Outcome, false)
		if committed != nil {
			<-committed
		}
	})
}

// finishCached settles a call answered from the response cache: a request like any other (a
// model_call event with cached=true and 0 tokens), not charged to the budget.
func (m *Meter) finishCached(ctx context.Context, c *call, res gateway.CallResult) {
	work := m.later()
	ctx = context.WithoutCancel(ctx)
	work(func() {
		latency := m.now().Sub(c.started)
		m.metrics.ModelCalls.WithLabelValues(c.tenant.TenantID, res.Model, "cached").Inc()
		m.appendEvent(ctx, store.Event{
			Kind: store.KindModelCall, TenantID: c.tenant.TenantID, TraceID: c.meta.TraceID, SessionID: c.meta.SessionID,
			UserID: c.meta.UserID, Model: res.Model, LatencyMs: latency.Milliseconds(), Outcome: gateway.OutcomeOK, Cached: true,
		})
		m.logCall(c, res.Model, "cache", gateway.Usage{}, latency, gateway.OutcomeOK, true)
	})
}

// CodeAIError is the error code a model_call event records for a call no model answered.
const CodeAIError = "ai_error"

// logCall writes the one log line per model call: never the prompt or the reply.
func (m *Meter) logCall(c *call, model, provider string, u gateway.Usage, latency time.Duration, outcome string, cached bool) {
	lvl := zerolog.InfoLevel
	if outcome == gateway.OutcomeError {
		lvl = zerolog.WarnLevel
	}
	ev := m.log.WithLevel(lvl)
	if ev == nil {
		return
	}
	ev.Str("tenantId", c.tenant.TenantID).Str("traceId", c.meta.TraceID).Str("route", c.meta.Route).
		Str("sessionId", c.meta.SessionID).Str("model", model).Str("provider", provider).
		Int("tokensIn", u.TokensIn).Int("tokensOut", u.TokensOut).Bool("estimated", u.Estimated).
		Bool("cached", cached).Float64("latencyMs", float64(latency.Microseconds())/1000).
		Str("outcome", outcome).Msg("model_call")
}

// ledgerTimeout bounds one ledger append; it runs detached from the request (a client that left must
// not lose the record of what it used).
const ledgerTimeout = 5 * time.Second

// appendEvent records ev now. A nil ledger records nothing; a failed append is logged and never
// fails the request: the answer matters more than its bookkeeping.
func (m *Meter) appendEvent(ctx context.Context, ev store.Event) {
	if m.ledger == nil {
		return
	}
	if ev.ID == "" {
		ev.ID = uuid.NewString()
	}
	if ev.Time.IsZero() {
		ev.Time = m.now()
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ledgerTimeout)
	defer cancel()
	if err := m.ledger.Append(ctx, ev); err != nil {
		m.log.Warn().Err(err).Str("tenantId", ev.TenantID).Str("traceId", ev.TraceID).Str("kind", ev.Kind).
			Msg("ledger append failed")
	}
}

// Record appends ev to the ledger in the background (a session, search, speech or audit event), so
// it never delays the answer; Wait waits for it. Call it before the response is written, so that
// whoever has seen the response and then waits also waits for this event.
func (m *Meter) Record(ctx context.Context, ev store.Event) {
	if m.ledger == nil {
		return
	}
	if ev.Time.IsZero() {
		ev.Time = m.now()
	}
	ctx = context.WithoutCancel(ctx)
	m.later()(func() { m.appendEvent(ctx, ev) })
}

// maxSettling bounds the settle work running after responses; past it the work runs inline, which
// slows the callers down instead of piling up goroutines.
const maxSettling = 256

// settler runs work that must happen after a response but need not delay it (budget commit,
// ledger event), bounded, and lets shutdown wait for it.
type settler struct {
	sem chan struct{}
	wg  sync.WaitGroup
}

// later reserves a background slot and returns the function that runs the settle work in it.
// Past maxSettling running jobs the work runs inline.
func (m *Meter) later() func(work func()) {
	select {
	case m.settle.sem <- struct{}{}:
		m.settle.wg.Add(1)
		return func(work func()) {
			go func() {
				defer func() {
					<-m.settle.sem
					m.settle.wg.Done()
				}()
				work()
			}()
		}
	default:
		return func(work func()) { work() }
	}
}

// Wait blocks until all background settle work is done or ctx ends: call it on shutdown, after the
// HTTP server stopped taking requests.
func (m *Meter) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		m.settle.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
