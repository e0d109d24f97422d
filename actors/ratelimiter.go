package actors

import (
	"github.com/asynkron/protoactor-go/actor"

	"github.com/crispy-enigma/crispy/actors/pb"
)

// rateLimiter is the RateLimiter grain, identity <tenant>:ratelimit:<user>. Its window lives in
// memory only: losing it when a node dies is acceptable (README). Because a grain handles one message
// at a time and has one activation cluster-wide, its decisions are exact under any concurrency.
type rateLimiter struct {
	deps    Deps
	window  slidingWindow
	lastLim limits
	lastNow int64
}

func newRateLimiter(deps Deps) *rateLimiter {
	return &rateLimiter{deps: deps}
}

func (r *rateLimiter) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		ctx.SetReceiveTimeout(r.deps.IdleTimeout)
	case *pb.RateLimitRequest:
		ctx.Respond(r.decide(msg))
	case *actor.ReceiveTimeout:
		// Passivate only once no admitted request is still relevant, so idling never widens a limit.
		if r.window.empty(r.now(), r.lastLim) {
			ctx.Poison(ctx.Self())
			return
		}
		// protoactor disarms the receive timeout when it fires: re-arm it.
		ctx.SetReceiveTimeout(r.deps.IdleTimeout)
	}
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

func (r *rateLimiter) decide(req *pb.RateLimitRequest) *pb.RateLimitResponse {
	lim := limitsFromRequest(req)
	r.lastLim = lim
	d := r.window.decide(r.now(), lim)
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
