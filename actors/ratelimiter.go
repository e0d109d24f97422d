package actors

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"

	"github.com/crispy-enigma/crispy/actors/pb"
)

// rateLimiter is the RateLimiter grain, identity <tenant>:ratelimit:<user>. Its window lives in
// memory only: losing it when a node dies is acceptable (README). Because a grain handles one message
// at a time and has one activation cluster-wide, its decisions are exact under any concurrency.
//
// Like a chat session, an activation on a member that does not own its identity (Placement) answers
// the request in hand and passivates: a duplicate started by a requester with a stale topology would
// otherwise keep its own window beside the owner's until it idles out, and every user would get
// twice the limit during churn. Requests queued behind the stop are re-sent to the owner.
//
// A tenant's ceiling limiter (identity <tenant>:ratelimit:tenant) also keeps the windows of the
// tenant's users when asked for both in one request (RateLimitRequest.user, Client.AllowWithCeiling):
// the ceiling is asked on every request anyway, so one round trip instead of two, and the users'
// decisions stay exact for the same reason the ceiling's are.
type rateLimiter struct {
	deps     Deps
	identity string // from ClusterInit; "" when spawned directly (tests): ownership is not checked
	window   slidingWindow
	lastLim  limits
	lastNow  int64
	stopping bool
	// users are the user windows kept for a ceiling. Only admitted requests make one, so at most
	// the ceiling's limit of them is made per window; windows that emptied are dropped by sweep.
	users     map[string]*userWindow
	swept     int // len(users) after the last sweep
	userLimit limits
}

// userWindow is one user's sliding window inside a ceiling's limiter.
type userWindow struct {
	window slidingWindow
	lim    limits
}

func newRateLimiter(deps Deps) *rateLimiter {
	return &rateLimiter{deps: deps}
}

func (r *rateLimiter) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		ctx.SetReceiveTimeout(r.deps.IdleTimeout)
	case *cluster.ClusterInit:
		if msg.Identity != nil {
			r.identity = msg.Identity.Identity
		}
	case *pb.RateLimitRequest:
		ctx.Respond(r.decide(msg))
		ctx.SetReceiveTimeout(r.idleTimeout())
		r.passivateIfMoved(ctx)
	case *actor.ReceiveTimeout:
		// Passivate only once no admitted request is still relevant, so idling never widens a limit.
		now := r.now()
		r.sweep(now)
		if r.window.empty(now, r.lastLim) && len(r.users) == 0 {
			ctx.Poison(ctx.Self())
			return
		}
		// protoactor disarms the receive timeout when it fires: re-arm it.
		ctx.SetReceiveTimeout(r.idleTimeout())
	}
}

// idleTimeout is how long the limiter waits for its next request before it checks whether it may
// passivate: the idle timeout, but no longer than its window. Its state is worthless once the
// window is empty, and a client cycling through user IDs creates one limiter per ID: they leave
// one window after their last request instead of after the (longer) idle timeout.
func (r *rateLimiter) idleTimeout() time.Duration {
	keep := max(r.lastLim.windowMs, r.lastLim.burstWindow)
	if len(r.users) > 0 {
		keep = max(keep, r.userLimit.windowMs, r.userLimit.burstWindow)
	}
	if w := time.Duration(keep) * time.Millisecond; w > 0 && w < r.deps.IdleTimeout {
		return w
	}
	return r.deps.IdleTimeout
}

// passivateIfMoved stops this activation, after the answer it just gave, when this member does not
// own the identity under its current topology.
func (r *rateLimiter) passivateIfMoved(ctx actor.Context) {
	if r.identity == "" || r.stopping || r.deps.Placement.Owns(KindRateLimiter, r.identity) {
		return
	}
	r.stopping = true
	r.deps.Logger.Info().Str("identity", r.identity).Msg("rate limiter: this member does not own the limiter; passivating")
	ctx.Poison(ctx.Self())
}

// now is the clock in epoch ms, clamped to never go backwards (the window keeps timestamps sorted).
func (r *rateLimiter) now() int64 {
	n := r.deps.Now().UnixMilli()
	if n < r.lastNow {
		n = r.lastNow
	}
	r.lastNow = n
	return n
}

// A lease takes at most 1/leaseShare of what both windows have room for, so leases shrink as a user
// nears a limit and its last requests are decided here one at a time; it admits for at most
// maxLeaseMs.
const (
	leaseShare = 8
	maxLeaseMs = 1000
)

func (r *rateLimiter) decide(req *pb.RateLimitRequest) *pb.RateLimitResponse {
	lim := limitsFromRequest(req)
	r.lastLim = lim
	now := r.now()
	if n := int(req.GetReturned()); n > 0 && req.GetUser() != "" {
		at := req.GetReturnedAtMs()
		r.window.drop(at, n)
		if uw := r.users[req.GetUser()]; uw != nil {
			uw.window.drop(at, n)
		}
	}
	res := toPBDecision(r.window.decide(now, lim))
	if req.GetUser() == "" || !res.GetAllowed() {
		return res // a request the ceiling denies makes no user window
	}
	ulim := limitsFromRequest(req.GetUserLimits())
	r.userLimit = ulim
	if r.users == nil {
		r.users = map[string]*userWindow{}
	}
	uw := r.users[req.GetUser()]
	if uw == nil {
		uw = &userWindow{}
		r.users[req.GetUser()] = uw
	}
	uw.lim = ulim
	res.User = toPBDecision(uw.window.decide(now, ulim))
	if res.User.GetAllowed() && req.GetLease() > 0 && req.GetLeaseMs() > 0 {
		r.lease(req, res, uw, lim, now)
	}
	if len(r.users) >= max(64, 2*r.swept) {
		r.sweep(now) // amortised O(1) per request: the map at most doubles between sweeps
	}
	return res
}

// lease grants the requesting node up to req.lease permits beyond the request just admitted, for
// the user of uw: each is recorded in both windows at the lease's end, so one used at any time
// before that counts wherever it would have counted, and a little longer (never less).
func (r *rateLimiter) lease(req *pb.RateLimitRequest, res *pb.RateLimitResponse, uw *userWindow, lim limits, now int64) {
	n := min(int(req.GetLease()), r.window.room(now, lim)/leaseShare, uw.window.room(now, uw.lim)/leaseShare)
	if n <= 0 {
		return
	}
	until := now + min(int64(req.GetLeaseMs()), maxLeaseMs)
	r.window.recordAt(until, n)
	uw.window.recordAt(until, n)
	res.Leased, res.LeaseUntilMs = int32(n), until
	res.Remaining = max(0, res.Remaining-int32(n))
	res.User.Remaining = max(0, res.User.Remaining-int32(n))
}

// sweep drops the user windows no admitted request is relevant to any more.
func (r *rateLimiter) sweep(now int64) {
	for user, uw := range r.users {
		if uw.window.empty(now, uw.lim) {
			delete(r.users, user)
		}
	}
	r.swept = len(r.users)
}

func toPBDecision(d decision) *pb.RateLimitResponse {
	return &pb.RateLimitResponse{
		Allowed:      d.allowed,
		Limit:        int32(d.limit),
		Remaining:    int32(d.remaining),
		ResetAtMs:    d.resetAtMs,
		RetryAfterMs: d.retryAfterMs,
	}
}

// limitsFromRequest applies docs/api.md's defaults: windowSec = 60, burstWindowSec = windowSec/6.
func limitsFromRequest(req *pb.RateLimitRequest) limits {
	windowSec := int64(req.GetWindowSec())
	if windowSec <= 0 {
		windowSec = 60
	}
	burstSec := int64(req.GetBurstWindowSec())
	if burstSec <= 0 {
		burstSec = max(1, windowSec/6)
	}
	return limits{
		perWindow:   int(req.GetPerMinute()),
		burst:       int(req.GetBurst()),
		windowMs:    windowSec * 1000,
		burstWindow: burstSec * 1000,
	}
}
