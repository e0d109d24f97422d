package metering

import (
	"context"
	"fmt"

	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/observe"
)

// CompleteModels drains one chat completion with fallback (gateway.Router.Complete).
type CompleteModels interface {
	Complete(ctx context.Context, req gateway.ChatRequest, fallbackModel string) (text string, usage gateway.Usage, model string, err error)
}

var _ CompleteModels = (*gateway.Router)(nil)

// Completer is the tools' model (tools.Completer, behind summarize, extract_entities and
// classify_intent): one whole answer from the tenant's chat model chosen by SelectModels, through a
// metered Router, so a tool's call is charged and recorded like /chat's.
type Completer struct {
	m      *Meter
	models CompleteModels
}

// Completer returns the tools' completer over models (a Router metered by m).
func (m *Meter) Completer(models CompleteModels) *Completer {
	return &Completer{m: m, models: models}
}

// Complete answers prompt (after system, when set) for tenant t.
func (c *Completer) Complete(ctx context.Context, t *config.TenantConfig, system, prompt string) (string, error) {
	primary, fallback, err := c.m.SelectModels(t, "")
	if err != nil {
		return "", err
	}
	msgs := make([]gateway.Message, 0, 2)
	if system != "" {
		msgs = append(msgs, gateway.Message{Role: "system", Content: system})
	}
	msgs = append(msgs, gateway.Message{Role: "user", Content: prompt})
	text, _, _, err := c.models.Complete(ctx, gateway.ChatRequest{
		Model: primary, Messages: msgs,
		Meta: gateway.RequestMeta{
			TenantID: t.TenantID, AccountID: t.AccountID, GatewayID: t.AIGatewayID, Tenant: t,
			TraceID: observe.TraceID(ctx), Route: "/tools/execute",
		},
	}, fallback)
	if err != nil {
		return "", fmt.Errorf("complete with %s: %w", primary, err)
	}
	return text, nil
}
