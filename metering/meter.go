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
	// SettleWindow is how long settle work is gathered before it is written as one batch
	// (0: DefaultSettleWindow).
	SettleWindow time.Duration
	// BudgetLease, when its Calls is set, admits calls from node-local leases of each tenant's
	// budget (lease.go; DefaultBudgetLease); zero: every call reserves on the Budget grain.
	BudgetLease LeaseOptions
	// RateLease, when its Life is set and Limiter grants leases (actors.Client), admits a busy
	// user's requests from node-local leases of rate-limit permits (ratelease.go;
	// DefaultRateLease); zero: every request asks the RateLimiter grain.
	RateLease RateLeaseOptions
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
	settle  *settler
}

// New returns a Meter over o's dependencies.
func New(o Options) *Meter {
	if o.Metrics == nil {
		o.Metrics = observe.NewMetrics()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if l, ok := o.Limiter.(LeasingLimiter); ok && o.RateLease.Life >= time.Millisecond {
		// The real clock, whatever o.Now is: a lease is safe because it ends, in real time, before
		// the grain's record of its permits.
		o.Limiter = newRateLeases(l, o.RateLease, time.Now, o.Metrics)
	}
	if o.Budget != nil && o.BudgetLease.Calls > 0 {
		o.Budget = newBudgetLeases(o.Budget, o.BudgetLease, o.Now, o.Logger)
	}
	return &Meter{
		env: o.Env, limiter: o.Limiter, budget: o.Budget, cache: o.Cache, ledger: o.Ledger,
		metrics: o.Metrics, log: o.Logger, now: o.Now, settle: newSettler(o.SettleWindow),
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
// hit; the budget commit, the ledger event, the metrics and the log line are queued to the settle
// flusher, off the client's path, which writes them with those of other calls (settle). Budgets
// stay exact because the reservation holds the tokens until the commit.
func (m *Meter) finish(ctx context.Context, c *call, res gateway.CallResult) {
	if res.Outcome == gateway.OutcomeOK && res.Reply != "" {
		m.storeCache(ctx, c, res.Model, res.Reply) // cache.go
	}
	t := c.tenant.TenantID
	latency := m.now().Sub(c.started)
	model, u := res.Model, res.Usage
	ev := store.Event{
		Kind: store.KindModelCall, TenantID: t, TraceID: c.meta.TraceID, SessionID: c.meta.SessionID, UserID: c.meta.UserID,
		Model: model, Provider: res.Info.Provider, LatencyMs: latency.Milliseconds(), Outcome: res.Outcome,
	}
	it := settleItem{ctx: context.WithoutCancel(ctx)}
	var overrun int64 // tokens beyond the reservation, which the budget caps the charge at
	if !res.Answered {
		it.release = takeReservation(c, 0)
		ev.ErrorCode = CodeAIError
		u = gateway.Usage{}
	} else {
		if it.commit = takeReservation(c, int64(u.TokensIn+u.TokensOut)); it.commit != nil {
			overrun = max(0, it.commit.actual-c.estimate)
		}
		ev.TokensIn, ev.TokensOut, ev.Estimated = u.TokensIn, u.TokensOut, u.Estimated
		ev.Cost = float64(u.TokensIn)/1000*res.Info.PricePer1KIn + float64(u.TokensOut)/1000*res.Info.PricePer1KOut
	}
	it.ev = m.event(ev)
	it.note = func() {
		m.metrics.ModelCalls.WithLabelValues(t, model, res.Outcome).Inc()
		m.metrics.ModelLatency.WithLabelValues(model, res.Outcome).Observe(latency.Seconds())
		if res.FirstToken > 0 {
			m.metrics.ModelTTFT.WithLabelValues(model).Observe(res.FirstToken.Seconds())
		}
		if res.Answered {
			m.metrics.ModelTokens.WithLabelValues(t, model, "in").Add(float64(u.TokensIn))
			m.metrics.ModelTokens.WithLabelValues(t, model, "out").Add(float64(u.TokensOut))
		}
		if overrun > 0 {
			m.metrics.BudgetOverrun.WithLabelValues(t).Add(float64(overrun))
		}
		m.logCall(c, model, res.Info.Provider, u, latency, res.Outcome, false)
	}
	m.enqueue(it)
}

// finishCached settles a call answered from the response cache: a request like any other (a
// model_call event with cached=true and 0 tokens), not charged to the budget.
func (m *Meter) finishCached(ctx context.Context, c *call, res gateway.CallResult) {
	latency := m.now().Sub(c.started)
	m.enqueue(settleItem{
		ctx: context.WithoutCancel(ctx),
		ev: m.event(store.Event{
			Kind: store.KindModelCall, TenantID: c.tenant.TenantID, TraceID: c.meta.TraceID, SessionID: c.meta.SessionID,
			UserID: c.meta.UserID, Model: res.Model, LatencyMs: latency.Milliseconds(), Outcome: gateway.OutcomeOK, Cached: true,
		}),
		note: func() {
			m.metrics.ModelCalls.WithLabelValues(c.tenant.TenantID, res.Model, "cached").Inc()
			m.logCall(c, res.Model, "cache", gateway.Usage{}, latency, gateway.OutcomeOK, true)
		},
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

// ledgerTimeout bounds one ledger append (of an event or a batch); it runs detached from the
// request (a client that left must not lose the record of what it used).
const ledgerTimeout = 5 * time.Second

// BatchLedger is a Ledger that appends several events at once (store.Ledger): the settle flusher
// then appends a batch's events in one round trip instead of one each.
type BatchLedger interface {
	Ledger
	// AppendBatch returns nil when every event is recorded, else one error per event.
	AppendBatch(ctx context.Context, evs []store.Event) []error
}

// BatchBudgets are Budgets that commit several reservations of a tenant in one request
// (actors.Client): one counter write per period per batch instead of two per call.
type BatchBudgets interface {
	Budgets
	CommitBatch(ctx context.Context, tenantID, batchID string, commits []actors.BudgetCommit) error
}

var (
	_ BatchLedger  = (*store.Ledger)(nil)
	_ BatchBudgets = (*actors.Client)(nil)
)

// event returns ev, stamped now when it has no time, to queue; nil when there is no ledger.
func (m *Meter) event(ev store.Event) *store.Event {
	if m.ledger == nil {
		return nil
	}
	if ev.Time.IsZero() {
		ev.Time = m.now()
	}
	return &ev
}

// appendEvent records ev in the background, with the next settle batch. A nil ledger records
// nothing; a failed append is logged and never fails the request: the answer matters more than
// its bookkeeping.
func (m *Meter) appendEvent(ctx context.Context, ev store.Event) {
	if p := m.event(ev); p != nil {
		m.enqueue(settleItem{ctx: context.WithoutCancel(ctx), ev: p})
	}
}

// Record appends ev to the ledger in the background (a session, search, speech or audit event), so
// it never delays the answer; Wait waits for it. Call it before the response is written, so that
// whoever has seen the response and then waits also waits for this event.
func (m *Meter) Record(ctx context.Context, ev store.Event) { m.appendEvent(ctx, ev) }

const (
	// DefaultSettleWindow is how long the settle flusher gathers work after the first item queued
	// before writing the batch: long enough for the response of the call that queued it to go out
	// first (settle work competes with it for the node's CPU), short enough to be invisible to
	// anyone reading the ledger or the budget.
	DefaultSettleWindow = 2 * time.Millisecond
	// maxSettleBatch bounds a batch: a batch's worth queued is flushed without waiting the window.
	maxSettleBatch = 128
	// maxSettling bounds the settle items queued or being written; past it, queueing blocks, which
	// slows the callers down instead of growing memory.
	maxSettling = 256
)

// settleItem is the settle work of one call or event: any of a ledger event, a budget commit or
// release, and note (its metrics and log line), all run by the flusher.
type settleItem struct {
	ctx     context.Context // the request's, detached: trace IDs and spans of the grain calls
	ev      *store.Event
	commit  *budgetOp
	release *budgetOp
	note    func()
}

// budgetOp is a reservation to commit or release.
type budgetOp struct {
	tenantID, reservationID, traceID string
	actual                           int64
}

// settler queues the work that must happen after a response but need not delay it (budget commits,
// ledger events) for one flusher goroutine, which writes it in batches (group commit): the events
// of a batch in one ledger append, the commits of a batch in one request per tenant. The flusher
// runs while there is work and exits when the queue is empty.
type settler struct {
	window time.Duration

	mu      sync.Mutex
	space   *sync.Cond // on mu: items left (held went down)
	queue   []settleItem
	held    int            // items queued or being written
	running bool           // a flusher goroutine is running
	kick    chan struct{}  // cap 1: flush without waiting the rest of the window (a batch's worth is queued, or Wait)
	wg      sync.WaitGroup // one per item held
}

func newSettler(window time.Duration) *settler {
	if window <= 0 {
		window = DefaultSettleWindow
	}
	s := &settler{window: window, kick: make(chan struct{}, 1)}
	s.space = sync.NewCond(&s.mu)
	return s
}

// enqueue hands it to the flusher, starting one when none runs; past maxSettling items held it
// waits for room.
func (m *Meter) enqueue(it settleItem) {
	s := m.settle
	s.mu.Lock()
	for s.held >= maxSettling {
		s.space.Wait()
	}
	s.held++
	s.wg.Add(1)
	s.queue = append(s.queue, it)
	if len(s.queue) >= maxSettleBatch {
		s.flushNow()
	}
	start := !s.running
	s.running = true
	s.mu.Unlock()
	if start {
		go m.flushLoop()
	}
}

// flushNow ends the flusher's current window.
func (s *settler) flushNow() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// flushLoop is the flusher: from the first item queued it gathers for the settle window (or until
// a batch's worth is queued, or Wait), writes the batch, and starts over; it exits when nothing is queued.
func (m *Meter) flushLoop() {
	s := m.settle
	for {
		s.mu.Lock()
		n := len(s.queue)
		if n == 0 {
			s.running = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		if n < maxSettleBatch {
			t := time.NewTimer(s.window)
			select {
			case <-t.C:
			case <-s.kick:
			}
			t.Stop()
		}
		s.mu.Lock()
		batch := make([]settleItem, min(len(s.queue), maxSettleBatch))
		copy(batch, s.queue)
		rest := copy(s.queue, s.queue[len(batch):])
		clear(s.queue[rest:])
		s.queue = s.queue[:rest]
		select { // a kick for the batch just taken is stale
		case <-s.kick:
		default:
		}
		s.mu.Unlock()

		m.flush(batch)

		s.mu.Lock()
		s.held -= len(batch)
		s.space.Broadcast()
		s.mu.Unlock()
		s.wg.Add(-len(batch))
	}
}

// flush writes a batch: its events in one ledger append, its commits in one request per tenant,
// its releases, all at once; it returns when all are done (or failed, which is logged).
func (m *Meter) flush(batch []settleItem) {
	var events []store.Event
	type tenantCommits struct {
		ctx     context.Context
		commits []actors.BudgetCommit
	}
	commits := map[string]*tenantCommits{}
	var wg sync.WaitGroup
	for _, it := range batch {
		if it.note != nil {
			it.note()
		}
		if it.ev != nil {
			if it.ev.ID == "" {
				it.ev.ID = store.NewEventID()
			}
			events = append(events, *it.ev)
		}
		if op := it.commit; op != nil {
			tc := commits[op.tenantID]
			if tc == nil {
				// The batch's grain call is traced in the trace of its first call.
				tc = &tenantCommits{ctx: it.ctx}
				commits[op.tenantID] = tc
			}
			tc.commits = append(tc.commits, actors.BudgetCommit{ReservationID: op.reservationID, Actual: op.actual, TraceID: op.traceID})
		}
		if op := it.release; op != nil {
			wg.Go(func() { m.doRelease(it.ctx, op) })
		}
	}
	if len(events) > 0 {
		wg.Go(func() { m.appendEvents(events) })
	}
	for tenantID, tc := range commits {
		wg.Go(func() { m.commitBatch(tc.ctx, tenantID, tc.commits) })
	}
	wg.Wait()
}

// appendEvents appends a batch's events, in one AppendBatch when the ledger has it.
func (m *Meter) appendEvents(evs []store.Event) {
	warn := func(ev store.Event, err error) {
		m.log.Warn().Err(err).Str("tenantId", ev.TenantID).Str("traceId", ev.TraceID).Str("kind", ev.Kind).
			Msg("ledger append failed")
	}
	if bl, ok := m.ledger.(BatchLedger); ok {
		ctx, cancel := context.WithTimeout(context.Background(), ledgerTimeout)
		defer cancel()
		for i, err := range bl.AppendBatch(ctx, evs) {
			if err != nil {
				warn(evs[i], err)
			}
		}
		return
	}
	for _, ev := range evs {
		ctx, cancel := context.WithTimeout(context.Background(), ledgerTimeout)
		if err := m.ledger.Append(ctx, ev); err != nil {
			warn(ev, err)
		}
		cancel()
	}
}

// Wait blocks until all settle work queued so far is written (or failed) or ctx ends: call it on
// shutdown, after the HTTP server stopped taking requests. The batch being gathered is written at
// once: nobody waits for the window. Then every budget lease is committed (a later call reserves
// a new one).
func (m *Meter) Wait(ctx context.Context) error {
	m.settle.flushNow()
	done := make(chan struct{})
	go func() {
		m.settle.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if l, ok := m.budget.(*budgetLeases); ok {
		// The leases' calls are settled: charge what each lease admitted, so that the grain's
		// totals are complete when Wait returns.
		l.closeAll()
	}
	return nil
}
