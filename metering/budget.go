package metering

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/crispy-enigma/crispy/actors"
	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/store"
)

// ErrBudgetExceeded is returned (as a *BudgetError) for a call whose estimate does not fit the
// tenant's token budget; the model is not called.
var ErrBudgetExceeded = errors.New("token budget exceeded")

// ErrBudgetUnavailable is returned when the Budget grain cannot be asked: the call is not made.
var ErrBudgetUnavailable = errors.New("token budget unavailable")

// BudgetError is a budget refusal: the estimate of the call and when the budget frees up.
type BudgetError struct {
	Estimate int64
	ResetAt  time.Time // zero when unknown
}

func (e *BudgetError) Error() string {
	return fmt.Sprintf("%v: an estimate of %d tokens does not fit", ErrBudgetExceeded, e.Estimate)
}

func (e *BudgetError) Unwrap() error { return ErrBudgetExceeded }

// DefaultMaxOutputTokens is the output part of a budget estimate when the request sets no
// maxTokens: the model may answer up to its own limit, which we cannot know, so we hold a typical
// reply's worth and charge the actual count when the call ends.
const DefaultMaxOutputTokens = 1024

// budgetTimeout bounds a Commit or Release, which run detached from the request (a client that left
// must not leave its reservation held or its tokens uncharged).
const budgetTimeout = 5 * time.Second

// Estimate is the budget estimate of a call (README "Token budgets"): the input, ceil(chars/4) per
// message and at least 1 per non-empty message, over every message sent to the model, plus its max
// output (maxTokens, else DefaultMaxOutputTokens).
func Estimate(msgs []gateway.Message, maxTokens int) int64 {
	var n int64
	for _, m := range msgs {
		n += int64(gateway.EstimateTokens(m.Content))
	}
	if maxTokens <= 0 {
		maxTokens = DefaultMaxOutputTokens
	}
	return n + int64(maxTokens)
}

// budgeted reports whether the tenant has a token budget.
func budgeted(t *config.TenantConfig) bool {
	tb := t.TokenBudget
	return tb != nil && (tb.Daily > 0 || tb.Monthly > 0)
}

// reserve reserves the call's estimate on the tenant's Budget grain, after model selection and
// before any model call. A tenant without tokenBudget is not metered.
func (m *Meter) reserve(ctx context.Context, c *call, estimate int64) error {
	if m.budget == nil || !budgeted(c.tenant) {
		return nil
	}
	tb := c.tenant.TokenBudget
	c.estimate = estimate
	id := uuid.NewString()
	d, err := m.budget.Reserve(ctx, c.tenant.TenantID, id, c.estimate, actors.TokenBudget{Daily: tb.Daily, Monthly: tb.Monthly})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBudgetUnavailable, err)
	}
	if !d.Allowed {
		m.metrics.BudgetRejected.WithLabelValues(c.tenant.TenantID).Inc()
		m.appendEvent(ctx, store.Event{
			Kind: store.KindBudgetExceeded, TenantID: c.tenant.TenantID, TraceID: c.meta.TraceID, SessionID: c.meta.SessionID,
			UserID: c.meta.UserID, Subject: c.meta.Route, Outcome: "rejected",
			Detail: map[string]any{"estimate": c.estimate, "dailyRemaining": d.DailyRemaining, "monthlyRemaining": d.MonthlyRemaining},
		})
		return &BudgetError{Estimate: c.estimate, ResetAt: d.ResetAt}
	}
	c.reserved = id
	return nil
}

// takeReservation hands the call's reservation over to the settle work, as a budgetOp of actual
// tokens (committed when the call was answered, released when it never reached a model); nil when
// it holds none.
func takeReservation(c *call, actual int64) *budgetOp {
	if c.reserved == "" {
		return nil
	}
	op := &budgetOp{tenantID: c.tenant.TenantID, reservationID: c.reserved, traceID: c.meta.TraceID, actual: actual}
	c.reserved = ""
	return op
}

// commitBatch commits a settle batch's reservations of one tenant: in one request when the budget
// takes batches, else one by one.
func (m *Meter) commitBatch(ctx context.Context, tenantID string, commits []actors.BudgetCommit) {
	fail := func(err error, cm actors.BudgetCommit) {
		m.log.Error().Err(err).Str("tenantId", tenantID).Str("traceId", cm.TraceID).
			Int64("tokens", cm.Actual).Msg("budget commit failed")
	}
	if bb, ok := m.budget.(BatchBudgets); ok && len(commits) > 1 {
		ctx, cancel := context.WithTimeout(ctx, budgetTimeout)
		defer cancel()
		if err := bb.CommitBatch(ctx, tenantID, uuid.NewString(), commits); err != nil {
			for _, cm := range commits {
				fail(err, cm)
			}
		}
		return
	}
	for _, cm := range commits {
		ctx, cancel := context.WithTimeout(ctx, budgetTimeout)
		if err := m.budget.Commit(ctx, tenantID, cm.ReservationID, cm.Actual); err != nil {
			fail(err, cm)
		}
		cancel()
	}
}

// doRelease frees a reservation; a failure is logged, not fatal: the reservation expires after
// actors.ReservationTTL.
func (m *Meter) doRelease(ctx context.Context, op *budgetOp) {
	ctx, cancel := context.WithTimeout(ctx, budgetTimeout)
	defer cancel()
	if err := m.budget.Release(ctx, op.tenantID, op.reservationID); err != nil {
		m.log.Warn().Err(err).Str("tenantId", op.tenantID).Str("traceId", op.traceID).Msg("budget release failed")
	}
}
