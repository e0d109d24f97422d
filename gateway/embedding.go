package gateway

import "context"

// EmbeddingModel turns texts into vectors. Implementations return exactly one
// vector per input text, each of length Dimension(), in input order, so
// callers can batch freely. ID is the model ID reported to clients (for
// example "local/hash-embed" or "@cf/baai/bge-base-en-v1.5").
type EmbeddingModel interface {
	Embed(ctx context.Context, texts []string) ([][]float32, error)
	Dimension() int
	ID() string
}
