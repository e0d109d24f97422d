package metering

import (
	"context"
	"fmt"

	"github.com/crispy-enigma/crispy/gateway"
)

// EmbedDone settles an embedding call: the tokens embedded (0 when it failed) and its error.
type EmbedDone func(ctx context.Context, info gateway.ModelInfo, tokens int, err error)

// BeforeEmbed meters an embedding call (POST /v1/embeddings) like a chat call: it reserves the
// input's estimate on the tenant's budget (a refusal is a *BudgetError or ErrBudgetUnavailable, and
// the model is not called), and the EmbedDone it returns, called exactly once when the call ended,
// commits the tokens (or releases the reservation of a call that failed) and records the metrics,
// the model_call event and the log line. Which embedding models a tenant may use is the caller's
// rule: the chat allow-list does not govern them.
func (m *Meter) BeforeEmbed(ctx context.Context, meta gateway.RequestMeta, model string, texts []string) (EmbedDone, error) {
	if meta.Tenant == nil {
		return nil, fmt.Errorf("metering: embedding call without a tenant (route %q)", meta.Route)
	}
	c := &call{tenant: meta.Tenant, meta: meta, primary: model, started: m.now()}
	msgs := make([]gateway.Message, len(texts))
	for i, t := range texts {
		msgs[i] = gateway.Message{Role: "user", Content: t}
	}
	if err := m.reserve(ctx, c, msgs, 1); err != nil { // an embedding has no output: 1 is the least the estimate holds
		return nil, err
	}
	return func(ctx context.Context, info gateway.ModelInfo, tokens int, err error) {
		res := gateway.CallResult{Model: model, Info: info, Answered: err == nil, Outcome: gateway.OutcomeOK, Err: err,
			Usage: gateway.Usage{TokensIn: tokens, Estimated: true}}
		switch {
		case err != nil && ctx.Err() != nil:
			res.Outcome = gateway.OutcomeCancelled
		case err != nil:
			res.Outcome = gateway.OutcomeError
		}
		m.finish(ctx, c, res)
	}, nil
}
