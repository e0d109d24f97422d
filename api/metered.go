package api

import (
	"context"
	"errors"
	"fmt"

	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/store"
)

// ErrBudgetExceeded is returned by metered model calls whose estimate does not fit the tenant's
// token budget; the model is not called.
var ErrBudgetExceeded = errors.New("token budget exceeded")

// meteredModels meters the model calls that are not /chat's own — the model-backed tools and
// search's query rewrite — exactly as /chat meters its calls: the tenant's token budget (reserve
// the estimate, commit the actual), the model_call ledger event, the metrics and the log line.
type meteredModels struct {
	s      *Server
	models CompleteModels
}

// Metered wraps models so every call is charged to its tenant (req.Meta.TenantID). Without chat
// dependencies (no budget grain, no ledger) it returns models unchanged.
func (s *Server) Metered(models CompleteModels) CompleteModels {
	if s.chat == nil {
		return models
	}
	return meteredModels{s: s, models: models}
}

// Complete implements CompleteModels.
func (m meteredModels) Complete(ctx context.Context, req gateway.ChatRequest, fallback string) (string, gateway.Usage, string, error) {
	s := m.s
	t, ok := s.tenants.Load().ByID(req.Meta.TenantID)
	if !ok {
		return "", gateway.Usage{}, "", fmt.Errorf("model call for unknown tenant %q", req.Meta.TenantID)
	}
	call := &modelCall{tenant: t, traceID: req.Meta.TraceID, sessionID: req.Meta.SessionID, primary: req.Model, started: s.now()}
	denied, err := s.reserve(ctx, call, req.Messages, req.MaxTokens)
	if err != nil {
		return "", gateway.Usage{}, "", fmt.Errorf("reserve token budget: %w", err)
	}
	if denied != nil {
		s.appendEvent(ctx, store.Event{
			Kind: store.KindBudgetExceeded, TenantID: t.TenantID, TraceID: call.traceID, SessionID: call.sessionID,
			Subject: req.Meta.Route, Outcome: "rejected", Detail: budgetDetail(call, *denied),
		})
		return "", gateway.Usage{}, "", fmt.Errorf("%w: an estimate of %d tokens does not fit", ErrBudgetExceeded, call.estimate)
	}
	text, u, model, err := m.models.Complete(gateway.WithCallObserver(ctx, s.callObserver()), req, fallback)
	if err != nil {
		s.modelOpenFailed(ctx, call, err)
		return "", u, model, err
	}
	s.finishModelCall(ctx, call, model, u, "ok")
	return text, u, model, nil
}

// meteredRewrite is meteredModels for the search rewrite, which also needs model descriptions.
type meteredRewrite struct {
	meteredModels
	describe func(model string) (gateway.ModelInfo, error)
}

func (m meteredRewrite) Describe(model string) (gateway.ModelInfo, error) { return m.describe(model) }
