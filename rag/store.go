package rag

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/crispy-enigma/crispy/config"
)

// Limits shared by every VectorStore (the Vectorize limits the original had).
const (
	MaxTopK          = 20
	MaxMetadataBytes = 10 * 1024
)

var (
	// ErrTopKTooLarge is returned for topK > MaxTopK (400 invalid_request).
	ErrTopKTooLarge = fmt.Errorf("topK exceeds %d", MaxTopK)
	// ErrMetadataTooLarge is wrapped with the chunk ID whose JSON-encoded
	// metadata exceeds MaxMetadataBytes.
	ErrMetadataTooLarge = fmt.Errorf("chunk metadata exceeds %d bytes", MaxMetadataBytes)
	// ErrDimensionMismatch is returned when a vector's length differs from
	// the store's dimension.
	ErrDimensionMismatch = errors.New("vector dimension mismatch")
	// ErrInvalidTenant is returned for a tenant ID outside [a-z0-9-]{1,63}.
	ErrInvalidTenant = errors.New("invalid tenant ID")
)

// Chunk is one stored piece of a document. ID is "<docId>:<i>". Meta holds
// the CONTRACT.md chunk metadata (tenantId, docId, chunkId, source, title,
// url, text truncated to 512 characters) plus headingPath and any
// document metadata; filters match against it.
type Chunk struct {
	ID     string
	DocID  string
	Index  int
	Text   string
	Vector []float32
	Meta   map[string]any
}

// Hit is a search result; Score is higher-is-better (cosine similarity for
// vector search, negated BM25 for keyword search).
type Hit struct {
	Chunk Chunk
	Score float64
}

// VectorStore stores chunks per tenant and finds the nearest ones. Every
// call is scoped to one tenant: no call can see another tenant's chunks.
type VectorStore interface {
	// Upsert inserts or replaces chunks by ID.
	Upsert(ctx context.Context, tenant string, chunks []Chunk) error
	// DeleteDoc removes every chunk of a document and returns how many.
	DeleteDoc(ctx context.Context, tenant, docID string) (int, error)
	// Search returns up to topK chunks by descending cosine similarity whose
	// metadata equals every filter entry ("docId" matches Chunk.DocID).
	Search(ctx context.Context, tenant string, vec []float32, topK int, filter map[string]any) ([]Hit, error)
	Close() error
}

// DocReplacer is optionally implemented by stores that can replace a
// document's chunks atomically (delete + upsert in one step); the Ingester
// uses it when present, else DeleteDoc then Upsert.
type DocReplacer interface {
	ReplaceDoc(ctx context.Context, tenant, docID string, chunks []Chunk) (deleted int, err error)
}

// KeywordSearcher is the optional BM25 side of hybrid retrieval.
type KeywordSearcher interface {
	KeywordSearch(ctx context.Context, tenant, query string, topK int, filter map[string]any) ([]Hit, error)
}

// ValidateTenant checks a tenant ID is [a-z0-9-]{1,63} (DESIGN.md), which
// also makes it safe as a path element and a partition name.
func ValidateTenant(tenant string) error {
	if !config.ValidTenantID(tenant) {
		return fmt.Errorf("%w: %q", ErrInvalidTenant, tenant)
	}
	return nil
}

// CheckTopK enforces 1 ≤ topK ≤ MaxTopK.
func CheckTopK(topK int) error {
	if topK > MaxTopK {
		return fmt.Errorf("%w: %d", ErrTopKTooLarge, topK)
	}
	if topK < 1 {
		return fmt.Errorf("topK must be at least 1, got %d", topK)
	}
	return nil
}

// EncodeMeta returns the chunk's metadata as JSON, enforcing MaxMetadataBytes.
func EncodeMeta(c Chunk) ([]byte, error) {
	b, err := json.Marshal(c.Meta)
	if err != nil {
		return nil, fmt.Errorf("chunk %s: encode metadata: %w", c.ID, err)
	}
	if len(b) > MaxMetadataBytes {
		return nil, fmt.Errorf("chunk %s: %w (%d bytes)", c.ID, ErrMetadataTooLarge, len(b))
	}
	return b, nil
}

// MatchFilter reports whether a chunk satisfies every filter entry. Numbers
// compare by value whatever their Go type, since metadata read back from
// JSON holds float64.
func MatchFilter(docID string, meta map[string]any, filter map[string]any) bool {
	for k, want := range filter {
		var got any
		if k == "docId" {
			got = docID
		} else {
			var ok bool
			if got, ok = meta[k]; !ok {
				return false
			}
		}
		if !scalarEqual(got, want) {
			return false
		}
	}
	return true
}

func scalarEqual(a, b any) bool {
	if fa, ok := toFloat(a); ok {
		fb, ok := toFloat(b)
		return ok && fa == fb
	}
	switch x := a.(type) {
	case string:
		y, ok := b.(string)
		return ok && x == y
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	}
	return false
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case float32:
		return float64(x), true
	case int:
		return float64(x), true
	case int32:
		return float64(x), true
	case int64:
		return float64(x), true
	case uint:
		return float64(x), true
	case uint32:
		return float64(x), true
	case uint64:
		return float64(x), true
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	}
	return 0, false
}

// Normalize returns v scaled to unit length (a copy); the zero vector stays
// zero. Stores keep normalised vectors so a dot product is a cosine.
func Normalize(v []float32) []float32 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	out := make([]float32, len(v))
	if s == 0 {
		return out
	}
	inv := 1 / math.Sqrt(s)
	for i, x := range v {
		out[i] = float32(float64(x) * inv)
	}
	return out
}

// dotGeneric is the portable inner product, unrolled by four with
// independent accumulators; a and b have equal length.
func dotGeneric(a, b []float32) float32 {
	n := len(a)
	b = b[:n]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= n; i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < n; i++ {
		s0 += a[i] * b[i]
	}
	return s0 + s1 + s2 + s3
}
