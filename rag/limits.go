package rag

import (
	"errors"
	"fmt"
	"sync"

	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/store"
)

// Limits on what one ingest may make. A 450 KB body with maxChunkSize 1 once made 300,000
// chunks (4 GB of memory, 1.2 GB on disk): each chunk costs an embedding, a vector and a row,
// whatever its size, so the number of chunks is bounded, not only the body's bytes.
const (
	// MinChunkSize is the smallest maxChunkSize accepted: the smallest the original's chunking
	// fixtures use (README, POST /ingest).
	MinChunkSize = 10
	// MaxChunksPerDocument bounds one document's chunks: a 1 MiB body at the default chunk size
	// makes about 1,100.
	MaxChunksPerDocument = 5_000
	// DefaultMaxChunksPerRequest bounds the chunks of all documents of one request (a batch).
	DefaultMaxChunksPerRequest = 20_000
)

var (
	// ErrTooManyChunks is wrapped (with ErrInvalidChunking, so it is a 400 the caller fixes) when
	// a document or a request would make more chunks than the limits allow.
	ErrTooManyChunks = errors.New("too many chunks")
	// ErrQuotaExceeded is wrapped when storing a document would pass the tenant's quota
	// (config.Quota): the API answers it with quota_exceeded.
	ErrQuotaExceeded = errors.New("quota exceeded")
)

// Usage is what a tenant stores in its knowledge base.
type Usage struct {
	Documents   int64 `json:"documents"`
	Chunks      int64 `json:"chunks"`
	StoredBytes int64 `json:"storedBytes"`
}

// UsageOf sums the catalogue's documents, leaving out except (the document being re-ingested,
// whose chunks the ingest replaces).
func UsageOf(docs []store.Document, except string) Usage {
	var u Usage
	for _, d := range docs {
		if d.DocID == except {
			continue
		}
		u.Documents++
		u.Chunks += int64(d.Chunks)
		u.StoredBytes += d.Bytes
	}
	return u
}

// CheckQuota reports ErrQuotaExceeded, naming the quota, when used plus one more document of
// chunks chunks and bytes bytes would pass q. A zero field of q means no limit.
func CheckQuota(q config.Quota, used Usage, chunks int, bytes int64) error {
	for _, c := range []struct {
		name        string
		limit, next int64
	}{
		{"documents", q.Documents, used.Documents + 1},
		{"chunks", q.Chunks, used.Chunks + int64(chunks)},
		{"storedBytes", q.StoredBytes, used.StoredBytes + bytes},
	} {
		if c.limit > 0 && c.next > c.limit {
			return fmt.Errorf("%w: the tenant's %s quota is %d; this document would bring it to %d", ErrQuotaExceeded, c.name, c.limit, c.next)
		}
	}
	return nil
}

// IngestLimits are the limits an ingest applies beyond MaxChunksPerDocument. The zero value
// applies none.
type IngestLimits struct {
	// Quota is the tenant's, and Used its knowledge base without the document being ingested
	// (UsageOf). Checked after chunking, before anything is embedded. Two ingests running at
	// once may each pass a quota the two together exceed: the quota bounds growth, one
	// request's worth at most beyond it.
	Quota *config.Quota
	Used  Usage
	// Request is the chunk allowance shared by the documents of one request; nil: none.
	Request *ChunkAllowance
}

// ChunkAllowance is a number of chunks the documents of one request share; safe for concurrent use.
type ChunkAllowance struct {
	mu   sync.Mutex
	left int
}

// NewChunkAllowance returns an allowance of n chunks (DefaultMaxChunksPerRequest when n ≤ 0).
func NewChunkAllowance(n int) *ChunkAllowance {
	if n <= 0 {
		n = DefaultMaxChunksPerRequest
	}
	return &ChunkAllowance{left: n}
}

// take takes n chunks, or none and ErrTooManyChunks when fewer are left.
func (a *ChunkAllowance) take(n int) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if n > a.left {
		return fmt.Errorf("%w: %w: this request's documents may make %d more chunks, this one makes %d; send fewer documents per request or a larger maxChunkSize",
			ErrInvalidChunking, ErrTooManyChunks, a.left, n)
	}
	a.left -= n
	return nil
}

// giveBack returns n chunks taken by a document that then failed.
func (a *ChunkAllowance) giveBack(n int) {
	a.mu.Lock()
	a.left += n
	a.mu.Unlock()
}
