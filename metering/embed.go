package metering

import (
	"context"
	"fmt"

	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/observe"
)

var _ gateway.EmbeddingMeter = (*Meter)(nil)

// EstimateEmbedding is the budget estimate of an embedding call, an upper bound of what the
// provider can report: a commit never passes its reservation (the Budget grain caps it), and an
// embedding's tokens are all input, known only afterwards. No tokenizer makes more tokens than a
// text has bytes, plus a few special tokens per text; an embedding has no output tokens.
func EstimateEmbedding(texts []string) int64 {
	var n int64
	for _, t := range texts {
		n += int64(len(t)) + embeddingSpecialTokens
	}
	return n
}

// embeddingSpecialTokens bounds the special tokens a tokenizer adds to one text ([CLS], [SEP], BOS,
// EOS, a "query: " prefix).
const embeddingSpecialTokens = 8

// BeforeEmbed implements gateway.EmbeddingMeter: an embedding call to an upstream model is metered
// like a chat call — its estimate reserved on the tenant's budget (over budget: *BudgetError), then
// the tokens charged, the model_call event, the metrics and the log line when it ends. There is no
// model rule (the embedding model is the tenant's own aiModels.embeddings) and no response cache.
func (m *Meter) BeforeEmbed(ctx context.Context, ec gateway.EmbedCall) (func(context.Context, gateway.EmbedResult), error) {
	t := ec.Meta.Tenant
	if t == nil {
		return nil, fmt.Errorf("metering: embedding call without a tenant (model %q)", ec.Model)
	}
	meta := ec.Meta
	if meta.TraceID == "" {
		meta.TraceID = observe.TraceID(ctx)
	}
	c := &call{tenant: t, meta: meta, primary: ec.Model, started: m.now()}
	if err := m.reserve(ctx, c, EstimateEmbedding(ec.Texts)); err != nil { // budget.go
		return nil, err
	}
	return func(ctx context.Context, res gateway.EmbedResult) {
		m.finish(ctx, c, gateway.CallResult{
			Model: res.Model, Info: gateway.ModelInfo{Model: res.Model, Provider: res.Provider},
			Answered: res.Err == nil, Usage: res.Usage, Outcome: res.Outcome, Err: res.Err,
		})
	}, nil
}
