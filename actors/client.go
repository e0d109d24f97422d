package actors

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"github.com/crispy-enigma/crispy/actors/pb"
	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/observe"
)

// Message is one chat message.
type Message struct {
	Role       string
	Content    string
	Timestamp  time.Time // zero = the grain stamps it when storing
	TokenCount int
	// Responses API fields (POST /v1/responses), empty for /chat messages: see pb.ChatMessage.
	ResponseID    string
	Model         string
	TokensIn      int
	ToolCallID    string
	ToolCallsJSON string
}

// Retention is the tenant's session retention (sessionRetentionDays, maxMessagesPerSession).
// Zero fields mean no limit.
type Retention struct {
	MaxAge      time.Duration
	MaxMessages int
}

// RateLimit is the tenant's rateLimit config. WindowSec 0 means 60 and BurstWindowSec 0 means
// WindowSec/6 (docs/api.md defaults); Burst 0 disables the burst window.
type RateLimit struct {
	PerMinute, Burst, WindowSec, BurstWindowSec int
}

// RateDecision is the RateLimiter's answer, what the rate-limit headers need.
type RateDecision struct {
	Allowed   bool
	Limit     int       // x-ratelimit-limit (= perMinute)
	Remaining int       // x-ratelimit-remaining
	ResetAt   time.Time // x-ratelimit-reset (epoch ms)
	// RetryAfter is the time until a request would be admitted (0 when allowed); Retry-After is
	// its ceiling in seconds, at least 1.
	RetryAfter time.Duration
}

// RetryAfterSeconds is the Retry-After header value of a denied request: RetryAfter rounded up to
// whole seconds, at least 1. It is 0 when the request was allowed.
func (d RateDecision) RetryAfterSeconds() int {
	if d.Allowed {
		return 0
	}
	return max(1, int((d.RetryAfter+time.Second-1)/time.Second))
}

// ErrGrain wraps an error a grain reported (storage failure and the like).
var ErrGrain = errors.New("grain error")

// Client is the typed API of the grains for the HTTP layer. It is safe for concurrent use.
type Client struct {
	c       *cluster.Cluster
	timeout time.Duration
	fo      *failover
	tracer  observe.Tracer // disabled unless WithTracer
}

// NewClient returns a client sending through c, a started cluster member; timeout bounds every
// request (a sooner ctx deadline wins). The client follows c's topology for the life of c's actor
// system: requests to a member that leaves fail (or are re-sent) at once, not after timeout.
func NewClient(c *cluster.Cluster, timeout time.Duration) *Client {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	return &Client{c: c, timeout: timeout, fo: newFailover(c)}
}

// WithTracer returns a client like c (sharing its cluster and failover tracking) that records one
// span per grain request with t.
func (c *Client) WithTracer(t observe.Tracer) *Client {
	cp := *c
	cp.tracer = t
	return &cp
}

// Append stores msgs in order in the session, after applying retention; it returns once JetStream
// acknowledged them. Several messages are stored atomically: all or none.
func (c *Client) Append(ctx context.Context, tenantID, sessionID string, msgs []Message, r Retention) error {
	return c.appendMsgs(ctx, tenantID, sessionID, msgs, r, false)
}

// AppendNew is Append for a session ID the caller has just created (a random ID it never handed out
// before this request): the session's activation does not load a history it cannot have. Should the
// session have messages after all, the write is refused by its expected sequence and the session
// loads and retries, so the result is the same as Append's.
func (c *Client) AppendNew(ctx context.Context, tenantID, sessionID string, msgs []Message, r Retention) error {
	return c.appendMsgs(ctx, tenantID, sessionID, msgs, r, true)
}

func (c *Client) appendMsgs(ctx context.Context, tenantID, sessionID string, msgs []Message, r Retention, newSession bool) error {
	id, err := sessionIdentity(tenantID, sessionID)
	if err != nil {
		return err
	}
	// The request ID makes re-sending safe when the grain's member leaves before answering: the
	// grain skips messages it already stored under this ID.
	req := &pb.AppendRequest{Messages: toPBMessages(msgs), Retention: toPBRetention(r), RequestId: uuid.NewString(), TraceId: observe.TraceID(ctx), NewSession: newSession}
	res, err := requestIdempotent[*pb.AppendResponse](ctx, c, id, KindChatSession, req)
	if err != nil {
		return err
	}
	return grainErr(res.GetError())
}

// History returns the session's messages, oldest first: the newest limit (0 = all) of those with a
// timestamp before before (zero = no bound), after applying retention.
func (c *Client) History(ctx context.Context, tenantID, sessionID string, r Retention, limit int, before time.Time) ([]Message, error) {
	id, err := sessionIdentity(tenantID, sessionID)
	if err != nil {
		return nil, err
	}
	req := &pb.HistoryRequest{Retention: toPBRetention(r), Limit: int32(max(0, limit)), TraceId: observe.TraceID(ctx)}
	if !before.IsZero() {
		req.BeforeMs = before.UnixMilli()
	}
	res, err := requestIdempotent[*pb.HistoryResponse](ctx, c, id, KindChatSession, req)
	if err != nil {
		return nil, err
	}
	if err := grainErr(res.GetError()); err != nil {
		return nil, err
	}
	out := make([]Message, len(res.GetMessages()))
	for i, m := range res.GetMessages() {
		out[i] = fromPBMessage(m) // responses.go
	}
	return out, nil
}

// Clear erases the session's stored messages.
func (c *Client) Clear(ctx context.Context, tenantID, sessionID string) error {
	id, err := sessionIdentity(tenantID, sessionID)
	if err != nil {
		return err
	}
	res, err := requestIdempotent[*pb.ClearResponse](ctx, c, id, KindChatSession, &pb.ClearRequest{TraceId: observe.TraceID(ctx)})
	if err != nil {
		return err
	}
	return grainErr(res.GetError())
}

// Allow asks the user's RateLimiter whether one more request is admitted, and records it if so.
func (c *Client) Allow(ctx context.Context, tenantID, userID string, lim RateLimit) (RateDecision, error) {
	id, err := rateLimitIdentity(tenantID, userID)
	if err != nil {
		return RateDecision{}, err
	}
	// Re-sent when the limiter's member leaves: its window died with the member, so one admission
	// counted there and again on the new activation costs nothing that was not already lost.
	req := toPBRateLimit(lim)
	req.TraceId = observe.TraceID(ctx)
	res, err := requestIdempotent[*pb.RateLimitResponse](ctx, c, id, KindRateLimiter, req)
	if err != nil {
		return RateDecision{}, err
	}
	return fromPBDecision(res), nil
}

// AllowWithCeiling asks the tenant's ceiling limiter (identity ceilingID, e.g. "tenant") and, when it
// admits, the user's limit in the same request: one grain round trip instead of Allow's two. The
// ceiling's limiter keeps the user windows; a request the ceiling denies makes none. user is the
// user's decision, the zero RateDecision when the ceiling denied.
func (c *Client) AllowWithCeiling(ctx context.Context, tenantID, ceilingID string, ceilingLim RateLimit, userID string, userLim RateLimit) (ceiling, user RateDecision, err error) {
	ceiling, user, _, err = c.AllowWithLease(ctx, tenantID, ceilingID, ceilingLim, userID, userLim, RateLease{})
	return ceiling, user, err
}

// RateLease asks the ceiling limiter for permits beyond one request, for the node to admit the
// same user on its own (metering's rate leases), and gives back those of an earlier lease.
type RateLease struct {
	Want int           // permits wanted beyond this request; 0: no lease
	Life time.Duration // how long the node admits from the lease
	// Returned permits of the lease that ended at ReturnedAt (a Lease.Until) will not be used.
	Returned   int
	ReturnedAt int64
}

// Lease is what a ceiling limiter granted: Permits beyond the request just admitted, recorded in
// both windows at Until (the grain's clock, epoch ms) and left out of both decisions' Remaining.
type Lease struct {
	Permits int
	Until   int64
}

// AllowWithLease is AllowWithCeiling asking for a lease as well (when the user's request is
// admitted and both windows have room to spare) and giving back what lease.Returned says.
func (c *Client) AllowWithLease(ctx context.Context, tenantID, ceilingID string, ceilingLim RateLimit, userID string, userLim RateLimit, lease RateLease) (ceiling, user RateDecision, granted Lease, err error) {
	if userID == "" || len(userID) > config.MaxUserIDLen { // as rateLimitIdentity checks it for Allow
		return RateDecision{}, RateDecision{}, Lease{}, fmt.Errorf("user %q: %w", userID, ErrInvalidID)
	}
	id, err := rateLimitIdentity(tenantID, ceilingID)
	if err != nil {
		return RateDecision{}, RateDecision{}, Lease{}, err
	}
	req := toPBRateLimit(ceilingLim)
	req.TraceId, req.User, req.UserLimits = observe.TraceID(ctx), userID, toPBRateLimit(userLim)
	if lease.Want > 0 && lease.Life > 0 {
		req.Lease, req.LeaseMs = int32(lease.Want), int32(max(1, lease.Life.Milliseconds()))
	}
	if lease.Returned > 0 {
		req.Returned, req.ReturnedAtMs = int32(lease.Returned), lease.ReturnedAt
	}
	// Re-sent when the member leaves, as Allow's: the windows died with the member.
	res, err := requestIdempotent[*pb.RateLimitResponse](ctx, c, id, KindRateLimiter, req)
	if err != nil {
		return RateDecision{}, RateDecision{}, Lease{}, err
	}
	ceiling = fromPBDecision(res)
	switch {
	case !ceiling.Allowed:
		return ceiling, RateDecision{}, Lease{}, nil
	case res.GetUser() == nil:
		// A member running a version without RateLimitRequest.user hosts the ceiling (a rolling
		// upgrade): it decided its own window only. Ask the user's own limiter, as before.
		user, err = c.Allow(ctx, tenantID, userID, userLim)
		return ceiling, user, Lease{}, err
	}
	return ceiling, fromPBDecision(res.GetUser()), Lease{Permits: int(res.GetLeased()), Until: res.GetLeaseUntilMs()}, nil
}

func toPBRateLimit(lim RateLimit) *pb.RateLimitRequest {
	return &pb.RateLimitRequest{
		PerMinute:      int32(lim.PerMinute),
		Burst:          int32(lim.Burst),
		WindowSec:      int32(lim.WindowSec),
		BurstWindowSec: int32(lim.BurstWindowSec),
	}
}

func fromPBDecision(res *pb.RateLimitResponse) RateDecision {
	return RateDecision{
		Allowed:    res.GetAllowed(),
		Limit:      int(res.GetLimit()),
		Remaining:  int(res.GetRemaining()),
		ResetAt:    time.UnixMilli(res.GetResetAtMs()),
		RetryAfter: time.Duration(res.GetRetryAfterMs()) * time.Millisecond,
	}
}

func toPBRetention(r Retention) *pb.Retention {
	return &pb.Retention{MaxAgeMs: r.MaxAge.Milliseconds(), MaxMessages: int32(max(0, r.MaxMessages))}
}

func grainErr(s string) error {
	if s == "" {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrGrain, s)
}

// maxDeliveryAttempts bounds how often a request is re-sent after it was not delivered (dead letter:
// the cached activation passivated or its member left).
const maxDeliveryAttempts = 6

// ErrMemberLeft is returned for a request whose grain's member left the cluster (crashed, or was
// stopped) before it answered, when the request is not safe to re-send: it may have been processed.
var ErrMemberLeft = errors.New("grain's member left the cluster before answering")

// errLookupAbandoned is a lookup given up because a member left while it waited: it may have been
// asking the departed member's placement actor, which never answers.
var errLookupAbandoned = errors.New("identity lookup abandoned: a member left")

// retryPolicy says what request does when the grain's member leaves before answering.
type retryPolicy bool

const (
	// failOnLeave returns ErrMemberLeft at once: the grain may have processed the message.
	failOnLeave retryPolicy = false
	// resendOnLeave re-sends to the new owner: the request is idempotent (reads, Clear, an Append
	// with a request ID), or losing its first effect is harmless (a RateLimiter's admission, whose
	// state died with the member anyway).
	resendOnLeave retryPolicy = true
)

// request sends msg to the grain and waits for a reply of type R. It fails fast (ErrMemberLeft) when
// the member hosting the grain leaves the cluster before answering; use requestIdempotent for
// requests that may be re-sent then. See send.
func request[R proto.Message](ctx context.Context, c *Client, identity, kind string, msg proto.Message) (R, error) {
	return send[R](ctx, c, identity, kind, msg, failOnLeave)
}

// requestIdempotent is request for messages that are safe to deliver twice: when the grain's member
// leaves before answering, the message is re-sent to the grain's new activation on another member.
func requestIdempotent[R proto.Message](ctx context.Context, c *Client, identity, kind string, msg proto.Message) (R, error) {
	return send[R](ctx, c, identity, kind, msg, resendOnLeave)
}

// send resolves the grain's PID through the cluster's PID cache (one identity lookup per activation,
// not per request) and sends with a future, which costs a few µs instead of cluster.Request's ~15 µs.
//
// Failures are handled by what they say about delivery:
//   - a dead letter (stale PID: the activation passivated) was never processed: drop the cache entry
//     and resend;
//   - the grain's member left the topology while the request waited (a crash: the reply will never
//     come): the client's topology subscription stops the future at once instead of letting it wait
//     for the timeout; the request is re-sent to the new owner under resendOnLeave, and fails with
//     ErrMemberLeft otherwise;
//   - a timeout is not retried: the grain is alive and may have processed the message.
func send[R proto.Message](ctx context.Context, c *Client, identity, kind string, msg proto.Message, policy retryPolicy) (R, error) {
	if !c.tracer.Enabled() {
		return deliver[R](ctx, c, identity, kind, msg, policy)
	}
	// One span per request, re-sends included: the span's duration is what the caller waited.
	ctx, span := c.tracer.Start(ctx, "grain "+kind, trace.SpanKindClient)
	span.SetAttributes(
		attribute.String("grain.kind", kind),
		attribute.String("grain.request", string(msg.ProtoReflect().Descriptor().Name())),
		attribute.String("crispy.trace_id", observe.TraceID(ctx)),
	)
	res, err := deliver[R](ctx, c, identity, kind, msg, policy)
	observe.EndSpan(span, err)
	return res, err
}

// deliver is send without the span.
func deliver[R proto.Message](ctx context.Context, c *Client, identity, kind string, msg proto.Message, policy retryPolicy) (R, error) {
	var zero R
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	deadline := time.Now().Add(c.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	system := c.c.ActorSystem
	var lastErr error
	for attempt := 0; attempt < maxDeliveryAttempts; attempt++ {
		if attempt > 0 {
			// The placement actor may not have seen the old activation's termination yet: back off
			// briefly (1, 4, 9, 16, 25 ms) so it can, instead of resolving the same dead PID again.
			select {
			case <-ctx.Done():
				return zero, ctx.Err()
			case <-time.After(time.Duration(attempt*attempt) * time.Millisecond):
			}
		}
		remaining := time.Until(deadline)
		if remaining <= 0 {
			break
		}
		pid, err := c.resolve(ctx, identity, kind, remaining)
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return zero, ctxErr
			}
			lastErr = err
			continue
		}
		f := actor.NewFuture(system, remaining)
		call := c.fo.track(pid, func() { system.Root.Stop(f.PID()) })
		system.Root.RequestWithCustomSender(pid, msg, f.PID())
		res, err := wait(ctx, system, f)
		memberLeft, activationEnded := c.fo.untrack(call)
		if err == nil {
			typed, ok := res.(R)
			if !ok {
				return zero, fmt.Errorf("%s %s: unexpected reply %T", kind, identity, res)
			}
			return typed, nil
		}
		if memberLeft && ctx.Err() == nil {
			c.c.PidCache.RemoveByValue(identity, kind, pid)
			if policy == failOnLeave {
				return zero, fmt.Errorf("%s %s at %s: %w", kind, identity, pid.Address, ErrMemberLeft)
			}
			lastErr = fmt.Errorf("%s %s at %s: %w", kind, identity, pid.Address, ErrMemberLeft)
			continue
		}
		if activationEnded && ctx.Err() == nil {
			// The activation stopped (moved after a topology change, or passivated) with this
			// request still in its mailbox, where protoactor drops it without a reply. Its reply,
			// had there been one, would have arrived before the termination (one connection, in
			// order), so the grain never handled it: re-sending is safe for every request.
			c.c.PidCache.RemoveByValue(identity, kind, pid)
			lastErr = fmt.Errorf("%s %s at %s: %w", kind, identity, pid.Address, errActivationEnded)
			continue
		}
		if errors.Is(err, actor.ErrDeadLetter) || errors.Is(err, remote.ErrDeadLetter) {
			c.c.PidCache.RemoveByValue(identity, kind, pid)
			lastErr = err
			continue
		}
		if errors.Is(err, actor.ErrTimeout) || errors.Is(err, remote.ErrTimeout) {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return zero, ctxErr
			}
			return zero, fmt.Errorf("%s %s: %w (%w)", kind, identity, context.DeadlineExceeded, err)
		}
		return zero, fmt.Errorf("%s %s: %w", kind, identity, err)
	}
	if lastErr == nil {
		lastErr = context.DeadlineExceeded
	}
	return zero, fmt.Errorf("%s %s: not delivered: %w", kind, identity, lastErr)
}

// resolve returns the grain's PID: from the PID cache, or by an identity lookup. A cached PID on a
// member that is no longer in the topology is dropped.
//
// The lookup (disthash) asks the owner's placement actor with a fixed 5 s timeout. Right after a
// crash, before the member's key expired, the owner may be the dead member: the lookup runs in its own
// goroutine and is abandoned as soon as a member leaves, so the retry asks the new owner instead of
// waiting those 5 s out. Lookups happen once per activation, so the goroutine is not on the hot path.
func (c *Client) resolve(ctx context.Context, identity, kind string, limit time.Duration) (*actor.PID, error) {
	if pid, ok := c.c.PidCache.Get(identity, kind); ok && pid != nil {
		if c.fo.isMember(pid.Address) {
			return pid, nil
		}
		c.c.PidCache.RemoveByValue(identity, kind, pid)
	}
	left := c.fo.leftSignal()
	found := make(chan *actor.PID, 1)
	go func() { found <- c.c.Get(identity, kind) }()
	timer := time.NewTimer(limit)
	defer timer.Stop()
	var pid *actor.PID
	select {
	case pid = <-found:
	case <-left:
		return nil, fmt.Errorf("%s %s: %w", kind, identity, errLookupAbandoned)
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-timer.C:
		return nil, fmt.Errorf("%s %s: identity lookup: %w", kind, identity, context.DeadlineExceeded)
	}
	if pid == nil {
		return nil, fmt.Errorf("%s %s: no activation (no member hosts kind, or the owner did not answer)", kind, identity)
	}
	if !c.fo.isMember(pid.Address) {
		// The lookup ran on a topology that still had the departed member.
		return nil, fmt.Errorf("%s %s at %s: %w", kind, identity, pid.Address, ErrMemberLeft)
	}
	c.c.PidCache.Set(identity, kind, pid)
	return pid, nil
}

// errActivationEnded is a request whose grain activation stopped before answering it.
var errActivationEnded = errors.New("grain activation stopped before answering")

// errStopped is a future stopped without a reply: by failover (member left) or ctx.
var errStopped = errors.New("request stopped before a reply")

// wait waits for the future, or for ctx to end: then it stops the future (no goroutine per request,
// which matters on the hot path) and returns ctx's error.
func wait(ctx context.Context, system *actor.ActorSystem, f *actor.Future) (any, error) {
	var stop func() bool
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, func() { system.Root.Stop(f.PID()) })
	}
	res, err := f.Result()
	if stop != nil {
		stop()
	}
	if res == nil && err == nil {
		// A stopped future resolves with neither a result nor an error.
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, errStopped
	}
	return res, err
}

// failover tracks the requests in flight per member address and per grain activation, and the
// current topology, so that a request whose reply will not come fails at once instead of after the
// whole request timeout:
//
//   - A member leaving: remote has no way to know the reply will not come, which made the first
//     request of an affected session take ~10 s after a SIGKILL although the member left the
//     topology after ~3 s.
//   - An activation stopping: when a member joins, disthash poisons the activations that now belong
//     to it (and a grain passivates by poisoning itself). Requests that reach the mailbox after the
//     poison are dropped by protoactor without a dead letter, so callers that had resolved the old
//     PID waited out the timeout: the soak saw a few 503s after 10 s at every node restart. The
//     placement actor broadcasts ActivationTerminated to every member's event stream once the
//     activation stopped; that ends the requests still waiting on it.
type failover struct {
	mu      sync.Mutex
	members map[string]bool // addresses in the current topology; nil until the first one is known
	// calls are the requests in flight: a few per request being served. They are scanned when a
	// member leaves or an activation stops, which is rare next to requests; one long-lived set
	// keeps track and untrack free of allocations (a set per member and per activation was
	// made and dropped again on every request).
	calls map[*call]struct{}
	left  chan struct{} // closed and replaced whenever a member leaves
}

// call is one request in flight, to the activation whose PID has address addr and ID id.
type call struct {
	addr, id        string
	stop            func()
	memberLeft      bool // guarded by failover.mu
	activationEnded bool // guarded by failover.mu
}

func newFailover(c *cluster.Cluster) *failover {
	fo := &failover{calls: map[*call]struct{}{}, left: make(chan struct{})}
	if ms := c.MemberList.Members().Members(); len(ms) > 0 {
		fo.setMembers(ms)
	}
	c.ActorSystem.EventStream.Subscribe(func(evt any) {
		switch e := evt.(type) {
		case *cluster.ClusterTopology:
			fo.onTopology(e)
		case *cluster.ActivationTerminated:
			fo.onActivationTerminated(e.GetPid())
			// Forget the PID of a passivated activation: protoactor's PID cache keeps entries
			// until a request hits a dead letter, and a cached PID holds on to its whole stopped
			// actor (the PID caches a pointer to its process), so every session that passivated
			// kept about 1.5 KB of heap.
			if id := e.GetClusterIdentity(); id != nil && e.GetPid() != nil {
				c.PidCache.RemoveByValue(id.GetIdentity(), id.GetKind(), e.GetPid())
			}
		}
	})
	return fo
}

func (fo *failover) setMembers(ms []*cluster.Member) {
	fo.members = make(map[string]bool, len(ms))
	for _, m := range ms {
		fo.members[m.Address()] = true
	}
}

// onTopology records the new member set and stops every request in flight to a member that left.
func (fo *failover) onTopology(t *cluster.ClusterTopology) {
	var stops []func()
	fo.mu.Lock()
	fo.setMembers(t.GetMembers())
	if len(t.GetLeft()) > 0 {
		left := make(map[string]bool, len(t.GetLeft()))
		for _, m := range t.GetLeft() {
			left[m.Address()] = true
		}
		for cl := range fo.calls {
			if left[cl.addr] {
				cl.memberLeft = true
				stops = append(stops, cl.stop)
				delete(fo.calls, cl)
			}
		}
		close(fo.left)
		fo.left = make(chan struct{})
	}
	fo.mu.Unlock()
	for _, stop := range stops {
		stop()
	}
}

// onActivationTerminated stops every request in flight to the activation pid.
func (fo *failover) onActivationTerminated(pid *actor.PID) {
	if pid == nil {
		return
	}
	var stops []func()
	fo.mu.Lock()
	for cl := range fo.calls {
		if cl.addr == pid.GetAddress() && cl.id == pid.GetId() {
			cl.activationEnded = true
			stops = append(stops, cl.stop)
			delete(fo.calls, cl)
		}
	}
	fo.mu.Unlock()
	for _, stop := range stops {
		stop()
	}
}

// isMember reports whether addr is in the current topology (true while the topology is unknown).
func (fo *failover) isMember(addr string) bool {
	fo.mu.Lock()
	defer fo.mu.Unlock()
	return fo.members == nil || fo.members[addr]
}

// leftSignal is closed when the next member leaves.
func (fo *failover) leftSignal() <-chan struct{} {
	fo.mu.Lock()
	defer fo.mu.Unlock()
	return fo.left
}

// track registers a request to the activation pid; stop ends its future. A request to a member that
// already left is stopped at once (the topology changed between resolving the PID and sending).
func (fo *failover) track(pid *actor.PID, stop func()) *call {
	cl := &call{addr: pid.GetAddress(), id: pid.GetId(), stop: stop}
	fo.mu.Lock()
	if fo.members != nil && !fo.members[cl.addr] {
		cl.memberLeft = true
		fo.mu.Unlock()
		stop()
		return cl
	}
	fo.calls[cl] = struct{}{}
	fo.mu.Unlock()
	return cl
}

// untrack ends the request's tracking and reports whether its member left, or its activation
// stopped, while it was in flight.
func (fo *failover) untrack(cl *call) (memberLeft, activationEnded bool) {
	fo.mu.Lock()
	defer fo.mu.Unlock()
	delete(fo.calls, cl)
	return cl.memberLeft, cl.activationEnded
}

// EnsureStreams creates or updates the CHAT stream: subjects chat.>, file storage, the given replicas.
//
// Direct gets are off: with them, any replica answers a get, and a follower that lags behind the
// leader would hand a grain activating after a move a history without the newest acknowledged
// messages (the conditional write would then be refused and reload, but History would already have
// answered with the stale view). Without them, gets are answered by the stream leader, which has
// applied every acknowledged write. Loads happen once per activation, so the extra hop is cheap.
//
// Atomic publish is on: on a replicated stream a chat session stores an exchange (the user's message
// and the reply) as one batch, one write and one acknowledgement (on one replica it stores the
// exchange as one message instead; see chatSession.append).
func EnsureStreams(ctx context.Context, js jetstream.JetStream, replicas int) error {
	if replicas <= 0 {
		replicas = 1
	}
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        StreamChat,
		Description: "chat sessions on chat.<tenant>.<session>: a message per chat message or per exchange",
		Subjects:    []string{"chat.>"},
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		AllowDirect: false,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		// Atomic batches: see chatSession.append.
		AllowAtomicPublish: true,
	})
	if err != nil {
		return fmt.Errorf("ensure stream %s: %w", StreamChat, err)
	}
	return nil
}
