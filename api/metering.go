package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/crispy-enigma/crispy/actors"
	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/metering"
	"github.com/crispy-enigma/crispy/store"
)

// Metering is what the HTTP layer asks of metering.Meter: the model rule before a call's tools
// run, the rate limit of a request, the ledger events that are not model calls, and the wait for
// settle work on shutdown. Model calls themselves are metered inside the Router.
type Metering interface {
	SelectModels(t *config.TenantConfig, requested string) (primary, fallback string, err error)
	AllowRequest(ctx context.Context, t *config.TenantConfig, identity string, who metering.Caller) (d actors.RateDecision, ceilingDenied bool, err error)
	Record(ctx context.Context, ev store.Event)
	Wait(ctx context.Context) error
}

var _ Metering = (*metering.Meter)(nil)

// modelCallError maps a failed model call to the envelope: refusals of the Meter (model rule,
// budget) keep their own codes, every other failure is the model's (502 ai_error).
func (s *Server) modelCallError(h http.Header, model string, err error) *Error {
	var be *metering.BudgetError
	switch {
	case errors.As(err, &be):
		if !be.ResetAt.IsZero() {
			h.Set("Retry-After", strconv.FormatInt(max(1, ceilSeconds(be.ResetAt.Sub(s.now()))), 10))
		}
		return NewError(http.StatusTooManyRequests, CodeBudgetExceeded,
			"token budget exceeded: this request's estimate of "+strconv.FormatInt(be.Estimate, 10)+
				" tokens would pass the tenant's tokenBudget")
	case errors.Is(err, metering.ErrBudgetUnavailable):
		return Wrap(http.StatusServiceUnavailable, CodeUnavailable, "token budget unavailable, retry shortly", err)
	case gateway.IsModelNotFound(err):
		// The provider does not know the model (a catch-all route passed the name on).
		return Wrap(http.StatusNotFound, CodeModelNotFound, modelErrorMessage(model, err), err)
	case errors.Is(err, metering.ErrModelNotAllowed):
		return Wrap(http.StatusForbidden, CodeModelNotAllowed, modelNotAllowedMessage(model), err)
	}
	return Wrap(http.StatusBadGateway, CodeAIError, modelErrorMessage(model, err), err)
}

func modelNotAllowedMessage(model string) string {
	return "model " + strconv.Quote(model) + " is not in this tenant's allowedModels"
}

// selectModels applies the one model-selection rule (metering.SelectModels): 403 before any work.
func (s *Server) selectModels(t *config.TenantConfig, requested string) (primary, fallback string, err error) {
	// The tenant's own rule first: a model it may not use is 403 whether or not it exists, so the
	// answer tells nothing about models the tenant cannot use.
	primary, fallback, err = s.meter.SelectModels(t, requested)
	if err != nil {
		return "", "", Wrap(http.StatusForbidden, CodeModelNotAllowed, modelNotAllowedMessage(cmpOr(requested, s.env.ModelID, t.AIModels.Chat)), err)
	}
	if err := s.checkServed(t, requested); err != nil {
		return "", "", err
	}
	return primary, fallback, nil
}

// recordEvent appends a ledger event in the background (metering.Meter.Record).
func (s *Server) recordEvent(ctx context.Context, ev store.Event) {
	if s.meter != nil {
		s.meter.Record(ctx, ev)
	}
}

// modelErrorMessage is client-safe: it names the model and the kind of failure, not internals.
func modelErrorMessage(model string, err error) string {
	if errors.Is(err, gateway.ErrModelNotServed) {
		return "model " + strconv.Quote(model) + " is not served by any configured provider"
	}
	var ue *gateway.UpstreamError
	if errors.As(err, &ue) {
		return "model " + strconv.Quote(ue.Model) + " failed upstream (status " + strconv.Itoa(ue.Status) + ")"
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "model " + strconv.Quote(model) + " timed out"
	}
	return "model " + strconv.Quote(model) + " failed"
}

// checkServed refuses a model the client names that no route serves: 404 model_not_found before
// any other rule, so a typo neither falls back silently nor becomes a 502 or a metric label.
// The models the operator configured (MODEL_ID, the tenant's aiModels.chat) keep their fallback
// when they are not served (an @cf/ model on a node without a Cloudflare token answers through
// local/extractive), as do models that exist and fail. Without a router that describes models
// (ModelPricer), nothing is refused here.
func (s *Server) checkServed(t *config.TenantConfig, requested string) error {
	if requested == "" || requested == s.env.ModelID || requested == t.AIModels.Chat || s.chat == nil {
		return nil
	}
	d, ok := s.chat.Models.(ModelPricer)
	if !ok {
		return nil
	}
	if _, err := d.Describe(requested); errors.Is(err, gateway.ErrModelNotServed) {
		return Wrap(http.StatusNotFound, CodeModelNotFound, modelErrorMessage(requested, err), err)
	}
	return nil
}
