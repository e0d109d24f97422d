package rag

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"github.com/crispy-enigma/crispy/gateway"
)

// ErrEmbedding wraps an embedding-model failure (docs/api.md: 502 ai_error).
var ErrEmbedding = errors.New("embedding failed")

// ErrInvalidDocument reports a document the caller must fix (400).
var ErrInvalidDocument = errors.New("invalid document")

// Defaults of the Ingester.
const (
	DefaultEmbedBatchSize = 64
	// MetaTextLimit is how much chunk text docs/api.md keeps in metadata.
	MetaTextLimit = 512
)

// Document is one document to ingest: the original body
// {docId, text, source?, title?, url?, chunking?} plus our content types.
// Data (raw bytes, e.g. a multipart file) wins over Text when non-nil.
type Document struct {
	ID          string
	Text        string
	Data        []byte
	ContentType string // explicit type; else from Filename's extension; else sniffed
	Filename    string
	Source      string
	Title       string
	URL         string
	// Meta is extra filterable metadata (string, number or bool values);
	// it cannot override the reserved keys below.
	Meta     map[string]any
	Chunking *ChunkOptions // nil: DefaultChunkOptions
	// Limits are the tenant's quota and the request's chunk allowance; nil: only
	// MaxChunksPerDocument and MinChunkSize apply. Never serialized (a job's payload holds
	// documents): each run sets its own.
	Limits *IngestLimits `json:"-"`
}

// IngestResult is what POST /ingest reports per document.
type IngestResult struct {
	DocID            string `json:"docId"`
	Chunks           int    `json:"chunks"`
	EmbeddingModelID string `json:"embeddingModelId"`
	ContentType      string `json:"contentType"`
	Title            string `json:"title,omitempty"`
}

// Ingester is parse → chunk → embed in batches → replace the document's
// chunks in the store.
type Ingester struct {
	store     VectorStore
	embedder  gateway.EmbeddingModel
	batchSize int
}

// IngesterOptions tune an Ingester; zero values select defaults.
type IngesterOptions struct {
	EmbedBatchSize int
}

// NewIngester returns an Ingester writing to store with embedder.
func NewIngester(store VectorStore, embedder gateway.EmbeddingModel, opts IngesterOptions) *Ingester {
	if opts.EmbedBatchSize <= 0 {
		opts.EmbedBatchSize = DefaultEmbedBatchSize
	}
	return &Ingester{store: store, embedder: embedder, batchSize: opts.EmbedBatchSize}
}

// Reserved chunk metadata keys (docs/api.md plus headingPath, contentType).
var reservedMeta = map[string]bool{
	"tenantId": true, "docId": true, "chunkId": true, "source": true, "title": true, "url": true,
	"text": true, "headingPath": true, "contentType": true, "chunkIndex": true, MetaEmbeddingModel: true,
}

// Ingest parses, chunks and embeds doc, then replaces every chunk the
// document had (DeleteDoc then Upsert), so re-ingesting a docId with fewer
// chunks leaves none of the old ones. Everything that can fail on the
// document itself (parsing, embedding) happens before the delete, so a
// failed re-ingest leaves the previous version in place. A store that
// implements DocReplacer (the embedded one) swaps the versions atomically;
// otherwise a store failure between the delete and the upsert can leave the
// document missing.
//
// Errors: ErrInvalidDocument, ErrEmptyDocument, ErrUnsupportedContentType,
// ErrCorruptDocument, ErrInvalidChunking (400; ErrTooManyChunks with it);
// ErrQuotaExceeded (quota_exceeded); ErrEmbedding (502); others are store
// failures (500).
func (in *Ingester) Ingest(ctx context.Context, tenant string, doc Document) (_ IngestResult, err error) {
	if err := ValidateTenant(tenant); err != nil {
		return IngestResult{}, err
	}
	if strings.TrimSpace(doc.ID) == "" {
		return IngestResult{}, fmt.Errorf("%w: docId is required", ErrInvalidDocument)
	}
	opts := DefaultChunkOptions()
	if doc.Chunking != nil {
		opts = *doc.Chunking
	}
	if err := opts.Validate(); err != nil {
		return IngestResult{}, fmt.Errorf("document %s: %w", doc.ID, err)
	}
	if opts.MaxChunkSize < MinChunkSize {
		return IngestResult{}, fmt.Errorf("document %s: %w: maxChunkSize %d must be at least %d", doc.ID, ErrInvalidChunking, opts.MaxChunkSize, MinChunkSize)
	}
	data := doc.Data
	if data == nil {
		data = []byte(doc.Text)
	}
	ct, err := DetectContentType(doc.ContentType, doc.Filename, data)
	if err != nil {
		return IngestResult{}, fmt.Errorf("document %s: %w", doc.ID, err)
	}
	parsed, err := Parse(ct, data)
	if err != nil {
		return IngestResult{}, fmt.Errorf("document %s (%s): %w", doc.ID, ct, err)
	}
	if !hasWord(parsed.Sections) {
		// Nothing to match: BM25 indexes no term, and an embedder sees only noise.
		return IngestResult{}, fmt.Errorf("document %s: %w: no letters or digits", doc.ID, ErrEmptyDocument)
	}
	sections, err := chunkSections(doc.ID, parsed.Sections, opts, MaxChunksPerDocument)
	if err != nil {
		return IngestResult{}, fmt.Errorf("document %s: %w", doc.ID, err)
	}
	if lim := doc.Limits; lim != nil {
		if lim.Quota != nil {
			if err := CheckQuota(*lim.Quota, lim.Used, len(sections), int64(len(data))); err != nil {
				return IngestResult{}, fmt.Errorf("document %s: %w", doc.ID, err)
			}
		}
		if lim.Request != nil {
			if err := lim.Request.take(len(sections)); err != nil {
				return IngestResult{}, fmt.Errorf("document %s: %w", doc.ID, err)
			}
			taken := len(sections)
			defer func() {
				if err != nil {
					lim.Request.giveBack(taken)
				}
			}()
		}
	}
	title := doc.Title
	if title == "" {
		title = parsed.Title
	}
	chunks := make([]Chunk, len(sections))
	for i, sc := range sections {
		meta := make(map[string]any, 10+len(doc.Meta))
		for k, v := range doc.Meta {
			if !reservedMeta[k] {
				meta[k] = v
			}
		}
		meta["tenantId"] = tenant
		meta["docId"] = doc.ID
		meta["chunkId"] = sc.ID
		meta["text"] = truncateRunes(sc.Text, MetaTextLimit)
		meta["contentType"] = ct
		meta[MetaEmbeddingModel] = in.embedder.ID()
		setIf(meta, "source", doc.Source)
		setIf(meta, "title", title)
		setIf(meta, "url", doc.URL)
		setIf(meta, "headingPath", HeadingPathString(sc.HeadingPath))
		chunks[i] = Chunk{ID: sc.ID, DocID: doc.ID, Index: sc.Index, Text: sc.Text, Meta: meta}
	}
	for start := 0; start < len(chunks); start += in.batchSize {
		batch := chunks[start:min(len(chunks), start+in.batchSize)]
		texts := make([]string, len(batch))
		for i, c := range batch {
			texts[i] = c.Text
		}
		vecs, err := in.embedder.Embed(ctx, texts)
		if err != nil {
			return IngestResult{}, fmt.Errorf("document %s: %w: %w", doc.ID, ErrEmbedding, err)
		}
		if err := CheckVectors(in.embedder, vecs, len(batch)); err != nil {
			return IngestResult{}, fmt.Errorf("document %s: %w", doc.ID, err)
		}
		for i := range batch {
			batch[i].Vector = vecs[i]
		}
	}
	// Check metadata limits before touching the stored version.
	for _, c := range chunks {
		if _, err := EncodeMeta(c); err != nil {
			return IngestResult{}, fmt.Errorf("document %s: %w", doc.ID, err)
		}
	}
	if r, ok := in.store.(DocReplacer); ok {
		if _, err := r.ReplaceDoc(ctx, tenant, doc.ID, chunks); err != nil {
			return IngestResult{}, fmt.Errorf("document %s: replace chunks: %w", doc.ID, err)
		}
		return IngestResult{DocID: doc.ID, Chunks: len(chunks), EmbeddingModelID: in.embedder.ID(), ContentType: ct, Title: title}, nil
	}
	if _, err := in.store.DeleteDoc(ctx, tenant, doc.ID); err != nil {
		return IngestResult{}, fmt.Errorf("document %s: replace old chunks: %w", doc.ID, err)
	}
	if err := in.store.Upsert(ctx, tenant, chunks); err != nil {
		return IngestResult{}, fmt.Errorf("document %s: store chunks: %w", doc.ID, err)
	}
	return IngestResult{DocID: doc.ID, Chunks: len(chunks), EmbeddingModelID: in.embedder.ID(), ContentType: ct, Title: title}, nil
}

// Delete removes every chunk of a document (DELETE /documents/:docId).
func (in *Ingester) Delete(ctx context.Context, tenant, docID string) (int, error) {
	n, err := in.store.DeleteDoc(ctx, tenant, docID)
	if err != nil {
		return 0, fmt.Errorf("delete document %s: %w", docID, err)
	}
	return n, nil
}

// CheckVectors checks what a model returned for n texts before anything is stored: n vectors, each
// of the model's dimension (when it states one) and equal length, with no NaN or infinity. A bad
// vector would be stored where it corrupts every similarity computed against it; it is an
// ErrEmbedding (502) naming the model and the text's position instead.
func CheckVectors(m gateway.EmbeddingModel, vecs [][]float32, n int) error {
	if len(vecs) != n {
		return fmt.Errorf("%w: model %s returned %d vectors for %d texts", ErrEmbedding, m.ID(), len(vecs), n)
	}
	want := m.Dimension()
	for i, v := range vecs {
		if want <= 0 {
			want = len(v)
		}
		if len(v) != want || len(v) == 0 {
			return fmt.Errorf("%w: model %s returned a vector of dimension %d for text %d, want %d: %w",
				ErrEmbedding, m.ID(), len(v), i, want, ErrDimensionMismatch)
		}
		if j := gateway.NonFinite(v); j >= 0 {
			return fmt.Errorf("%w: model %s returned a non-finite value at position %d for text %d", ErrEmbedding, m.ID(), j, i)
		}
	}
	return nil
}

func hasWord(sections []Section) bool {
	for _, s := range sections {
		if strings.ContainsFunc(s.Text, func(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }) {
			return true
		}
	}
	return false
}

func setIf(m map[string]any, k, v string) {
	if v != "" {
		m[k] = v
	}
}

func truncateRunes(s string, n int) string {
	i := 0
	for pos := range s {
		if i == n {
			return s[:pos]
		}
		i++
	}
	return s
}
