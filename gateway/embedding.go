package gateway

import (
	"context"
	"math"
)

// EmbeddingModel turns texts into vectors. Implementations return exactly one
// vector per input text, each of length Dimension(), in input order, so
// callers can batch freely. ID is the model ID reported to clients (for
// example "local/hash-embed" or "@cf/baai/bge-base-en-v1.5").
type EmbeddingModel interface {
	Embed(ctx context.Context, texts []string) ([][]float32, error)
	Dimension() int
	ID() string
}

// QueryEmbedder is implemented by embedding models that embed a search query
// differently from a passage (E5's "query: " / "passage: "); Embed is then
// the passage side. Retrieval type-asserts it for queries.
type QueryEmbedder interface {
	EmbedQuery(ctx context.Context, texts []string) ([][]float32, error)
}

// NonFinite returns the index of the first NaN or infinite value in v, or -1.
// JSON cannot carry NaN, but a model can still produce one (or an overflow to
// ±Inf), and a single one poisons every similarity computed against it.
func NonFinite(v []float32) int {
	for i, x := range v {
		if f := float64(x); math.IsNaN(f) || math.IsInf(f, 0) {
			return i
		}
	}
	return -1
}
