package rag

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/crispy-enigma/crispy/gateway"
)

// Index limits: a model ID names a file or a collection, and a dimension sizes every vector.
const (
	MaxModelIDLen = 256
	MaxDimension  = 8192
)

// MetaEmbeddingModel is the chunk metadata key naming the model that embedded the chunk.
const MetaEmbeddingModel = "embeddingModel"

var (
	// ErrInvalidIndex is a model ID or dimension that cannot name an index.
	ErrInvalidIndex = errors.New("invalid vector index")
	// ErrIndexesClosed is returned by Index after Close.
	ErrIndexesClosed = errors.New("vector indexes are closed")
)

// Indexes hands out one VectorStore per (embedding model, dimension): vectors of different models
// live in different spaces and must never be compared, so each pair has its own index (an embedded
// file per tenant, a Milvus collection). Indexes are opened on first use and closed together.
type Indexes interface {
	// Index returns the store of model's vectors of length dim, opening it on first use.
	Index(ctx context.Context, model string, dim int) (VectorStore, error)
	// Close closes every index opened so far; Index fails afterwards.
	Close() error
}

// OpenIndexFunc opens the store of one (model, dimension) pair.
type OpenIndexFunc func(ctx context.Context, model string, dim int) (VectorStore, error)

// LazyIndexes is the Indexes both stores share: it opens a pair's store once, on first use, lets
// concurrent callers of the same pair wait for that one open (and callers of other pairs not wait at
// all), forgets a failed open so the next call retries, and closes every store on Close.
type LazyIndexes struct {
	open OpenIndexFunc

	mu     sync.Mutex
	closed bool
	slots  map[IndexKey]*indexSlot
}

var _ Indexes = (*LazyIndexes)(nil)

// IndexKey names one index.
type IndexKey struct {
	Model string
	Dim   int
}

type indexSlot struct {
	ready chan struct{} // closed once vs or err is set
	vs    VectorStore
	err   error
}

// NewIndexes returns Indexes that open each pair's store with open.
func NewIndexes(open OpenIndexFunc) *LazyIndexes {
	return &LazyIndexes{open: open, slots: map[IndexKey]*indexSlot{}}
}

// ValidateIndex checks a model ID and dimension can name an index.
func ValidateIndex(model string, dim int) error {
	switch {
	case model == "" || len(model) > MaxModelIDLen:
		return fmt.Errorf("%w: model ID must be 1-%d bytes, got %d", ErrInvalidIndex, MaxModelIDLen, len(model))
	case strings.ContainsFunc(model, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return fmt.Errorf("%w: model ID %q holds control characters", ErrInvalidIndex, model)
	case dim < 1 || dim > MaxDimension:
		return fmt.Errorf("%w: dimension %d of model %q is outside 1-%d", ErrInvalidIndex, dim, model, MaxDimension)
	}
	return nil
}

// Index returns the pair's store, opening it on first use.
func (x *LazyIndexes) Index(ctx context.Context, model string, dim int) (VectorStore, error) {
	if err := ValidateIndex(model, dim); err != nil {
		return nil, err
	}
	key := IndexKey{model, dim}
	x.mu.Lock()
	if x.closed {
		x.mu.Unlock()
		return nil, ErrIndexesClosed
	}
	slot, ok := x.slots[key]
	if !ok {
		slot = &indexSlot{ready: make(chan struct{})}
		x.slots[key] = slot
	}
	x.mu.Unlock()
	if ok {
		select {
		case <-slot.ready:
			return slot.vs, slot.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	// Others may wait on this open: the first caller's cancellation must not fail theirs.
	vs, err := x.open(context.WithoutCancel(ctx), model, dim)
	if err != nil {
		slot.err = fmt.Errorf("open index of %s (dimension %d): %w", model, dim, err)
		x.mu.Lock()
		if x.slots[key] == slot {
			delete(x.slots, key)
		}
		x.mu.Unlock()
		close(slot.ready)
		return nil, slot.err
	}
	x.mu.Lock()
	closed := x.closed
	x.mu.Unlock()
	if closed {
		// Close ran while this one opened: it did not see the store, so close it here.
		_ = vs.Close()
		slot.err = ErrIndexesClosed
		close(slot.ready)
		return nil, ErrIndexesClosed
	}
	slot.vs = vs
	close(slot.ready)
	return vs, nil
}

// Opened returns the pairs whose store is open, for /health.
func (x *LazyIndexes) Opened() []IndexKey {
	x.mu.Lock()
	defer x.mu.Unlock()
	var out []IndexKey
	for k, s := range x.slots {
		select {
		case <-s.ready:
			if s.vs != nil {
				out = append(out, k)
			}
		default:
		}
	}
	return out
}

// Close closes every opened store, waiting for opens in progress.
func (x *LazyIndexes) Close() error {
	x.mu.Lock()
	if x.closed {
		x.mu.Unlock()
		return nil
	}
	x.closed = true
	slots := x.slots
	x.slots = nil
	x.mu.Unlock()
	var errs []error
	for k, s := range slots {
		<-s.ready
		if s.vs == nil {
			continue
		}
		if err := s.vs.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close index of %s (dimension %d): %w", k.Model, k.Dim, err))
		}
	}
	return errors.Join(errs...)
}

// IndexName folds a model ID and dimension into a name of letters, digits and '_' (a file name, a
// Milvus collection): the model ID lower-cased with every run of other characters folded to '_', cut
// at 89 characters, then the dimension and 12 hex digits of the model ID's SHA-256, which keeps two
// models that fold alike ("a-b", "a_b") apart.
//
//	IndexName("local/minilm", 384) == "local_minilm_384_<hash>"
func IndexName(model string, dim int) string {
	sum := sha256.Sum256([]byte(model))
	var b strings.Builder
	lastUnderscore := true
	for _, c := range strings.ToLower(model) {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
			b.WriteRune(c)
			lastUnderscore = false
		} else if !lastUnderscore {
			b.WriteByte('_')
			lastUnderscore = true
		}
		if b.Len() >= 89 {
			break
		}
	}
	if !lastUnderscore {
		b.WriteByte('_')
	}
	fmt.Fprintf(&b, "%d_%s", dim, hex.EncodeToString(sum[:6]))
	return b.String()
}

// dimensionProber is implemented by embedders that learn their dimension from the first response
// (gateway.OpenAIEmbeddings).
type dimensionProber interface {
	Probe(ctx context.Context) (int, error)
}

// ModelDimension returns m's vector length, probing the model once when it does not know it yet.
func ModelDimension(ctx context.Context, m gateway.EmbeddingModel) (int, error) {
	if d := m.Dimension(); d > 0 {
		return d, nil
	}
	p, ok := m.(dimensionProber)
	if !ok {
		return 0, fmt.Errorf("%w: model %s reports no dimension", ErrEmbedding, m.ID())
	}
	d, err := p.Probe(ctx)
	if err != nil {
		return 0, fmt.Errorf("%w: probe the dimension of %s: %w", ErrEmbedding, m.ID(), err)
	}
	return d, nil
}

// IndexFor returns the index of m's vectors: the only store a query embedded with m may search and
// the only one m's passages may be written to.
func IndexFor(ctx context.Context, idx Indexes, m gateway.EmbeddingModel) (VectorStore, error) {
	d, err := ModelDimension(ctx, m)
	if err != nil {
		return nil, err
	}
	return idx.Index(ctx, m.ID(), d)
}
