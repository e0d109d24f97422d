package milvus

import (
	"context"

	"github.com/crispy-enigma/crispy/rag"
)

// NewIndexes returns the Milvus stores of every (model, dimension) pair: a collection each
// (CollectionName), a partition per tenant in each. opts.Model and opts.Dimension are set per pair;
// the rest (address, namespaces, consistency) is shared. Each pair's store has its own connection,
// opened on first use.
func NewIndexes(opts Options) *rag.LazyIndexes {
	return rag.NewIndexes(func(ctx context.Context, model string, dim int) (rag.VectorStore, error) {
		o := opts
		o.Model, o.Dimension = model, dim
		return Open(ctx, o)
	})
}
