package rag

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/rs/zerolog"

	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/gateway"
)

// Embedders resolves embedding models by ID (gateway.Router): TenantEmbedder turns a tenant's
// aiModels.embeddings into the model this node embeds it with (local/minilm when the configured one
// cannot be served, with the reason), EmbedderFor serves one named model (an active index's).
type Embedders interface {
	TenantEmbedder(meta gateway.RequestMeta, configured string) (m gateway.EmbeddingModel, fallbackReason string)
	EmbedderFor(model string, meta gateway.RequestMeta) (gateway.EmbeddingModel, error)
}

var _ Embedders = (*gateway.Router)(nil)

// TenantSpace is where a tenant's vectors are right now: the active index, the model that embeds
// its passages and queries (always the active index's, never another), and the model the tenant's
// config resolves to on this node. When Want is not the active model, a re-embedding job brings
// the tenant over; until it switches, the active index keeps serving.
type TenantSpace struct {
	Store    VectorStore
	Embedder gateway.EmbeddingModel
	Active   ActiveIndex
	// Want is the model the tenant's aiModels.embeddings resolves to; FallbackReason says why it is
	// not the configured one (empty when it is).
	Want           gateway.EmbeddingModel
	Configured     string
	FallbackReason string
}

// Current reports whether the active index is the wanted model's.
func (ts TenantSpace) Current() bool { return ts.Active.Model == ts.Want.ID() }

// SpacesOptions are a Spaces' dependencies.
type SpacesOptions struct {
	Indexes   Indexes        // required: one store per (model, dimension)
	Actives   *ActiveIndexes // required: each tenant's active index
	Embedders Embedders      // required
	// Legacy is the index of data dirs from before the active-index record (local/hash-embed's):
	// a tenant with no record and chunks there keeps serving from it until re-embedded. Zero: none.
	Legacy IndexKey
	Logger zerolog.Logger
}

// Spaces resolves each tenant's TenantSpace: the one rule for which index a search reads and an
// ingest writes, shared by the retrieval service and local/extractive's retriever.
type Spaces struct {
	o      SpacesOptions
	logged sync.Map // tenant ID → the model ID last logged for it
}

// NewSpaces returns the resolver over o.
func NewSpaces(o SpacesOptions) (*Spaces, error) {
	if o.Indexes == nil || o.Actives == nil || o.Embedders == nil {
		return nil, errors.New("rag: Spaces need Indexes, Actives and Embedders")
	}
	return &Spaces{o: o}, nil
}

// Indexes returns the stores of every (model, dimension).
func (sp *Spaces) Indexes() Indexes { return sp.o.Indexes }

// tenantMeta is the request metadata embedding calls are made (and metered) with.
func tenantMeta(t *config.TenantConfig, route string) gateway.RequestMeta {
	return gateway.RequestMeta{TenantID: t.TenantID, AccountID: t.AccountID, GatewayID: t.AIGatewayID, Tenant: t, Route: route}
}

// Want resolves the model the tenant's config asks for on this node, and logs once per tenant (and
// again when it changes) which model that is and why it is not the configured one.
func (sp *Spaces) Want(t *config.TenantConfig) (gateway.EmbeddingModel, string) {
	m, reason := sp.o.Embedders.TenantEmbedder(tenantMeta(t, "embeddings"), t.AIModels.Embeddings)
	if prev, ok := sp.logged.Load(t.TenantID); !ok || prev.(string) != m.ID() {
		sp.logged.Store(t.TenantID, m.ID())
		ev := sp.o.Logger.Info()
		if reason != "" {
			ev = sp.o.Logger.Warn().Str("fallbackReason", reason)
		}
		ev.Str("tenantId", t.TenantID).Str("configured", t.AIModels.Embeddings).Str("embeddingModel", m.ID()).
			Msg("tenant's documents and queries are embedded with this model")
	}
	return m, reason
}

// Resolve returns the tenant's space. A tenant with no active-index record gets one here: the
// legacy index when it holds the tenant's chunks (they are re-embedded by a job), else straight the
// wanted model's index, which is empty anyway.
func (sp *Spaces) Resolve(ctx context.Context, t *config.TenantConfig, route string) (TenantSpace, error) {
	want, reason := sp.Want(t)
	ts := TenantSpace{Want: want, Configured: t.AIModels.Embeddings, FallbackReason: reason}
	ai, ok, err := sp.o.Actives.Get(ctx, t.TenantID)
	if err != nil {
		return ts, err
	}
	if !ok {
		if ai, err = sp.first(ctx, t.TenantID, want); err != nil {
			return ts, err
		}
	}
	ts.Active = ai
	if ts.Store, err = sp.o.Indexes.Index(ctx, ai.Model, ai.Dimension); err != nil {
		return ts, err
	}
	// With the store set, a caller can still re-embed out of an index whose model is no longer
	// served (the job reads stored texts, not vectors).
	if ai.Model == want.ID() {
		ts.Embedder = want
	} else if ts.Embedder, err = sp.o.Embedders.EmbedderFor(ai.Model, tenantMeta(t, route)); err != nil {
		return ts, fmt.Errorf("%w: the active index's model: %w", ErrEmbedding, err)
	}
	return ts, nil
}

// first records a tenant's first active index.
func (sp *Spaces) first(ctx context.Context, tenant string, want gateway.EmbeddingModel) (ActiveIndex, error) {
	if l := sp.o.Legacy; l.Model != "" && l.Model != want.ID() {
		vs, err := sp.o.Indexes.Index(ctx, l.Model, l.Dim)
		if err != nil {
			return ActiveIndex{}, err
		}
		has, err := hasChunks(ctx, vs, tenant)
		if err != nil {
			return ActiveIndex{}, fmt.Errorf("legacy index of tenant %s: %w", tenant, err)
		}
		if has {
			ai := ActiveIndex{Model: l.Model, Dimension: l.Dim}
			return ai, sp.o.Actives.Switch(ctx, tenant, ai)
		}
	}
	d, err := ModelDimension(ctx, want)
	if err != nil {
		return ActiveIndex{}, err
	}
	ai := ActiveIndex{Model: want.ID(), Dimension: d}
	return ai, sp.o.Actives.Switch(ctx, tenant, ai)
}

// hasChunks reports whether vs holds any chunk of the tenant.
func hasChunks(ctx context.Context, vs VectorStore, tenant string) (bool, error) {
	if c, ok := vs.(ChunkCounter); ok {
		n, err := c.Count(ctx, tenant)
		return n > 0, err
	}
	if l, ok := vs.(ChunkLister); ok {
		page, err := l.ListChunks(ctx, tenant, "", 1)
		return len(page) > 0, err
	}
	return false, nil
}
