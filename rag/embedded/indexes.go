package embedded

import (
	"context"

	"github.com/crispy-enigma/crispy/rag"
)

// IndexesOptions configure NewIndexes.
type IndexesOptions struct {
	// LegacyModel and LegacyDimension name the pair whose vectors live in DefaultFile: data dirs
	// from before one file per model hold local/hash-embed vectors there (gateway.HashEmbedID,
	// gateway.DefaultHashEmbedDimension), and they keep serving from it. Empty: every pair gets
	// its own file.
	LegacyModel     string
	LegacyDimension int
}

// NewIndexes returns the embedded stores under dataDir, one per (model, dimension): each tenant
// keeps a SQLite file per pair, <dataDir>/tenants/<tenant>/vectors-<rag.IndexName>.db (DefaultFile
// for the legacy pair), each with its own vectors and FTS5 index, loaded on first use.
func NewIndexes(dataDir string, opts IndexesOptions) *rag.LazyIndexes {
	return rag.NewIndexes(func(_ context.Context, model string, dim int) (rag.VectorStore, error) {
		return Open(dataDir, Options{Dimension: dim, Model: model, File: IndexFile(model, dim, opts)})
	})
}

// IndexFile is the tenant database file of a (model, dimension) pair.
func IndexFile(model string, dim int, opts IndexesOptions) string {
	if opts.LegacyModel != "" && model == opts.LegacyModel && dim == opts.LegacyDimension {
		return DefaultFile
	}
	return "vectors-" + rag.IndexName(model, dim) + ".db"
}
