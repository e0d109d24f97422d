package metering

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/crispy-enigma/crispy/actors"
)

// LeaseOptions configure budget leases: a node reserves a tenant's budget for many calls at once
// and admits calls from that reservation by itself, so that most calls are admitted without a
// round trip to the tenant's Budget grain (on one node a tenth of a millisecond of a call's
// latency, on a cluster a hop to another node).
//
// A lease is one reservation on the Budget grain, Calls times the estimate of the call that asked
// for it. Calls are carved from it while they fit; each is charged its actual tokens (capped at
// its estimate, as the grain caps a reservation) against the lease, and what a call did not use
// goes back to the lease for the next. A lease takes calls for Life at most, then is committed
// with the sum of its calls' charges once the last of them settled: the grain's totals are exact,
// charged later by up to Life. Leases are taken only while the tenant's remaining budget is at
// least Headroom leases; below that every call reserves its own estimate, as without leases, so
// that near a limit no node holds budget another node's call needs.
//
// What a lease costs: a node that dies holding one loses the charges of the calls it admitted
// from it (at most Life of the tenant's calls on that node; the reservation expires after
// actors.ReservationTTL), and near a limit a call may be refused while other nodes' leases still
// hold unused tokens, for at most Life.
type LeaseOptions struct {
	Calls    int64         // estimates per lease; 0 turns leases off
	Life     time.Duration // how long a lease takes new calls
	Headroom int64         // leases only while the remaining budget is at least this many leases
	// Hold is how long a retired lease waits for its open calls before it is committed without
	// them (0: half of actors.ReservationTTL, so before the grain expires the lease). A call that
	// never settles (a bug) then costs its own charge, as a reservation of its own would, not
	// those of every call of its lease; one that settles later is charged on its own.
	Hold time.Duration
}

// DefaultBudgetLease is what a node uses unless configured otherwise.
var DefaultBudgetLease = LeaseOptions{Calls: 64, Life: time.Second, Headroom: 16}

// budgetLeases is Budgets (and BatchBudgets) over inner, handing out reservations from leases.
// Reservations it did not carve from a lease pass through to inner.
type budgetLeases struct {
	inner Budgets
	opts  LeaseOptions
	now   func() time.Time
	log   zerolog.Logger

	mu      sync.Mutex
	tenants map[string]*tenantLease // tenant ID → its lease state (bounded by the tenants served)
	calls   map[string]leasedCall   // reservation ID → the lease it was carved from
	closing int                     // leases being committed in the background
	closed  *sync.Cond              // on mu: closing went down
}

type tenantLease struct {
	cur       *lease        // the lease taking calls; nil: none
	acquiring chan struct{} // non-nil while a lease is being reserved; closed when the grain answered
	// remaining is the tenant's remaining budget after the grain's last answer (the smaller of the
	// limited periods'); -1: not known yet.
	remaining int64
}

type lease struct {
	tenantID string
	id       string // the grain reservation
	lim      actors.TokenBudget
	day      int // the UTC day it was reserved in (the grain charges it to that day)
	size     int64
	taken    int64 // estimates of its open calls plus the charges of its settled ones
	used     int64 // charges of its settled calls
	open     int
	expires  time.Time
	timer    *time.Timer
	retired  bool // takes no more calls; committed once open is 0
	closed   bool // its commit was started
}

type leasedCall struct {
	l      *lease
	tokens int64
}

func newBudgetLeases(inner Budgets, opts LeaseOptions, now func() time.Time, log zerolog.Logger) *budgetLeases {
	opts.Headroom = max(1, opts.Headroom)
	if opts.Hold <= 0 {
		opts.Hold = actors.ReservationTTL / 2
	}
	b := &budgetLeases{inner: inner, opts: opts, now: now, log: log,
		tenants: map[string]*tenantLease{}, calls: map[string]leasedCall{}}
	b.closed = sync.NewCond(&b.mu)
	return b
}

var (
	_ Budgets      = (*budgetLeases)(nil)
	_ BatchBudgets = (*budgetLeases)(nil)
)

func utcDay(t time.Time) int {
	t = t.UTC()
	return t.Year()*1000 + t.YearDay()
}

// fits reports whether a call of tokens under lim may be carved from l at now.
func (l *lease) fits(tokens int64, lim actors.TokenBudget, now time.Time) bool {
	return !l.retired && l.lim == lim && now.Before(l.expires) && utcDay(now) == l.day && l.size-l.taken >= tokens
}

// remainingOf is the smaller remaining of d's limited periods (math.MaxInt64 when neither is).
func remainingOf(d actors.BudgetDecision) int64 {
	r := int64(math.MaxInt64)
	for _, p := range [2]int64{d.DailyRemaining, d.MonthlyRemaining} {
		if p >= 0 {
			r = min(r, p)
		}
	}
	return r
}

// Reserve admits a call from the tenant's lease when it fits, reserving a new lease when it does
// not. A call admitted from a lease gets -1 remaining (not known without asking the grain).
func (b *budgetLeases) Reserve(ctx context.Context, tenantID, reservationID string, tokens int64, lim actors.TokenBudget) (actors.BudgetDecision, error) {
	size := tokens * b.opts.Calls // checked for overflow before a lease is reserved
	for waited := false; ; waited = true {
		b.mu.Lock()
		t := b.tenants[tenantID]
		if t == nil {
			t = &tenantLease{remaining: -1}
			b.tenants[tenantID] = t
		}
		now := b.now()
		if l := t.cur; l != nil {
			if l.fits(tokens, lim, now) {
				l.taken += tokens
				l.open++
				b.calls[reservationID] = leasedCall{l: l, tokens: tokens}
				b.mu.Unlock()
				return actors.BudgetDecision{Allowed: true, DailyRemaining: -1, MonthlyRemaining: -1}, nil
			}
			b.retireLocked(t)
		}
		if t.acquiring != nil && !waited {
			// Another call is reserving the next lease: wait for it rather than reserve beside it.
			ch := t.acquiring
			b.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return actors.BudgetDecision{}, ctx.Err()
			}
		}
		if t.acquiring != nil || tokens <= 0 || tokens > math.MaxInt64/b.opts.Calls/b.opts.Headroom ||
			t.remaining < 0 || t.remaining/b.opts.Headroom < size {
			// A lease is being reserved, or the remaining budget is unknown or too small for one:
			// this call reserves its own estimate, which also tells us the remaining budget.
			b.mu.Unlock()
			d, err := b.inner.Reserve(ctx, tenantID, reservationID, tokens, lim)
			if err == nil {
				b.mu.Lock()
				t.remaining = remainingOf(d)
				b.mu.Unlock()
			}
			return d, err
		}
		ch := make(chan struct{})
		t.acquiring = ch
		b.mu.Unlock()

		id := uuid.NewString()
		d, err := b.inner.Reserve(ctx, tenantID, id, size, lim)
		b.mu.Lock()
		t.acquiring = nil
		close(ch)
		if err != nil {
			b.mu.Unlock()
			return d, err
		}
		t.remaining = remainingOf(d)
		if !d.Allowed {
			// The remaining budget fell below a lease since we last asked: the call reserves alone.
			b.mu.Unlock()
			continue
		}
		now = b.now()
		l := &lease{tenantID: tenantID, id: id, lim: lim, day: utcDay(now), size: size, taken: tokens, open: 1, expires: now.Add(b.opts.Life)}
		l.timer = time.AfterFunc(b.opts.Life, func() { b.expire(l) })
		t.cur = l
		b.calls[reservationID] = leasedCall{l: l, tokens: tokens}
		b.mu.Unlock()
		return d, nil
	}
}

// retireLocked stops t's current lease from taking calls, and commits it in the background when
// none is open.
func (b *budgetLeases) retireLocked(t *tenantLease) {
	l := t.cur
	t.cur = nil
	l.retired = true
	l.timer.Stop()
	if l.open == 0 {
		b.closeInBackgroundLocked(l)
		return
	}
	l.timer = time.AfterFunc(b.opts.Hold, func() { b.abandon(l) })
}

// abandon commits a retired lease whose calls did not all settle within Hold, without them; a
// call that settles later is committed on its own (the grain charges an unknown reservation).
func (b *budgetLeases) abandon(l *lease) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if l.closed {
		return
	}
	for id, c := range b.calls {
		if c.l == l {
			delete(b.calls, id)
		}
	}
	b.log.Warn().Str("tenantId", l.tenantID).Str("reservationId", l.id).Int("open", l.open).
		Msg("budget lease committed without calls that did not settle")
	l.open = 0
	b.closeInBackgroundLocked(l)
}

func (b *budgetLeases) closeInBackgroundLocked(l *lease) {
	l.closed = true
	b.closing++
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), budgetTimeout)
		defer cancel()
		b.commitLease(ctx, l)
		b.mu.Lock()
		b.closing--
		b.closed.Broadcast()
		b.mu.Unlock()
	}()
}

// commitLease charges a closed lease the sum of its calls' charges and frees the rest of it.
func (b *budgetLeases) commitLease(ctx context.Context, l *lease) {
	if err := b.inner.Commit(ctx, l.tenantID, l.id, l.used); err != nil {
		b.log.Error().Err(err).Str("tenantId", l.tenantID).Str("reservationId", l.id).Int64("tokens", l.used).
			Msg("budget lease commit failed")
	}
}

// expire retires l when its life ends (unless a call did before).
func (b *budgetLeases) expire(l *lease) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if t := b.tenants[l.tenantID]; t != nil && t.cur == l {
		b.retireLocked(t)
	}
}

// settle ends the call reserved as id when it was carved from a lease: charged actual tokens
// (capped at its estimate) or released. It reports whether the call was leased, and returns its
// lease when the call was the last one of a retired lease, for the caller to commit.
func (b *budgetLeases) settle(id string, actual int64, charge bool) (closing *lease, leased bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	c, ok := b.calls[id]
	if !ok {
		return nil, false
	}
	delete(b.calls, id)
	l := c.l
	l.open--
	l.taken -= c.tokens
	if charge {
		if actual > c.tokens {
			// Routine, not a fault: a short prompt's chat template costs tokens the estimate cannot
			// see. Counted in crispy_budget_overrun_tokens_total; a line per call was a log flood.
			b.log.Debug().Str("tenantId", l.tenantID).Str("reservationId", id).Int64("actual", actual).Int64("reserved", c.tokens).
				Msg("budget: commit above its reservation; charging the reservation")
		}
		charged := min(max(0, actual), c.tokens)
		l.taken += charged
		l.used += charged
	}
	if l.retired && l.open == 0 && !l.closed {
		l.closed = true
		l.timer.Stop() // the hold
		return l, true
	}
	return nil, true
}

func (b *budgetLeases) Commit(ctx context.Context, tenantID, reservationID string, actual int64) error {
	l, leased := b.settle(reservationID, actual, true)
	if !leased {
		return b.inner.Commit(ctx, tenantID, reservationID, actual)
	}
	if l != nil {
		return b.inner.Commit(ctx, tenantID, l.id, l.used)
	}
	return nil
}

func (b *budgetLeases) Release(ctx context.Context, tenantID, reservationID string) error {
	l, leased := b.settle(reservationID, 0, false)
	if !leased {
		return b.inner.Release(ctx, tenantID, reservationID)
	}
	if l != nil {
		return b.inner.Commit(ctx, tenantID, l.id, l.used)
	}
	return nil
}

// CommitBatch settles the batch's leased calls here and sends the rest, with the commits of the
// leases they closed, to inner in one batch.
func (b *budgetLeases) CommitBatch(ctx context.Context, tenantID, batchID string, commits []actors.BudgetCommit) error {
	var rest []actors.BudgetCommit
	for _, cm := range commits {
		l, leased := b.settle(cm.ReservationID, cm.Actual, true)
		switch {
		case !leased:
			rest = append(rest, cm)
		case l != nil:
			rest = append(rest, actors.BudgetCommit{ReservationID: l.id, Actual: l.used, TraceID: cm.TraceID})
		}
	}
	if bb, ok := b.inner.(BatchBudgets); ok && len(rest) > 1 {
		return bb.CommitBatch(ctx, tenantID, batchID, rest)
	}
	// One by one, each tried whatever the others did (as Meter.commitBatch does): a failed commit
	// must not leave the rest of the batch, a closed lease among them, uncharged.
	var errs []error
	for _, cm := range rest {
		if err := b.inner.Commit(ctx, tenantID, cm.ReservationID, cm.Actual); err != nil {
			errs = append(errs, fmt.Errorf("commit %s: %w", cm.ReservationID, err))
		}
	}
	return errors.Join(errs...)
}

// closeAll retires every lease and waits until those without open calls are committed (a lease
// whose calls are still open is committed when the last settles). Each commit is bounded by
// budgetTimeout.
func (b *budgetLeases) closeAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, t := range b.tenants {
		if t.cur != nil {
			b.retireLocked(t)
		}
	}
	for b.closing > 0 {
		b.closed.Wait()
	}
}
