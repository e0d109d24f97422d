package api

import (
	"context"
	"fmt"
	"slices"

	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/observe"
	"github.com/crispy-enigma/crispy/tools"
)

// CompleteModels drains one chat completion with fallback (gateway.Router.Complete).
type CompleteModels interface {
	Complete(ctx context.Context, req gateway.ChatRequest, fallbackModel string) (text string, usage gateway.Usage, model string, err error)
}

var _ CompleteModels = (*gateway.Router)(nil)

// ModelCompleter is the tools.Completer behind summarize, extract_entities and classify_intent: one
// non-streamed answer from the tenant's chat model (MODEL_ID > aiModels.chat), falling back to
// aiModels.fallbackChat or FALLBACK_MODEL_ID, under the tenant's model allow-list like /chat.
type ModelCompleter struct {
	models CompleteModels
	env    config.Env
}

var _ tools.Completer = (*ModelCompleter)(nil)

// NewModelCompleter returns a completer over models; env supplies MODEL_ID and FALLBACK_MODEL_ID.
func NewModelCompleter(models CompleteModels, env config.Env) *ModelCompleter {
	return &ModelCompleter{models: models, env: env}
}

// Complete implements tools.Completer.
func (m *ModelCompleter) Complete(ctx context.Context, t *config.TenantConfig, system, prompt string) (string, error) {
	primary := cmpOr(m.env.ModelID, t.AIModels.Chat)
	fallback := cmpOr(t.AIModels.FallbackChat, m.env.FallbackModelID)
	if t.Flag("modelAllowList") {
		if !slices.Contains(t.AllowedModels, primary) {
			return "", fmt.Errorf("model %q is not in tenant %s's allowedModels", primary, t.TenantID)
		}
		if !slices.Contains(t.AllowedModels, fallback) {
			fallback = ""
		}
	}
	msgs := make([]gateway.Message, 0, 2)
	if system != "" {
		msgs = append(msgs, gateway.Message{Role: "system", Content: system})
	}
	msgs = append(msgs, gateway.Message{Role: "user", Content: prompt})
	text, _, _, err := m.models.Complete(ctx, gateway.ChatRequest{
		Model: primary, Messages: msgs,
		Meta: gateway.RequestMeta{
			TenantID: t.TenantID, AccountID: t.AccountID, GatewayID: t.AIGatewayID,
			TraceID: observe.TraceID(ctx), Route: "/tools/execute",
		},
	}, fallback)
	if err != nil {
		return "", fmt.Errorf("complete with %s: %w", primary, err)
	}
	return text, nil
}
