package rag

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/crispy-enigma/crispy/gateway"
)

// ChunkLister pages through a tenant's chunks in ascending chunk ID order: the chunks with IDs
// after after (all of them for ""), at most limit. Re-embedding reads the old index with it.
type ChunkLister interface {
	ListChunks(ctx context.Context, tenant, after string, limit int) ([]Chunk, error)
}

// ChunkCounter is optionally implemented by stores that count a tenant's chunks cheaply; re-embedding
// uses it to report a total.
type ChunkCounter interface {
	Count(ctx context.Context, tenant string) (int, error)
}

// ErrNotListable is returned by Reindex when the old index cannot list its chunks.
var ErrNotListable = errors.New("vector store cannot list chunks")

// ReindexProgress is reported after every batch written to the new index.
type ReindexProgress struct {
	// Copied is how many chunks the new index holds so far; Total is the old index's chunk count
	// when it could tell (else 0).
	Copied, Total int
	// Phase is "copy" while chunks are copied in ID order, "reconcile" while documents changed
	// during the copy are brought up to date.
	Phase string
}

// ReindexOptions tune Reindex; zero values select defaults.
type ReindexOptions struct {
	// BatchSize is how many chunks are read, embedded and written at a time (DefaultEmbedBatchSize).
	BatchSize int
	// Progress, when set, is called after every batch, from Reindex's goroutine.
	Progress func(ReindexProgress)
}

// ReindexResult summarises a completed copy.
type ReindexResult struct {
	Chunks int // chunks in the new index
	// Reconciled counts documents re-copied or removed because they changed during the copy.
	Reconciled int
}

// Reindex copies a tenant's chunks from the old index into the new one, re-embedding each stored
// chunk text with model (the new index's model), in batches, and never writing to the old index.
// Each chunk keeps its ID, document, position and metadata; its embeddingModel becomes model's ID.
// After the copy, a reconcile pass compares the two indexes document by document and re-copies or
// removes any document changed during the copy, so ingests and deletes that went to the old index
// meanwhile are not lost; one that lands after this pass is caught by calling Reconcile again while
// the tenant's writes are held, then switching.
//
// Cancelling ctx stops the copy between batches; the old index is untouched and stays the one to
// serve (ActiveIndexes.Switch is the caller's, after a nil error). A chunk whose vector fails
// CheckVectors fails the job with ErrEmbedding: nothing bad is written.
func Reindex(ctx context.Context, tenant string, from, to VectorStore, model gateway.EmbeddingModel, opts ReindexOptions) (ReindexResult, error) {
	if err := ValidateTenant(tenant); err != nil {
		return ReindexResult{}, err
	}
	lister, ok := from.(ChunkLister)
	if !ok {
		return ReindexResult{}, fmt.Errorf("reindex tenant %s: %w", tenant, ErrNotListable)
	}
	if _, ok := to.(ChunkLister); !ok {
		return ReindexResult{}, fmt.Errorf("reindex tenant %s: new index: %w", tenant, ErrNotListable)
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = DefaultEmbedBatchSize
	}
	r := reindexer{tenant: tenant, from: lister, to: to, model: model, opts: opts}
	if c, ok := from.(ChunkCounter); ok {
		if n, err := c.Count(ctx, tenant); err == nil {
			r.progress.Total = n
		}
	}
	r.progress.Phase = "copy"
	after := ""
	for {
		page, err := lister.ListChunks(ctx, tenant, after, opts.BatchSize)
		if err != nil {
			return ReindexResult{}, fmt.Errorf("reindex tenant %s: read old index: %w", tenant, err)
		}
		if len(page) == 0 {
			break
		}
		after = page[len(page)-1].ID
		if err := r.write(ctx, page); err != nil {
			return ReindexResult{}, err
		}
	}
	reconciled, err := r.reconcile(ctx)
	if err != nil {
		return ReindexResult{}, err
	}
	return ReindexResult{Chunks: r.progress.Copied, Reconciled: reconciled}, nil
}

type reindexer struct {
	tenant   string
	from     ChunkLister
	to       VectorStore
	model    gateway.EmbeddingModel
	opts     ReindexOptions
	progress ReindexProgress
}

// embed re-embeds chunks with the new model and marks them as its.
func (r *reindexer) embed(ctx context.Context, chunks []Chunk) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("reindex tenant %s: %w", r.tenant, err)
	}
	texts := make([]string, len(chunks))
	for i, c := range chunks {
		texts[i] = c.Text
	}
	vecs, err := r.model.Embed(ctx, texts)
	if err != nil {
		return fmt.Errorf("reindex tenant %s: %w: %w", r.tenant, ErrEmbedding, err)
	}
	if err := CheckVectors(r.model, vecs, len(chunks)); err != nil {
		return fmt.Errorf("reindex tenant %s: chunks %s…%s: %w", r.tenant, chunks[0].ID, chunks[len(chunks)-1].ID, err)
	}
	for i := range chunks {
		meta := make(map[string]any, len(chunks[i].Meta)+1)
		for k, v := range chunks[i].Meta {
			meta[k] = v
		}
		meta[MetaEmbeddingModel] = r.model.ID()
		chunks[i].Meta, chunks[i].Vector = meta, vecs[i]
	}
	return nil
}

func (r *reindexer) write(ctx context.Context, chunks []Chunk) error {
	if err := r.embed(ctx, chunks); err != nil {
		return err
	}
	if err := r.to.Upsert(ctx, r.tenant, chunks); err != nil {
		return fmt.Errorf("reindex tenant %s: write new index: %w", r.tenant, err)
	}
	r.progress.Copied += len(chunks)
	r.report()
	return nil
}

func (r *reindexer) report() {
	if r.opts.Progress != nil {
		r.opts.Progress(r.progress)
	}
}

// docDigest is a document's chunk set: IDs and texts, hashed in ID order.
type docDigest struct {
	sum [32]byte
	n   int
}

// digests lists a whole index into per-document digests (IDs and texts hashed, not kept).
func digests(ctx context.Context, l ChunkLister, tenant string, batch int) (map[string]docDigest, error) {
	hashes := map[string][]byte{}
	counts := map[string]int{}
	after := ""
	for {
		page, err := l.ListChunks(ctx, tenant, after, batch)
		if err != nil {
			return nil, err
		}
		if len(page) == 0 {
			break
		}
		after = page[len(page)-1].ID
		for _, c := range page {
			b, _ := json.Marshal([2]string{c.ID, c.Text})
			h := sha256.Sum256(append(hashes[c.DocID], b...))
			hashes[c.DocID] = h[:]
			counts[c.DocID]++
		}
	}
	out := make(map[string]docDigest, len(hashes))
	for d, h := range hashes {
		out[d] = docDigest{sum: [32]byte(h), n: counts[d]}
	}
	return out, nil
}

// Reconcile brings the new index up to date with the old one after Reindex: documents whose chunks
// (IDs and texts) differ are re-embedded with model and replaced whole, and documents the old index
// no longer has are removed. It reads both indexes in full but embeds only what changed, so it is
// cheap enough to run again while the tenant's writes are held, just before ActiveIndexes.Switch,
// which closes the window between Reindex's own pass and the switch. It returns how many documents
// it changed.
func Reconcile(ctx context.Context, tenant string, from, to VectorStore, model gateway.EmbeddingModel, opts ReindexOptions) (int, error) {
	if err := ValidateTenant(tenant); err != nil {
		return 0, err
	}
	lister, ok := from.(ChunkLister)
	if !ok {
		return 0, fmt.Errorf("reconcile tenant %s: %w", tenant, ErrNotListable)
	}
	if _, ok := to.(ChunkLister); !ok {
		return 0, fmt.Errorf("reconcile tenant %s: new index: %w", tenant, ErrNotListable)
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = DefaultEmbedBatchSize
	}
	r := reindexer{tenant: tenant, from: lister, to: to, model: model, opts: opts}
	return r.reconcile(ctx)
}

// reconcile re-copies documents whose chunks differ between the indexes and removes from the new
// index documents the old one no longer has.
func (r *reindexer) reconcile(ctx context.Context) (int, error) {
	r.progress.Phase = "reconcile"
	old, err := digests(ctx, r.from, r.tenant, r.opts.BatchSize)
	if err != nil {
		return 0, fmt.Errorf("reindex tenant %s: reconcile: read old index: %w", r.tenant, err)
	}
	cur, err := digests(ctx, r.to.(ChunkLister), r.tenant, r.opts.BatchSize)
	if err != nil {
		return 0, fmt.Errorf("reindex tenant %s: reconcile: read new index: %w", r.tenant, err)
	}
	changed := map[string]bool{}
	for d, dg := range old {
		if cur[d] != dg {
			changed[d] = true
		}
	}
	n := 0
	for d := range cur {
		if _, ok := old[d]; !ok {
			if _, err := r.to.DeleteDoc(ctx, r.tenant, d); err != nil {
				return 0, fmt.Errorf("reindex tenant %s: reconcile: delete %s: %w", r.tenant, d, err)
			}
			n++
		}
	}
	if len(changed) == 0 {
		return n, nil
	}
	// Collect the changed documents' chunks from the old index and replace them whole.
	byDoc := map[string][]Chunk{}
	after := ""
	for {
		page, err := r.from.ListChunks(ctx, r.tenant, after, r.opts.BatchSize)
		if err != nil {
			return 0, fmt.Errorf("reindex tenant %s: reconcile: read old index: %w", r.tenant, err)
		}
		if len(page) == 0 {
			break
		}
		after = page[len(page)-1].ID
		for _, c := range page {
			if changed[c.DocID] {
				byDoc[c.DocID] = append(byDoc[c.DocID], c)
			}
		}
	}
	for d, chunks := range byDoc {
		for start := 0; start < len(chunks); start += r.opts.BatchSize {
			if err := r.embed(ctx, chunks[start:min(len(chunks), start+r.opts.BatchSize)]); err != nil {
				return 0, err
			}
		}
		if rp, ok := r.to.(DocReplacer); ok {
			_, err = rp.ReplaceDoc(ctx, r.tenant, d, chunks)
		} else if _, err = r.to.DeleteDoc(ctx, r.tenant, d); err == nil {
			err = r.to.Upsert(ctx, r.tenant, chunks)
		}
		if err != nil {
			return 0, fmt.Errorf("reindex tenant %s: reconcile: replace %s: %w", r.tenant, d, err)
		}
		n++
		r.report()
	}
	return n, nil
}

// ActiveIndex names the index a tenant's searches and ingests use: the (model, dimension) pair of
// Indexes.
type ActiveIndex struct {
	Model     string    `json:"model"`
	Dimension int       `json:"dimension"`
	Since     time.Time `json:"since"`
}

// ActiveIndexKey is the tenant key the record is stored under.
const ActiveIndexKey = "rag.active-index"

// TenantKV is the storage of the active-index record: store.TenantKV, whose buckets are JetStream
// KV, replicated to every node.
type TenantKV interface {
	Get(ctx context.Context, tenant, key string) ([]byte, error)
	Put(ctx context.Context, tenant, key string, value []byte, ttl time.Duration) error
}

// ActiveIndexes reads and switches each tenant's active index. The record is one JetStream KV
// value per tenant rather than metadata of the embedded store: every node of a cluster must search
// the same index (a Milvus collection is shared by all of them, and has no per-tenant metadata of
// its own), the record must survive restarts, and a single KV put is atomic, so a search reads
// either the old pair or the new one, never a mix.
type ActiveIndexes struct {
	kv       TenantKV
	notFound error
}

// NewActiveIndexes returns the records kept in kv; notFound is the error kv wraps for a missing
// key (store.ErrNotFound).
func NewActiveIndexes(kv TenantKV, notFound error) *ActiveIndexes {
	return &ActiveIndexes{kv: kv, notFound: notFound}
}

// Get returns the tenant's active index; ok is false when none was ever switched to (a data dir
// from before the record existed: its vectors are local/hash-embed's, in the legacy index).
func (a *ActiveIndexes) Get(ctx context.Context, tenant string) (ai ActiveIndex, ok bool, err error) {
	b, err := a.kv.Get(ctx, tenant, ActiveIndexKey)
	if errors.Is(err, a.notFound) {
		return ActiveIndex{}, false, nil
	}
	if err != nil {
		return ActiveIndex{}, false, fmt.Errorf("active index of tenant %s: %w", tenant, err)
	}
	if err := json.Unmarshal(b, &ai); err != nil {
		return ActiveIndex{}, false, fmt.Errorf("active index of tenant %s: decode: %w", tenant, err)
	}
	return ai, true, nil
}

// Switch makes ai the tenant's active index in one write. Call it only after Reindex into ai's
// index returned nil: a failed or cancelled job leaves the old record, and so the old index, in
// place.
func (a *ActiveIndexes) Switch(ctx context.Context, tenant string, ai ActiveIndex) error {
	if err := ValidateIndex(ai.Model, ai.Dimension); err != nil {
		return err
	}
	if ai.Since.IsZero() {
		ai.Since = time.Now().UTC()
	}
	b, err := json.Marshal(ai)
	if err != nil {
		return fmt.Errorf("active index of tenant %s: encode: %w", tenant, err)
	}
	if err := a.kv.Put(ctx, tenant, ActiveIndexKey, b, 0); err != nil {
		return fmt.Errorf("switch tenant %s to %s (dimension %d): %w", tenant, ai.Model, ai.Dimension, err)
	}
	return nil
}

// ReindexJobKey is the tenant key of the record naming its latest re-embedding job, so every node
// finds the job in progress (for /health, and to start no second one).
const ReindexJobKey = "rag.reindex-job"

// ReindexJob is that record: the job and the model it re-embeds with.
type ReindexJob struct {
	JobID string `json:"jobId"`
	Model string `json:"model"`
}

// Job returns the tenant's latest re-embedding job; ok is false when it never had one.
func (a *ActiveIndexes) Job(ctx context.Context, tenant string) (j ReindexJob, ok bool, err error) {
	b, err := a.kv.Get(ctx, tenant, ReindexJobKey)
	if errors.Is(err, a.notFound) {
		return ReindexJob{}, false, nil
	}
	if err != nil {
		return ReindexJob{}, false, fmt.Errorf("re-embedding job of tenant %s: %w", tenant, err)
	}
	if err := json.Unmarshal(b, &j); err != nil {
		return ReindexJob{}, false, fmt.Errorf("re-embedding job of tenant %s: decode: %w", tenant, err)
	}
	return j, true, nil
}

// SetJob records the tenant's latest re-embedding job.
func (a *ActiveIndexes) SetJob(ctx context.Context, tenant string, j ReindexJob) error {
	b, err := json.Marshal(j)
	if err != nil {
		return fmt.Errorf("re-embedding job of tenant %s: encode: %w", tenant, err)
	}
	if err := a.kv.Put(ctx, tenant, ReindexJobKey, b, 0); err != nil {
		return fmt.Errorf("re-embedding job of tenant %s: %w", tenant, err)
	}
	return nil
}
