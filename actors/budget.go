package actors

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/crispy-enigma/crispy/actors/pb"
	"github.com/crispy-enigma/crispy/observe"
	"github.com/crispy-enigma/crispy/store"
)

// KindBudget is the Budget grain's kind (identity = tenant ID).
const KindBudget = "Budget"

const (
	// BucketBudgets is the JetStream KV bucket of the budget counters: key "<tenant>.<yyyy-mm-dd>"
	// holds the tokens used that UTC day, "<tenant>.<yyyy-mm>" those used that UTC month, both as
	// decimal text.
	BucketBudgets = "budgets"
	// ReservationTTL is how long a reservation holds budget without Commit or Release: a request
	// that crashed (or a node that died mid-call) must not hold a tenant's budget forever. It is
	// longer than any model call we allow.
	ReservationTTL = 10 * time.Minute
	// budgetsMaxAge bounds a counter's age in the bucket: the month key of the current month is at
	// most 31 days old, so 40 days keeps every live counter and drops past periods by themselves.
	budgetsMaxAge = 40 * 24 * time.Hour
)

// TokenBudget is the tenant's tokenBudget (UTC day and month); 0 means no limit on that period.
type TokenBudget struct {
	Daily, Monthly int64
}

// Enabled reports whether any limit is set; a tenant without one skips the grain entirely.
func (b TokenBudget) Enabled() bool { return b.Daily > 0 || b.Monthly > 0 }

// BudgetDecision is the Budget grain's answer to Reserve.
type BudgetDecision struct {
	Allowed bool
	// Remaining tokens in each period after the decision (used and reserved subtracted); -1 = no limit.
	DailyRemaining, MonthlyRemaining int64
	// ResetAt is when the period that denied the request rolls over (zero when allowed).
	ResetAt time.Time
}

// BudgetStatus is the grain's view of the current UTC day and month.
type BudgetStatus struct {
	Day, Month                 string
	DayUsed, MonthUsed         int64
	DayReserved, MonthReserved int64
	Reservations               int
}

// EnsureBudgetBucket creates or updates the budgets KV bucket.
func EnsureBudgetBucket(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      BucketBudgets,
		Description: "crispy token budgets: tokens used per tenant per UTC day (<tenant>.<yyyy-mm-dd>) and month (<tenant>.<yyyy-mm>)",
		History:     1,
		TTL:         budgetsMaxAge,
		Storage:     jetstream.FileStorage,
		Replicas:    max(1, replicas),
	})
	if err != nil {
		return nil, fmt.Errorf("ensure kv bucket %s: %w", BucketBudgets, err)
	}
	// KV reads use direct gets, which any replica may answer: a lagging follower would hand Reserve
	// an old counter and over-admit until the next fenced write. Budgets read from the leader.
	st, err := store.BucketStream(ctx, js, BucketBudgets) // a fresh bucket may be "not found" for a moment
	if err != nil {
		return nil, fmt.Errorf("kv bucket %s stream: %w", BucketBudgets, err)
	}
	if cfg := st.CachedInfo().Config; cfg.AllowDirect {
		cfg.AllowDirect = false
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			return nil, fmt.Errorf("kv bucket %s: turn off direct gets: %w", BucketBudgets, err)
		}
		if kv, err = js.KeyValue(ctx, BucketBudgets); err != nil {
			return nil, fmt.Errorf("bind kv bucket %s: %w", BucketBudgets, err)
		}
	}
	return kv, nil
}

// Reserve holds tokens of the tenant's budget for one model call under reservationID (the caller
// picks it, e.g. a UUID). It is denied when used + reserved + tokens would pass either limit.
// Follow an allowed reservation with Commit or Release; otherwise it expires after ReservationTTL.
func (c *Client) Reserve(ctx context.Context, tenantID, reservationID string, tokens int64, lim TokenBudget) (BudgetDecision, error) {
	if !ValidTenantID(tenantID) {
		return BudgetDecision{}, fmt.Errorf("tenant %q: %w", tenantID, ErrInvalidID)
	}
	if reservationID == "" {
		return BudgetDecision{}, errors.New("budget reserve: empty reservation ID")
	}
	res, err := request[*pb.BudgetReserveResponse](ctx, c, tenantID, KindBudget, &pb.BudgetReserveRequest{
		ReservationId: reservationID, Tokens: tokens,
		Limits: &pb.BudgetLimits{Daily: lim.Daily, Monthly: lim.Monthly}, TraceId: observe.TraceID(ctx),
	})
	if err != nil {
		return BudgetDecision{}, err
	}
	if err := grainErr(res.GetError()); err != nil {
		return BudgetDecision{}, err
	}
	d := BudgetDecision{Allowed: res.GetAllowed(), DailyRemaining: res.GetDailyRemaining(), MonthlyRemaining: res.GetMonthlyRemaining()}
	if ms := res.GetResetAtMs(); ms > 0 {
		d.ResetAt = time.UnixMilli(ms).UTC()
	}
	return d, nil
}

// Commit charges actual tokens for the reservation's call, at most the tokens reserved, and frees the
// rest of the reservation.
// It returns once the counters are durable in JetStream. A reservation that expired or was lost
// (its grain's node died) is still charged: the tokens were spent.
func (c *Client) Commit(ctx context.Context, tenantID, reservationID string, actual int64) error {
	if !ValidTenantID(tenantID) {
		return fmt.Errorf("tenant %q: %w", tenantID, ErrInvalidID)
	}
	// Re-sent when the grain's member leaves before answering: each counter write carries the
	// reservation ID as its JetStream message ID, so a commit the lost member already wrote is
	// recognised as a duplicate by the new activation instead of charged twice (commit).
	res, err := requestIdempotent[*pb.BudgetCommitResponse](ctx, c, tenantID, KindBudget,
		&pb.BudgetCommitRequest{ReservationId: reservationID, Actual: actual, TraceId: observe.TraceID(ctx)})
	if err != nil {
		return err
	}
	return grainErr(res.GetError())
}

// BudgetCommit is one reservation's charge in a CommitBatch.
type BudgetCommit struct {
	ReservationID string
	Actual        int64
	TraceID       string // the request's trace ID, for the grain's log lines
}

// CommitBatch commits several reservations of the tenant in one request to its Budget grain: each
// is charged as Commit would charge it, and the grain writes each period's counter once for the
// whole batch. batchID identifies the batch (unique per batch; "" picks a fresh one): the counter
// writes carry it as their JetStream message IDs, so a batch re-sent after its grain's member left
// is not charged twice.
func (c *Client) CommitBatch(ctx context.Context, tenantID, batchID string, commits []BudgetCommit) error {
	if !ValidTenantID(tenantID) {
		return fmt.Errorf("tenant %q: %w", tenantID, ErrInvalidID)
	}
	if len(commits) == 0 {
		return nil
	}
	if batchID == "" {
		batchID = uuid.NewString()
	}
	req := &pb.BudgetCommitBatchRequest{BatchId: batchID, Commits: make([]*pb.BudgetCommitRequest, len(commits))}
	for i, cm := range commits {
		req.Commits[i] = &pb.BudgetCommitRequest{ReservationId: cm.ReservationID, Actual: cm.Actual, TraceId: cm.TraceID}
	}
	res, err := requestIdempotent[*pb.BudgetCommitResponse](ctx, c, tenantID, KindBudget, req)
	if err != nil {
		return err
	}
	return grainErr(res.GetError())
}

// Release frees a reservation without charging it (the call failed before the model ran).
// Releasing an unknown reservation is not an error.
func (c *Client) Release(ctx context.Context, tenantID, reservationID string) error {
	if !ValidTenantID(tenantID) {
		return fmt.Errorf("tenant %q: %w", tenantID, ErrInvalidID)
	}
	res, err := request[*pb.BudgetReleaseResponse](ctx, c, tenantID, KindBudget,
		&pb.BudgetReleaseRequest{ReservationId: reservationID, TraceId: observe.TraceID(ctx)})
	if err != nil {
		return err
	}
	return grainErr(res.GetError())
}

// BudgetStatus reads the tenant's counters for the current UTC day and month.
func (c *Client) BudgetStatus(ctx context.Context, tenantID string) (BudgetStatus, error) {
	if !ValidTenantID(tenantID) {
		return BudgetStatus{}, fmt.Errorf("tenant %q: %w", tenantID, ErrInvalidID)
	}
	res, err := request[*pb.BudgetStatusResponse](ctx, c, tenantID, KindBudget, &pb.BudgetStatusRequest{TraceId: observe.TraceID(ctx)})
	if err != nil {
		return BudgetStatus{}, err
	}
	if err := grainErr(res.GetError()); err != nil {
		return BudgetStatus{}, err
	}
	return BudgetStatus{
		Day: res.GetDay(), Month: res.GetMonth(), DayUsed: res.GetDayUsed(), MonthUsed: res.GetMonthUsed(),
		DayReserved: res.GetDayReserved(), MonthReserved: res.GetMonthReserved(), Reservations: int(res.GetReservations()),
	}, nil
}

func budgetProps(deps Deps, tenantID string) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor { return newBudget(deps, tenantID) })
}

// budgetCounter is one period's used tokens and the KV revision this activation last saw.
type budgetCounter struct {
	used int64
	rev  uint64 // 0 = the key does not exist (or was deleted): the next write is a Create
}

type reservation struct {
	tokens     int64
	day, month string
	expiresMs  int64
}

// budget is the Budget grain, identity = tenant ID. One activation cluster-wide handles one message
// at a time, so reservations are exact under any concurrency and across nodes: used + reserved
// never passes a limit. Reservations live in memory (they are short-lived; a lost one only frees
// budget early, and ReservationTTL frees a forgotten one); the used counters live in KV bucket
// budgets and are written before the grain replies to Commit, each write conditional on the
// revision this activation last read (like ChatSession's expected last sequence), so a duplicate
// activation during membership churn cannot overwrite the other's charges: its write is refused,
// and it re-reads the counter and adds again.
type budget struct {
	deps     Deps
	tenantID string
	kv       jetstream.KeyValue

	counters map[string]*budgetCounter // period ("2026-01-02" or "2026-01") → counter
	reserved map[string]int64          // period → tokens held by live reservations
	res      map[string]reservation    // reservation ID → reservation
	// traceID is the trace ID of the request being handled (one at a time), for the log lines
	// written about it; "" between requests.
	traceID string
	// stopping: passivateIfMoved queued this activation's stop.
	stopping bool
}

func newBudget(deps Deps, tenantID string) *budget {
	return &budget{
		deps: deps, tenantID: tenantID,
		counters: map[string]*budgetCounter{}, reserved: map[string]int64{}, res: map[string]reservation{},
	}
}

func (b *budget) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		ctx.SetReceiveTimeout(b.deps.IdleTimeout)
	case *cluster.ClusterInit:
		if b.tenantID == "" && msg.Identity != nil {
			if !ValidTenantID(msg.Identity.Identity) {
				b.deps.Logger.Error().Str("identity", msg.Identity.Identity).Msg("budget: bad identity")
				return
			}
			b.tenantID = msg.Identity.Identity
		}
	case *pb.BudgetReserveRequest:
		b.traceID = msg.GetTraceId()
		ctx.Respond(b.reserve(msg))
		b.passivateIfMoved(ctx)
	case *pb.BudgetCommitRequest:
		b.traceID = msg.GetTraceId()
		ctx.Respond(&pb.BudgetCommitResponse{Error: errString(b.commit(msg))})
		b.passivateIfMoved(ctx)
	case *pb.BudgetCommitBatchRequest:
		ctx.Respond(&pb.BudgetCommitResponse{Error: errString(b.commitBatch(msg))})
		b.passivateIfMoved(ctx)
	case *pb.BudgetReleaseRequest:
		b.traceID = msg.GetTraceId()
		b.expire()
		b.drop(msg.GetReservationId())
		ctx.Respond(&pb.BudgetReleaseResponse{})
		b.passivateIfMoved(ctx)
	case *pb.BudgetStatusRequest:
		b.traceID = msg.GetTraceId()
		ctx.Respond(b.status())
		b.passivateIfMoved(ctx)
	case *actor.ReceiveTimeout:
		// Passivate only when no reservation is held: they live in memory, and dropping one would
		// let requests in flight overshoot the budget when they commit.
		b.expire()
		if len(b.res) == 0 {
			ctx.Poison(ctx.Self())
			return
		}
		ctx.SetReceiveTimeout(b.deps.IdleTimeout) // protoactor disarms it when it fires
	}
}

// passivateIfMoved ends a request: it stops this activation when this member does not own the
// tenant's Budget under its current topology (Placement), as a chat session does, so that a
// duplicate started by a requester with a stale topology does not keep admitting against its own
// reservations beside the owner's. Reservations live in memory, so a duplicate that holds some
// stays until they are committed, released or expired (each of those re-checks), and only then
// stops: dropping them would let the calls in flight overshoot when they commit.
func (b *budget) passivateIfMoved(ctx actor.Context) {
	defer func() { b.traceID = "" }()
	if b.tenantID == "" || b.stopping || b.deps.Placement.Owns(KindBudget, b.tenantID) {
		return
	}
	if len(b.res) > 0 {
		return
	}
	b.stopping = true
	b.deps.Logger.Info().Str("tenantId", b.tenantID).Str("traceId", b.traceID).
		Msg("budget: this member does not own the tenant's budget; passivating")
	ctx.Poison(ctx.Self())
}

// periods are the UTC day and month of t.
func periods(t time.Time) (day, month string) {
	t = t.UTC()
	return t.Format("2006-01-02"), t.Format("2006-01")
}

func nextDay(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d+1, 0, 0, 0, 0, time.UTC)
}

func nextMonth(t time.Time) time.Time {
	y, m, _ := t.UTC().Date()
	return time.Date(y, m+1, 1, 0, 0, 0, 0, time.UTC)
}

func (b *budget) reserve(req *pb.BudgetReserveRequest) *pb.BudgetReserveResponse {
	now := b.deps.Now()
	b.expire()
	day, month := periods(now)
	dayC, err := b.counter(day)
	if err != nil {
		return &pb.BudgetReserveResponse{Error: err.Error()}
	}
	monthC, err := b.counter(month)
	if err != nil {
		return &pb.BudgetReserveResponse{Error: err.Error()}
	}
	b.prune(day, month)
	lim := req.GetLimits()
	n := max(0, req.GetTokens())
	remaining := func(limit int64, c *budgetCounter, period string, extra int64) int64 {
		if limit <= 0 {
			return -1
		}
		return max(0, limit-c.used-b.reserved[period]-extra)
	}
	id := req.GetReservationId()
	_, held := b.res[id]
	if !held {
		var resetAt time.Time
		switch {
		case lim.GetDaily() > 0 && dayC.used+b.reserved[day]+n > lim.GetDaily():
			resetAt = nextDay(now)
		case lim.GetMonthly() > 0 && monthC.used+b.reserved[month]+n > lim.GetMonthly():
			resetAt = nextMonth(now)
		}
		if !resetAt.IsZero() {
			return &pb.BudgetReserveResponse{
				Allowed:          false,
				DailyRemaining:   remaining(lim.GetDaily(), dayC, day, 0),
				MonthlyRemaining: remaining(lim.GetMonthly(), monthC, month, 0),
				ResetAtMs:        resetAt.UnixMilli(),
			}
		}
		if id != "" {
			b.res[id] = reservation{tokens: n, day: day, month: month, expiresMs: now.Add(ReservationTTL).UnixMilli()}
			b.reserved[day] += n
			b.reserved[month] += n
		}
	}
	return &pb.BudgetReserveResponse{
		Allowed:          true,
		DailyRemaining:   remaining(lim.GetDaily(), dayC, day, 0),
		MonthlyRemaining: remaining(lim.GetMonthly(), monthC, month, 0),
	}
}

// commit charges the actual tokens to the periods the reservation was admitted in (a call that
// straddles midnight counts for the day it started), or to the current ones when the reservation is
// unknown (expired, or lost with a node).
//
// It is idempotent per reservation: each counter write is published with the message ID
// "<reservation>.<period>", so a commit re-sent after its first grain's member left (having written,
// but not answered) is refused by JetStream's duplicate detection and not charged twice. The window
// is the bucket stream's (2 min); a reservation is committed once, within seconds.
func (b *budget) commit(req *pb.BudgetCommitRequest) error {
	b.expire()
	day, month, actual := b.charge(req)
	if actual == 0 {
		return nil
	}
	id := req.GetReservationId()
	if err := b.add(day, actual, id); err != nil {
		return err
	}
	return b.add(month, actual, id)
}

// commitBatch applies each commit of the batch as commit does (the reservation dropped, the actual
// capped at it, an unknown one charged to the current period), then writes each period's counter
// once with the sum: one JetStream write per period per batch instead of two per call. The writes
// carry "<batch_id>.<period>" as message ID, so the batch is idempotent as a single commit is
// per reservation: a re-sent batch whose first try wrote is recognised as a duplicate.
func (b *budget) commitBatch(req *pb.BudgetCommitBatchRequest) error {
	defer func() { b.traceID = "" }()
	b.expire()
	var order []string // periods in the order first charged, each day before its month as commit writes them
	sums := map[string]int64{}
	for _, c := range req.GetCommits() {
		b.traceID = c.GetTraceId()
		day, month, actual := b.charge(c)
		if actual == 0 {
			continue
		}
		for _, p := range [2]string{day, month} {
			if _, ok := sums[p]; !ok {
				order = append(order, p)
			}
			sums[p] += actual
		}
	}
	b.traceID = ""
	for _, p := range order {
		if err := b.add(p, sums[p], req.GetBatchId()); err != nil {
			return err
		}
	}
	return nil
}

// charge drops the commit's reservation and returns the periods to charge and the tokens to charge
// them: the reservation's periods (a call that straddles midnight counts for the day it started),
// or the current ones when the reservation is unknown (expired, or lost with a node), and the actual
// tokens capped at the reservation.
func (b *budget) charge(req *pb.BudgetCommitRequest) (day, month string, actual int64) {
	r, ok := b.res[req.GetReservationId()]
	if ok {
		b.drop(req.GetReservationId())
	} else {
		r.day, r.month = periods(b.deps.Now())
		b.deps.Logger.Warn().Str("traceId", b.traceID).Str("tenantId", b.tenantID).Str("reservationId", req.GetReservationId()).
			Msg("budget: commit of an unknown or expired reservation; charging it to the current period")
	}
	actual = max(0, req.GetActual())
	if ok && actual > r.tokens {
		// A commit never passes its reservation: the reservation is what admission checked against
		// the limit, so charging more would let concurrent calls together pass the budget (40
		// chats with maxTokens 1 once charged 1,260 tokens to a 300-token budget). The gateway
		// cuts output at maxTokens; what is left over is the estimate's error on the input: routine
		// for short prompts, so not a warning (the Meter counts it in crispy_budget_overrun_tokens_total).
		b.deps.Logger.Debug().Str("traceId", b.traceID).Str("tenantId", b.tenantID).Str("reservationId", req.GetReservationId()).
			Int64("actual", actual).Int64("reserved", r.tokens).Msg("budget: commit above its reservation; charging the reservation")
		actual = r.tokens
	}
	return r.day, r.month, actual
}

// drop removes a reservation and what it held.
func (b *budget) drop(id string) {
	r, ok := b.res[id]
	if !ok {
		return
	}
	delete(b.res, id)
	b.reserved[r.day] -= r.tokens
	b.reserved[r.month] -= r.tokens
	if b.reserved[r.day] <= 0 {
		delete(b.reserved, r.day)
	}
	if b.reserved[r.month] <= 0 {
		delete(b.reserved, r.month)
	}
}

// expire drops reservations past their TTL.
func (b *budget) expire() {
	now := b.deps.Now().UnixMilli()
	for id, r := range b.res {
		if r.expiresMs <= now {
			b.deps.Logger.Warn().Str("tenantId", b.tenantID).Str("reservationId", id).Int64("tokens", r.tokens).
				Msg("budget: reservation expired without commit or release")
			b.drop(id)
		}
	}
}

// prune forgets counters of past periods that no reservation refers to, so a long-lived activation
// does not grow a counter per day.
func (b *budget) prune(day, month string) {
	for p := range b.counters {
		if p != day && p != month && b.reserved[p] == 0 {
			delete(b.counters, p)
		}
	}
}

func (b *budget) status() *pb.BudgetStatusResponse {
	b.expire()
	day, month := periods(b.deps.Now())
	dayC, err := b.counter(day)
	if err != nil {
		return &pb.BudgetStatusResponse{Error: err.Error()}
	}
	monthC, err := b.counter(month)
	if err != nil {
		return &pb.BudgetStatusResponse{Error: err.Error()}
	}
	return &pb.BudgetStatusResponse{
		Day: day, Month: month, DayUsed: dayC.used, MonthUsed: monthC.used,
		DayReserved: b.reserved[day], MonthReserved: b.reserved[month], Reservations: int32(len(b.res)),
	}
}

func (b *budget) key(period string) string { return b.tenantID + "." + period }

// bucket opens the KV bucket on first use, creating it when start-up did not.
func (b *budget) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	if b.kv != nil {
		return b.kv, nil
	}
	if b.tenantID == "" {
		return nil, errors.New("budget: no identity")
	}
	kv, err := b.deps.JS.KeyValue(ctx, BucketBudgets)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = EnsureBudgetBucket(ctx, b.deps.JS, b.deps.Replicas)
	}
	if err != nil {
		return nil, fmt.Errorf("budget: kv bucket %s: %w", BucketBudgets, err)
	}
	b.kv = kv
	return kv, nil
}

// counter returns the period's counter, loading it from KV the first time this activation needs it.
func (b *budget) counter(period string) (*budgetCounter, error) {
	if c, ok := b.counters[period]; ok {
		return c, nil
	}
	c, err := b.load(period)
	if err != nil {
		return nil, err
	}
	b.counters[period] = c
	return c, nil
}

func (b *budget) load(period string) (*budgetCounter, error) {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	kv, err := b.bucket(ctx)
	if err != nil {
		return nil, err
	}
	e, err := kv.Get(ctx, b.key(period))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return &budgetCounter{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("budget %s: load %s: %w", b.tenantID, period, err)
	}
	used, err := strconv.ParseInt(string(e.Value()), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("budget %s: counter %s is not a number: %w", b.tenantID, period, err)
	}
	return &budgetCounter{used: used, rev: e.Revision()}, nil
}

// add adds n tokens to the period's counter with a write conditional on the revision last seen. A
// refusal means another activation wrote: re-read the counter and add again.
func (b *budget) add(period string, n int64, reservationID string) error {
	c, err := b.counter(period)
	if err != nil {
		return err
	}
	var opts []jetstream.PublishOpt
	if reservationID != "" {
		opts = append(opts, jetstream.WithMsgID(reservationID+"."+period))
	}
	for conflicts := 0; ; conflicts++ {
		ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		if _, err := b.bucket(ctx); err != nil {
			cancel()
			return err
		}
		// A KV write is a message on $KV.<bucket>.<key>; publishing it directly adds the message
		// ID a KV Update cannot carry. The expected last subject sequence is the revision read,
		// as Update would send (0: the key does not exist yet, as Create).
		val := []byte(strconv.FormatInt(c.used+n, 10))
		ack, err := b.deps.JS.Publish(ctx, "$KV."+BucketBudgets+"."+b.key(period), val,
			append(opts, jetstream.WithExpectLastSequencePerSubject(c.rev))...)
		cancel()
		if err == nil && ack.Duplicate {
			// Written before by an earlier try of this commit (possibly by another activation):
			// re-read the counter, which already holds it.
			b.deps.Logger.Info().Str("traceId", b.traceID).Str("tenantId", b.tenantID).Str("period", period).
				Str("reservationId", reservationID).Msg("budget: commit already recorded; not charged twice")
			fresh, err := b.load(period)
			if err != nil {
				return err
			}
			*c = *fresh
			return nil
		}
		if err == nil {
			c.used, c.rev = c.used+n, ack.Sequence
			return nil
		}
		if !store.IsWrongLastSequence(err) { // anything but "the counter changed since it was read"
			return fmt.Errorf("budget %s: write %s: %w", b.tenantID, period, err)
		}
		if conflicts >= maxConflicts {
			return fmt.Errorf("budget %s: gave up on %s after %d concurrent-write conflicts: %w", b.tenantID, period, conflicts, err)
		}
		b.deps.Logger.Warn().Str("traceId", b.traceID).Str("tenantId", b.tenantID).Str("period", period).
			Msg("budget: counter write refused (another activation wrote); re-reading")
		fresh, err := b.load(period)
		if err != nil {
			return err
		}
		*c = *fresh
	}
}
