package gateway

import (
	"context"
)

// EmbeddingMeter is optionally implemented by a Meter (RouterOptions.Meter): the Router then
// meters the embedding calls it hands out for a tenant (EmbedderFor with RequestMeta.Tenant set) to
// models that are not local — budget, ledger, metrics — like chat calls. Local embedders
// (local/minilm, local/hash-embed) run on this node and are not charged.
type EmbeddingMeter interface {
	// BeforeEmbed runs before the call; an error refuses it (the embedder returns the error
	// unwrapped). after is called once when the call has ended.
	BeforeEmbed(ctx context.Context, call EmbedCall) (after func(ctx context.Context, res EmbedResult), err error)
}

// EmbedCall is one embedding call as an EmbeddingMeter sees it before it is made.
type EmbedCall struct {
	Model    string
	Provider string
	Meta     RequestMeta
	Texts    []string // what is embedded, for the budget estimate; not to be kept
}

// EmbedResult is how an embedding call ended.
type EmbedResult struct {
	Model    string
	Provider string
	Usage    Usage  // TokensIn as the provider reported them, else estimated
	Outcome  string // OutcomeOK, OutcomeError or OutcomeCancelled
	Err      error
}

// meteredEmbedder is an upstream embedder whose calls go through the Meter.
type meteredEmbedder struct {
	inner *OpenAIEmbeddings
	meter EmbeddingMeter
	meta  RequestMeta
}

var (
	_ QueryEmbedder   = (*meteredEmbedder)(nil)
	_ EmbeddingUsager = (*meteredEmbedder)(nil)
)

// metered returns e metered for meta's tenant, or e itself when there is nothing to meter it with.
func (r *Router) metered(e *OpenAIEmbeddings, meta RequestMeta) EmbeddingModel {
	m, ok := r.meter.(EmbeddingMeter)
	if !ok || meta.Tenant == nil {
		return e
	}
	return &meteredEmbedder{inner: e, meter: m, meta: meta}
}

func (e *meteredEmbedder) ID() string     { return e.inner.ID() }
func (e *meteredEmbedder) Dimension() int { return e.inner.Dimension() }

// Probe learns the dimension with one short call; it is not metered (a few tokens, once per model
// and node).
func (e *meteredEmbedder) Probe(ctx context.Context) (int, error) { return e.inner.Probe(ctx) }

func (e *meteredEmbedder) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	vecs, _, err := e.call(ctx, texts, inputPassage)
	return vecs, err
}

func (e *meteredEmbedder) EmbedQuery(ctx context.Context, texts []string) ([][]float32, error) {
	vecs, _, err := e.call(ctx, texts, inputQuery)
	return vecs, err
}

func (e *meteredEmbedder) EmbedWithUsage(ctx context.Context, texts []string) ([][]float32, Usage, error) {
	return e.call(ctx, texts, inputPassage)
}

func (e *meteredEmbedder) call(ctx context.Context, texts []string, inputType string) ([][]float32, Usage, error) {
	after, err := e.meter.BeforeEmbed(ctx, EmbedCall{Model: e.inner.ID(), Provider: e.inner.name, Meta: e.meta, Texts: texts})
	if err != nil {
		return nil, Usage{}, err
	}
	vecs, u, err := e.inner.embedAll(ctx, texts, inputType)
	res := EmbedResult{Model: e.inner.ID(), Provider: e.inner.name, Usage: u, Outcome: OutcomeOK}
	if err != nil {
		res.Outcome, res.Err = outcomeOf(ctx, err), err
	}
	if after != nil {
		after(ctx, res)
	}
	return vecs, u, err
}
