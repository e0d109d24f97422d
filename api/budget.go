package api

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/crispy-enigma/crispy/actors"
	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/store"
)

// Budgets holds and charges a tenant's token budget (the Budget grain; actors.Client).
type Budgets interface {
	Reserve(ctx context.Context, tenantID, reservationID string, tokens int64, lim actors.TokenBudget) (actors.BudgetDecision, error)
	Commit(ctx context.Context, tenantID, reservationID string, actual int64) error
	Release(ctx context.Context, tenantID, reservationID string) error
}

var _ Budgets = (*actors.Client)(nil)

// DefaultMaxOutputTokens is the output part of a budget estimate when the request sets no
// maxTokens: the model may answer up to its own limit, which we cannot know, so we hold a typical
// reply's worth and charge the actual count when the call ends.
const DefaultMaxOutputTokens = 1024

// budgetTimeout bounds a Commit or Release, which run detached from the request (a client that left
// must not leave its reservation held or its tokens uncharged).
const budgetTimeout = 5 * time.Second

// estimateCall is CONTRACT.md's estimate ("Token budgets"): the input, ceil(chars/4) per message
// and at least 1 per non-empty message, over every message sent to the model, plus its max output
// (maxTokens, else DefaultMaxOutputTokens).
func estimateCall(msgs []gateway.Message, maxTokens int) int64 {
	var n int64
	for _, m := range msgs {
		n += int64(gateway.EstimateTokens(m.Content))
	}
	if maxTokens <= 0 {
		maxTokens = DefaultMaxOutputTokens
	}
	return n + int64(maxTokens)
}

// reserveBudget reserves the call's estimate on the tenant's Budget grain, after the rate limit and
// model selection and before any model call. Over the budget → 429 budget_exceeded (the rate-limit
// headers are already set). A tenant without tokenBudget skips the grain entirely.
func (s *Server) reserveBudget(c echo.Context, call *modelCall, msgs []gateway.Message, maxTokens int) error {
	denied, err := s.reserve(c.Request().Context(), call, msgs, maxTokens)
	if err != nil {
		return Wrap(http.StatusServiceUnavailable, CodeUnavailable, "token budget unavailable, retry shortly", err)
	}
	if denied == nil {
		return nil
	}
	h := c.Response().Header()
	if !denied.ResetAt.IsZero() {
		h.Set("Retry-After", strconv.FormatInt(max(1, ceilSeconds(denied.ResetAt.Sub(s.now()))), 10))
	}
	s.recordRejection(c, store.KindBudgetExceeded, call.userID, budgetDetail(call, *denied))
	return NewError(http.StatusTooManyRequests, CodeBudgetExceeded,
		"token budget exceeded: this request's estimate of "+strconv.FormatInt(call.estimate, 10)+
			" tokens would pass the tenant's tokenBudget")
}

// reserve reserves the call's estimate (CONTRACT.md's rule over msgs, plus the max output) on the
// tenant's Budget grain. A tenant without tokenBudget is not metered. denied is the grain's answer
// when the estimate does not fit; nothing is reserved then.
func (s *Server) reserve(ctx context.Context, call *modelCall, msgs []gateway.Message, maxTokens int) (denied *actors.BudgetDecision, err error) {
	tb := call.tenant.TokenBudget
	if s.chat == nil || s.chat.Budget == nil || tb == nil || (tb.Daily <= 0 && tb.Monthly <= 0) {
		return nil, nil
	}
	call.estimate = estimateCall(msgs, maxTokens)
	id := uuid.NewString()
	d, err := s.chat.Budget.Reserve(ctx, call.tenant.TenantID, id, call.estimate,
		actors.TokenBudget{Daily: tb.Daily, Monthly: tb.Monthly})
	if err != nil {
		return nil, err
	}
	if !d.Allowed {
		s.metrics.BudgetRejected.WithLabelValues(call.tenant.TenantID).Inc()
		return &d, nil
	}
	call.reservationID = id
	return nil, nil
}

func budgetDetail(call *modelCall, d actors.BudgetDecision) map[string]any {
	return map[string]any{"estimate": call.estimate, "dailyRemaining": d.DailyRemaining, "monthlyRemaining": d.MonthlyRemaining}
}

// commitBudget charges the actual tokens and frees the rest of the reservation.
func (s *Server) commitBudget(ctx context.Context, call *modelCall, actual int64) {
	if call.reservationID == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), budgetTimeout)
	defer cancel()
	if err := s.chat.Budget.Commit(ctx, call.tenant.TenantID, call.reservationID, actual); err != nil {
		s.log.Error().Err(err).Str("tenantId", call.tenant.TenantID).Str("traceId", call.traceID).
			Int64("tokens", actual).Msg("budget commit failed")
	}
	call.reservationID = ""
}

// releaseBudget frees the reservation of a call that never reached a model.
func (s *Server) releaseBudget(ctx context.Context, call *modelCall) {
	if call.reservationID == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), budgetTimeout)
	defer cancel()
	if err := s.chat.Budget.Release(ctx, call.tenant.TenantID, call.reservationID); err != nil {
		// Not fatal: the reservation expires after actors.ReservationTTL.
		s.log.Warn().Err(err).Str("tenantId", call.tenant.TenantID).Str("traceId", call.traceID).Msg("budget release failed")
	}
	call.reservationID = ""
}
