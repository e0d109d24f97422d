package metering

import (
	"context"
	"sync"
	"time"

	"github.com/crispy-enigma/crispy/actors"
	"github.com/crispy-enigma/crispy/observe"
)

// RateLeaseOptions configure rate-limit leases: a node that sees many requests of one user asks
// the tenant's ceiling limiter for a block of permits with one of them, and admits the user's next
// requests from that block by itself, so that a busy user's requests mostly make no round trip to
// the RateLimiter grain (on one node tens of microseconds, on a cluster a hop to the member that
// hosts the tenant's limiter, which every node's requests of the tenant otherwise take).
//
// The grain keeps the limits exact: it grants a lease only when the request itself is admitted,
// at most an eighth of what the ceiling's and the user's windows (burst windows included) have
// room for, and records every permit in both windows at the lease's end, so a permit used at any
// time before that counts in every window it would have counted in, and a little longer (never
// less). The node admits from a lease until Life after it sent the request, which is never later
// than the grain's record. What a node leaves unused goes back with its next request for the user;
// until then (or if the node dies) it counts against the user, at most an eighth of the room at
// the time of the lease. Near a limit leases shrink to nothing and every request is decided by
// the grain, as without leases. The rate-limit headers of a leased admission are the grain's
// numbers at the lease plus what the node has left: exact on one node, this node's view on a
// cluster.
type RateLeaseOptions struct {
	Life time.Duration // how long a lease admits; 0 turns leases off
	// MinRate is how many requests of one user a node must see in one Life before it asks for a
	// lease: a user below it costs no lease state beyond its counter.
	MinRate int
	// MaxPermits bounds the permits asked for at once; a lease asks for what the user's last Life
	// took, at most this.
	MaxPermits int
	// MaxUsers bounds the users a node keeps lease state for; past it, others are decided by the
	// grain alone.
	MaxUsers int
}

// DefaultRateLease is what a node uses unless configured otherwise.
var DefaultRateLease = RateLeaseOptions{Life: 100 * time.Millisecond, MinRate: 8, MaxPermits: 1024, MaxUsers: 4096}

// LeasingLimiter is a RateLimiter and CeilingLimiter that grants leases
// (actors.Client.AllowWithLease).
type LeasingLimiter interface {
	RateLimiter
	CeilingLimiter
	AllowWithLease(ctx context.Context, tenantID, ceilingID string, ceilingLim actors.RateLimit, userID string, userLim actors.RateLimit, lease actors.RateLease) (ceiling, user actors.RateDecision, granted actors.Lease, err error)
}

var _ LeasingLimiter = (*actors.Client)(nil)

// rateLeases is a RateLimiter and CeilingLimiter over inner that admits busy users from leases.
type rateLeases struct {
	inner   LeasingLimiter
	opts    RateLeaseOptions
	now     func() time.Time
	metrics *observe.Metrics

	mu    sync.Mutex
	users map[leaseUser]*userLease // bounded by opts.MaxUsers
	swept time.Time
}

type leaseUser struct{ tenantID, userID string }

// userLease is one user's lease on this node and the request counts that size the next one.
type userLease struct {
	limits [2]actors.RateLimit // ceiling and user limits the lease was granted under
	left   int                 // permits not handed out yet
	until  time.Time           // this node's end of the lease
	at     int64               // where the grain recorded the permits (actors.Lease.Until)
	user   actors.RateDecision // the user's decision at the grant (Remaining without the lease)

	// returned permits of an ended lease, recorded at returnedAt, go back with the next request.
	returned   int
	returnedAt int64

	period time.Time // start of the current count
	count  int       // requests seen since period
	last   int       // requests seen in the period before
	asking bool      // a request is asking for a lease
}

func newRateLeases(inner LeasingLimiter, opts RateLeaseOptions, now func() time.Time, metrics *observe.Metrics) *rateLeases {
	// The grain records a lease's permits whole milliseconds after it decided; this node's end of a
	// lease must not be later.
	opts.Life = opts.Life.Truncate(time.Millisecond)
	return &rateLeases{inner: inner, opts: opts, now: now, metrics: metrics, users: map[leaseUser]*userLease{}}
}

func (r *rateLeases) Allow(ctx context.Context, tenantID, userID string, lim actors.RateLimit) (actors.RateDecision, error) {
	return r.inner.Allow(ctx, tenantID, userID, lim)
}

// AllowWithCeiling admits from the user's lease when it has a permit left, else asks the grain
// (for a lease too when the user is busy).
func (r *rateLeases) AllowWithCeiling(ctx context.Context, tenantID, ceilingID string, ceilingLim actors.RateLimit, userID string, userLim actors.RateLimit) (ceiling, user actors.RateDecision, err error) {
	now := r.now()
	limits := [2]actors.RateLimit{ceilingLim, userLim}
	r.mu.Lock()
	l := r.user(leaseUser{tenantID, userID}, now)
	var ask actors.RateLease
	busy := false
	if l != nil {
		l.counted(now, r.opts.Life)
		busy = l.last >= r.opts.MinRate
		if l.left > 0 && (!now.Before(l.until) || l.limits != limits) {
			l.returned, l.returnedAt, l.left = l.left, l.at, 0 // ended or outdated: give it back
		}
		if l.left > 0 {
			l.left--
			d := l.user
			d.Remaining += l.left
			r.mu.Unlock()
			r.metrics.RateAdmitted.WithLabelValues(tenantID, "lease").Inc()
			return actors.RateDecision{Allowed: true}, d, nil
		}
		ask.Returned, ask.ReturnedAt, l.returned = l.returned, l.returnedAt, 0
		if busy && !l.asking {
			ask.Want, ask.Life, l.asking = min(l.last, r.opts.MaxPermits), r.opts.Life, true
		}
	}
	r.mu.Unlock()

	ceiling, user, granted, err := r.inner.AllowWithLease(ctx, tenantID, ceilingID, ceilingLim, userID, userLim, ask)
	if busy && err == nil && user.Allowed {
		r.metrics.RateAdmitted.WithLabelValues(tenantID, "limiter").Inc() // a busy user's, beside the leased
	}
	if ask.Want == 0 {
		return ceiling, user, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	l.asking = false
	if err == nil && granted.Permits > 0 {
		// now was taken before the request was sent, so now + Life is before the grain's record.
		if l.left > 0 { // cannot happen while asking is held; never lose track of permits
			l.returned, l.returnedAt = l.returned+l.left, l.at
		}
		l.limits, l.left, l.until, l.at, l.user = limits, granted.Permits, now.Add(r.opts.Life), granted.Until, user
		user.Remaining += granted.Permits // this node's to hand out: as good as not yet counted
	}
	return ceiling, user, err
}

// user returns u's lease state, creating it while fewer than MaxUsers are kept (nil past that).
// Called with r.mu held.
func (r *rateLeases) user(u leaseUser, now time.Time) *userLease {
	if l := r.users[u]; l != nil {
		return l
	}
	if len(r.users) >= r.opts.MaxUsers {
		if now.Sub(r.swept) < r.opts.Life {
			return nil // swept within the last Life: not worth another pass yet
		}
		r.sweep(now)
		if len(r.users) >= r.opts.MaxUsers {
			return nil
		}
	}
	l := &userLease{period: now}
	r.users[u] = l
	return l
}

// sweep drops the users seen in neither of the last two Lifes whose lease ended. Permits they had
// still to give back then count against them until they leave the window, as if used. Called with
// r.mu held.
func (r *rateLeases) sweep(now time.Time) {
	r.swept = now
	for u, l := range r.users {
		if now.Sub(l.period) >= 2*r.opts.Life && !l.asking && (l.left == 0 || !now.Before(l.until)) {
			delete(r.users, u)
		}
	}
}

// counted counts a request at now, starting a new period once Life has passed.
func (l *userLease) counted(now time.Time, life time.Duration) {
	if since := now.Sub(l.period); since >= life {
		l.last = l.count
		if since >= 2*life {
			l.last = 0 // a whole period went by without requests
		}
		l.period, l.count = now, 0
	}
	l.count++
}
