package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/observe"
	"github.com/crispy-enigma/crispy/rag"
	"github.com/crispy-enigma/crispy/store"
)

// RewriteModels is the gateway router as query rewriting uses it: Describe says whether a model is
// served (no call is made for one that is not), Complete runs the rewrite.
type RewriteModels interface {
	CompleteModels
	Describe(model string) (gateway.ModelInfo, error)
}

var _ RewriteModels = (*gateway.Router)(nil)

// RAGDeps are the document and search routes' dependencies (POST /ingest, GET /documents,
// DELETE /documents/:docId, POST /search, GET /ingest/jobs/:id).
type RAGDeps struct {
	Store    rag.VectorStore        // required
	Embedder gateway.EmbeddingModel // required; the model every document and query is embedded with
	Limiter  RateLimiter            // required: /ingest and /search are rate limited
	// Keyword is the BM25 side of hybrid retrieval; nil uses Store when it implements it.
	Keyword rag.KeywordSearcher
	// Catalog holds the document catalogue (the documents table of each tenant's meta.db); required.
	Catalog *store.TenantDBs
	// Ledger, when set, also receives document_ingested / document_deleted events (audit and the
	// source a Rebuild replays). The catalogue row is written directly either way, so GET /documents
	// reads its own writes; the projector's write of the same event is idempotent and equal.
	Ledger *store.Ledger
	// Cache is the tenant-scoped "cache" bucket (AllowTTL); nil disables the search cache.
	Cache *store.TenantKV
	// Models rewrites queries through the tenant's chat model; nil disables rewriting.
	Models RewriteModels
	// Jobs runs large batches in the background; nil processes every batch inline.
	Jobs *IngestJobs
	// MaxUploadSize is POST /ingest's body limit (JSON and multipart), which replaces the global
	// MaxRequestBodySize for that route only; 0 means DefaultMaxUploadSize.
	MaxUploadSize int64
	// JobMinDocs and JobMinBytes: a batch with more documents, or more payload bytes, becomes a job
	// (202). Zero values select DefaultJobMinDocs and DefaultJobMinBytes.
	JobMinDocs  int
	JobMinBytes int64
	// RewriteTimeout overrides rag.RewriteTimeout (tests).
	RewriteTimeout time.Duration
}

// Defaults of RAGDeps.
const (
	DefaultMaxUploadSize = 32 << 20
	DefaultJobMinDocs    = 20
	DefaultJobMinBytes   = 2 << 20
	// searchCacheTTL is CONTRACT.md's 24 h.
	searchCacheTTL = 24 * time.Hour
	// searchGenKey holds the tenant's search-cache generation (see invalidateSearchCache).
	searchGenKey = "search-gen"
)

// ragService is the server's RAG state built from RAGDeps.
type ragService struct {
	RAGDeps
	ingester *rag.Ingester
	keyword  rag.KeywordSearcher
	warned   sync.Map // tenant ID → struct{}: embedding-model mismatch logged once
}

func newRAGService(d *RAGDeps) (*ragService, error) {
	if d.Store == nil || d.Embedder == nil || d.Limiter == nil || d.Catalog == nil {
		return nil, errors.New("api: Deps.RAG needs Store, Embedder, Limiter and Catalog")
	}
	r := &ragService{RAGDeps: *d}
	if r.MaxUploadSize <= 0 {
		r.MaxUploadSize = DefaultMaxUploadSize
	}
	if r.JobMinDocs <= 0 {
		r.JobMinDocs = DefaultJobMinDocs
	}
	if r.JobMinBytes <= 0 {
		r.JobMinBytes = DefaultJobMinBytes
	}
	r.keyword = d.Keyword
	if r.keyword == nil {
		r.keyword, _ = d.Store.(rag.KeywordSearcher)
	}
	r.ingester = rag.NewIngester(d.Store, d.Embedder, rag.IngesterOptions{})
	return r, nil
}

func (s *Server) ragRoutes(e *echo.Echo) {
	e.POST("/ingest", s.postIngest)
	e.GET("/ingest/jobs/:id", s.getIngestJob)
	e.GET("/documents", s.getDocuments)
	e.DELETE("/documents/:docId", s.deleteDocument)
	e.POST("/search", s.postSearch)
}

// bodyLimit is the body size limit the middleware enforces for this request: POST /ingest has its
// own (RAGDeps.MaxUploadSize, for file uploads and large batches), every other route the global
// MaxRequestBodySize. Echo routes before it runs the middleware, so c.Path() is the matched route.
func (s *Server) bodyLimit(c echo.Context) int64 {
	if s.rag != nil && c.Path() == "/ingest" && c.Request().Method == http.MethodPost {
		return max(s.rag.MaxUploadSize, s.env.MaxRequestBodySize)
	}
	return s.env.MaxRequestBodySize
}

// docIDPattern: letters, digits and . _ : - ; starting with a letter or digit, so a docId is never
// ".", "..", an option-like "-x" or empty. ".." inside is refused too (no path tricks anywhere a
// docId might one day name a file).
var docIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)

func validateDocID(id string) error {
	if !docIDPattern.MatchString(id) || strings.Contains(id, "..") {
		return fmt.Errorf("docId %q: must be 1-128 characters of letters, digits and . _ : - , start with a letter or digit, and not contain \"..\"", truncate(id, 64))
	}
	return nil
}

func truncate(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}

// ---- POST /ingest -----------------------------------------------------------------------------

// ingestDoc is one document of the original body or of the batch form. Text and Content are
// synonyms; Encoding "base64" means the content is base64 bytes (a PDF in JSON).
type ingestDoc struct {
	DocID       *string           `json:"docId"`
	Text        *string           `json:"text"`
	Content     *string           `json:"content"`
	ContentType string            `json:"contentType"`
	Encoding    string            `json:"encoding"`
	Filename    string            `json:"filename"`
	Source      string            `json:"source"`
	Title       string            `json:"title"`
	URL         string            `json:"url"`
	Metadata    map[string]any    `json:"metadata"`
	Chunking    *rag.ChunkOptions `json:"chunking"`
}

type ingestRequest struct {
	ingestDoc
	Documents *[]ingestDoc `json:"documents"`
}

// IngestItemResult is one document's outcome in a batch (and in a job's results): Status is
// "ingested" with Chunks/EmbeddingModelID/ContentType, or "failed" with Error naming the problem.
type IngestItemResult struct {
	DocID            string     `json:"docId"`
	Status           string     `json:"status"`
	Chunks           int        `json:"chunks,omitempty"`
	EmbeddingModelID string     `json:"embeddingModelId,omitempty"`
	ContentType      string     `json:"contentType,omitempty"`
	Error            *errorBody `json:"error,omitempty"`
}

// ingestBatchData is the batch (and multipart) response: status "ingested" when every document
// landed, "partial" when some failed, "failed" when none landed. HTTP status is 200 in all three:
// the per-document results say what happened.
type ingestBatchData struct {
	Status    string             `json:"status"`
	Results   []IngestItemResult `json:"results"`
	Succeeded int                `json:"succeeded"`
	Failed    int                `json:"failed"`
}

// ingestJobAccepted is the 202 answer for a batch above the job threshold.
type ingestJobAccepted struct {
	JobID  string `json:"jobId"`
	Status string `json:"status"`
	Total  int    `json:"total"`
}

// pendingDoc is a document ready to ingest, or the reason it cannot be (Err, decided at parse time).
type pendingDoc struct {
	Doc rag.Document `json:"doc"`
	Err *errorBody   `json:"err,omitempty"`
}

func (p pendingDoc) size() int64 { return int64(len(p.Doc.Data) + len(p.Doc.Text)) }

func (s *Server) postIngest(c echo.Context) error {
	if err := s.checkRateLimit(c, s.rag.Limiter, ""); err != nil {
		return err
	}
	mt, _, _ := mime.ParseMediaType(c.Request().Header.Get("Content-Type"))
	if mt == "multipart/form-data" {
		docs, err := s.multipartDocs(c)
		if err != nil {
			return err
		}
		return s.ingestBatch(c, docs)
	}
	var req ingestRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if req.Documents == nil {
		return s.ingestOriginal(c, req.ingestDoc)
	}
	if len(*req.Documents) == 0 {
		return errInvalidRequest("documents: must hold at least one document")
	}
	docs := make([]pendingDoc, len(*req.Documents))
	for i, d := range *req.Documents {
		docs[i] = pendingFromJSON(d, fmt.Sprintf("documents[%d]", i))
	}
	return s.ingestBatch(c, docs)
}

// ingestOriginal is the original single-document form and its answer (CONTRACT.md).
func (s *Server) ingestOriginal(c echo.Context, d ingestDoc) error {
	p := pendingFromJSON(d, "")
	if p.Err != nil {
		return NewError(http.StatusBadRequest, p.Err.Code, p.Err.Message)
	}
	res, err := s.ingestOne(c.Request().Context(), tenantOf(c), p.Doc, traceID(c))
	if err != nil {
		return ragError(err, p.Doc.ID)
	}
	return ok(c, http.StatusOK, map[string]any{
		"status": "ingested", "docId": res.DocID, "chunks": res.Chunks,
		"embeddingModelId": res.EmbeddingModelID, "contentType": res.ContentType,
	})
}

// pendingFromJSON validates one JSON document; field names the position in a batch ("" for the
// original form).
func pendingFromJSON(d ingestDoc, field string) pendingDoc {
	prefix := ""
	if field != "" {
		prefix = field + "."
	}
	fail := func(id, format string, args ...any) pendingDoc {
		return pendingDoc{Doc: rag.Document{ID: id}, Err: &errorBody{Code: CodeInvalidRequest, Message: fmt.Sprintf(format, args...)}}
	}
	if d.DocID == nil || *d.DocID == "" {
		return fail("", "%sdocId: required", prefix)
	}
	id := *d.DocID
	if err := validateDocID(id); err != nil {
		return fail(id, "%s%v", prefix, err)
	}
	text := d.Text
	if text == nil {
		text = d.Content
	}
	if text == nil {
		return fail(id, "%stext: required (or content) for document %q", prefix, id)
	}
	doc := rag.Document{
		ID: id, ContentType: d.ContentType, Filename: d.Filename, Source: d.Source, Title: d.Title, URL: d.URL,
		Meta: d.Metadata, Chunking: d.Chunking,
	}
	switch strings.ToLower(d.Encoding) {
	case "":
		doc.Text = *text
		if doc.ContentType == rag.ContentTypePDF || strings.EqualFold(filepath.Ext(doc.Filename), ".pdf") {
			doc.Data = []byte(*text) // a PDF is bytes; Text would be taken as plain text
		}
	case "base64":
		b, err := base64.StdEncoding.DecodeString(*text)
		if err != nil {
			return fail(id, "%scontent of document %q: invalid base64", prefix, id)
		}
		doc.Data = b
	default:
		return fail(id, "%sencoding of document %q: must be \"base64\" or absent", prefix, id)
	}
	for k, v := range d.Metadata {
		switch v.(type) {
		case string, float64, bool:
		default:
			return fail(id, "%smetadata.%s of document %q: must be a string, number or boolean", prefix, k, id)
		}
	}
	return pendingDoc{Doc: doc}
}

// multipartDocs reads a multipart/form-data upload: each "file" part is a document; its docId is
// the docId form value at the same position, else the file name made into a valid docId. Form
// values title, source and url apply to every file (useful for one).
func (s *Server) multipartDocs(c echo.Context) ([]pendingDoc, error) {
	req := c.Request()
	// Parts up to 8 MiB stay in memory, larger ones spill to temp files removed below; the body
	// itself is already capped at MaxUploadSize by the middleware.
	if err := req.ParseMultipartForm(8 << 20); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errPayloadTooLarge(mbe.Limit)
		}
		return nil, Wrap(http.StatusBadRequest, CodeInvalidRequest, "malformed multipart body", err)
	}
	form := req.MultipartForm
	defer func() { _ = form.RemoveAll() }()
	files := form.File["file"]
	if len(files) == 0 {
		return nil, errInvalidRequest("file: at least one file part named \"file\" is required")
	}
	ids := form.Value["docId"]
	first := func(k string) string {
		if v := form.Value[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	docs := make([]pendingDoc, len(files))
	for i, fh := range files {
		id := ""
		if i < len(ids) {
			id = ids[i]
		} else {
			id = DocIDFromFilename(fh.Filename)
		}
		if err := validateDocID(id); err != nil {
			docs[i] = pendingDoc{Doc: rag.Document{ID: id}, Err: &errorBody{Code: CodeInvalidRequest, Message: fmt.Sprintf("file %q: %v", truncate(fh.Filename, 64), err)}}
			continue
		}
		f, err := fh.Open()
		if err != nil {
			return nil, Wrap(http.StatusInternalServerError, CodeInternal, "internal error", fmt.Errorf("open upload: %w", err))
		}
		data := make([]byte, fh.Size)
		_, err = io.ReadFull(f, data)
		_ = f.Close()
		if err != nil {
			return nil, Wrap(http.StatusInternalServerError, CodeInternal, "internal error", fmt.Errorf("read upload: %w", err))
		}
		ct, _, _ := mime.ParseMediaType(fh.Header.Get("Content-Type"))
		if ct == "application/octet-stream" {
			ct = "" // "unknown": decide by file name, then by content
		}
		docs[i] = pendingDoc{Doc: rag.Document{
			ID: id, Data: data, ContentType: ct, Filename: filepath.Base(fh.Filename),
			Title: first("title"), Source: cmpOr(first("source"), filepath.Base(fh.Filename)), URL: first("url"),
		}}
	}
	return docs, nil
}

// DocIDFromFilename makes a docId from a file name (or a relative path): path separators become
// ".", any other character outside [A-Za-z0-9._:-] becomes "_", runs of dots collapse, and the
// result is cut to 128 characters. The CLI uses it too, so an upload gets the same docId either way.
func DocIDFromFilename(name string) string {
	name = filepath.ToSlash(name)
	var b strings.Builder
	for _, r := range name {
		switch {
		case r == '/' || r == '\\':
			b.WriteByte('.')
		case r < 128 && (r == '.' || r == '_' || r == ':' || r == '-' ||
			(r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')):
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	id := b.String()
	for strings.Contains(id, "..") {
		id = strings.ReplaceAll(id, "..", ".")
	}
	id = strings.TrimLeft(id, ".:-_")
	if len(id) > 128 {
		id = id[len(id)-128:]
		id = strings.TrimLeft(id, ".:-_")
	}
	if id == "" {
		id = "document"
	}
	return id
}

// ingestBatch ingests docs inline, or queues them as a job when the batch is large and jobs are
// configured.
func (s *Server) ingestBatch(c echo.Context, docs []pendingDoc) error {
	t := tenantOf(c)
	var total int64
	for _, d := range docs {
		total += d.size()
	}
	if s.rag.Jobs != nil && (len(docs) > s.rag.JobMinDocs || total > s.rag.JobMinBytes) {
		id, err := s.rag.Jobs.Submit(c.Request().Context(), t.TenantID, traceID(c), docs)
		if err != nil {
			return Wrap(http.StatusServiceUnavailable, CodeUnavailable, "could not queue the ingest job, retry shortly", err)
		}
		return ok(c, http.StatusAccepted, ingestJobAccepted{JobID: id, Status: JobQueued, Total: len(docs)})
	}
	results := make([]IngestItemResult, len(docs))
	for i, d := range docs {
		results[i] = s.ingestPending(c.Request().Context(), t, d, traceID(c))
	}
	return ok(c, http.StatusOK, summarize(results))
}

func summarize(results []IngestItemResult) ingestBatchData {
	out := ingestBatchData{Results: results}
	for _, r := range results {
		if r.Status == "ingested" {
			out.Succeeded++
		} else {
			out.Failed++
		}
	}
	switch {
	case out.Failed == 0:
		out.Status = "ingested"
	case out.Succeeded == 0:
		out.Status = "failed"
	default:
		out.Status = "partial"
	}
	return out
}

// ingestPending ingests one batch document and reports its outcome; a failure names the document.
func (s *Server) ingestPending(ctx context.Context, t *config.TenantConfig, d pendingDoc, trace string) IngestItemResult {
	if d.Err != nil {
		return IngestItemResult{DocID: d.Doc.ID, Status: "failed", Error: d.Err}
	}
	res, err := s.ingestOne(ctx, t, d.Doc, trace)
	if err != nil {
		e := ragError(err, d.Doc.ID)
		if e.Err != nil && e.Status >= 500 {
			s.log.Warn().Err(e.Err).Str("tenantId", t.TenantID).Str("traceId", trace).Str("docId", d.Doc.ID).Msg("ingest failed")
		}
		return IngestItemResult{DocID: d.Doc.ID, Status: "failed", Error: &errorBody{Code: e.Code, Message: e.Message}}
	}
	return IngestItemResult{DocID: res.DocID, Status: "ingested", Chunks: res.Chunks, EmbeddingModelID: res.EmbeddingModelID, ContentType: res.ContentType}
}

// ingestOne is the one place a document lands: ingest (replacing its chunks) → catalogue → search
// cache invalidation.
func (s *Server) ingestOne(ctx context.Context, t *config.TenantConfig, doc rag.Document, trace string) (rag.IngestResult, error) {
	s.noteEmbeddingModel(t)
	res, err := s.rag.ingester.Ingest(ctx, t.TenantID, doc)
	if err != nil {
		return rag.IngestResult{}, err
	}
	raw := doc.Data
	if raw == nil {
		raw = []byte(doc.Text)
	}
	sum := sha256.Sum256(raw)
	entry := store.Document{
		DocID: res.DocID, Title: cmpOr(doc.Title, res.Title), Source: doc.Source, URL: doc.URL,
		ContentType: res.ContentType, Chunks: res.Chunks, Bytes: int64(len(raw)),
		SHA256: hex.EncodeToString(sum[:]), IngestedAt: s.now().UTC(),
	}
	if err := s.recordDocument(ctx, t.TenantID, entry, trace); err != nil {
		return rag.IngestResult{}, err
	}
	s.invalidateSearchCache(ctx, t.TenantID)
	return res, nil
}

// noteEmbeddingModel logs once per tenant when its configured embedding model is not the one this
// node embeds with (e.g. the original's @cf/baai/bge-m3 while only local/hash-embed is served).
func (s *Server) noteEmbeddingModel(t *config.TenantConfig) {
	want := t.AIModels.Embeddings
	if want == "" || want == s.rag.Embedder.ID() {
		return
	}
	if _, seen := s.rag.warned.LoadOrStore(t.TenantID, struct{}{}); !seen {
		s.log.Warn().Str("tenantId", t.TenantID).Str("configured", want).Str("using", s.rag.Embedder.ID()).
			Msg("tenant's embedding model is not served here: documents and queries are embedded with the local model")
	}
}

// recordDocument writes the catalogue row (the same statement the projector runs for a
// document_ingested event) and, when a ledger is wired, appends that event.
func (s *Server) recordDocument(ctx context.Context, tenant string, d store.Document, trace string) error {
	db, err := s.rag.Catalog.DB(ctx, tenant)
	if err != nil {
		return fmt.Errorf("catalogue: %w", err)
	}
	if _, err := db.ExecContext(ctx, `INSERT OR REPLACE INTO documents (doc_id, title, source, url, content_type, chunks,
		bytes, sha256, ingested_at) VALUES (?,?,?,?,?,?,?,?,?)`,
		d.DocID, d.Title, d.Source, d.URL, d.ContentType, d.Chunks, d.Bytes, d.SHA256, d.IngestedAt.UnixMilli()); err != nil {
		return fmt.Errorf("catalogue %s: %w", d.DocID, err)
	}
	if s.rag.Ledger != nil {
		ev := store.DocumentIngestedEvent(tenant, d)
		ev.TraceID = trace
		if err := s.rag.Ledger.Append(ctx, ev); err != nil {
			s.log.Warn().Err(err).Str("tenantId", tenant).Str("traceId", trace).Msg("ledger: document_ingested not recorded")
		}
	}
	return nil
}

func (s *Server) removeDocument(ctx context.Context, tenant, docID, trace string) error {
	db, err := s.rag.Catalog.DB(ctx, tenant)
	if err != nil {
		return fmt.Errorf("catalogue: %w", err)
	}
	if _, err := db.ExecContext(ctx, `DELETE FROM documents WHERE doc_id = ?`, docID); err != nil {
		return fmt.Errorf("catalogue delete %s: %w", docID, err)
	}
	if s.rag.Ledger != nil {
		ev := store.Event{Kind: store.KindDocumentDeleted, TenantID: tenant, Subject: docID, TraceID: trace}
		if err := s.rag.Ledger.Append(ctx, ev); err != nil {
			s.log.Warn().Err(err).Str("tenantId", tenant).Str("traceId", trace).Msg("ledger: document_deleted not recorded")
		}
	}
	return nil
}

// ragError maps rag errors to CONTRACT.md codes; the message names the document.
func ragError(err error, docID string) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	name := ""
	if docID != "" {
		name = fmt.Sprintf("document %q: ", docID)
	}
	switch {
	case errors.Is(err, rag.ErrEmptyDocument):
		return NewError(http.StatusBadRequest, CodeInvalidRequest, name+"text must not be empty or whitespace only")
	case errors.Is(err, rag.ErrUnsupportedContentType), errors.Is(err, rag.ErrCorruptDocument),
		errors.Is(err, rag.ErrInvalidDocument), errors.Is(err, rag.ErrInvalidChunking),
		errors.Is(err, rag.ErrMetadataTooLarge):
		// These messages come from our parsers and validators and say what is wrong with the
		// document (its type, "corrupt PDF"), never internals.
		return Wrap(http.StatusBadRequest, CodeInvalidRequest, name+clientMessage(err), err)
	case errors.Is(err, rag.ErrEmptyQuery):
		return NewError(http.StatusBadRequest, CodeInvalidRequest, "query: must contain at least one non-space character")
	case errors.Is(err, rag.ErrTopKTooLarge):
		return NewError(http.StatusBadRequest, CodeInvalidRequest, fmt.Sprintf("topK: must be between 1 and %d", rag.MaxTopK))
	case errors.Is(err, rag.ErrEmbedding):
		return Wrap(http.StatusBadGateway, CodeAIError, name+"embedding model failed", err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return Wrap(http.StatusServiceUnavailable, CodeUnavailable, name+"request cancelled or timed out", err)
	}
	return Wrap(http.StatusInternalServerError, CodeInternal, name+"internal error", err)
}

// clientMessage strips the "ingest <docId>: " style prefixes rag adds, keeping its description.
func clientMessage(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "+rag.ErrUnsupportedContentType.Error()); i >= 0 {
		return msg[i+2:]
	}
	for _, sentinel := range []error{rag.ErrCorruptDocument, rag.ErrInvalidDocument, rag.ErrInvalidChunking, rag.ErrMetadataTooLarge} {
		if i := strings.Index(msg, sentinel.Error()); i >= 0 {
			return msg[i:]
		}
	}
	return msg
}

// ---- documents --------------------------------------------------------------------------------

func (s *Server) getDocuments(c echo.Context) error {
	docs, err := s.rag.Catalog.Documents(c.Request().Context(), tenantOf(c).TenantID)
	if err != nil {
		return Wrap(http.StatusInternalServerError, CodeInternal, "internal error", err)
	}
	if docs == nil {
		docs = []store.Document{}
	}
	return ok(c, http.StatusOK, map[string]any{"documents": docs, "count": len(docs)})
}

// deleteDocument removes every chunk (vector store, keyword index) and the catalogue row. An
// unknown docId — including another tenant's, which this tenant's store cannot see — is 404.
func (s *Server) deleteDocument(c echo.Context) error {
	t := tenantOf(c)
	id := c.Param("docId")
	if err := validateDocID(id); err != nil {
		return NewError(http.StatusNotFound, CodeNotFound, "no such document")
	}
	ctx := c.Request().Context()
	n, err := s.rag.ingester.Delete(ctx, t.TenantID, id)
	if err != nil {
		return ragError(err, id)
	}
	found := n > 0
	if !found {
		// A catalogue row without chunks (an interrupted delete) still counts as existing.
		docs, err := s.rag.Catalog.Documents(ctx, t.TenantID)
		if err != nil {
			return Wrap(http.StatusInternalServerError, CodeInternal, "internal error", err)
		}
		for _, d := range docs {
			found = found || d.DocID == id
		}
	}
	if !found {
		return NewError(http.StatusNotFound, CodeNotFound, "no such document")
	}
	if err := s.removeDocument(ctx, t.TenantID, id, traceID(c)); err != nil {
		return Wrap(http.StatusInternalServerError, CodeInternal, "internal error", err)
	}
	s.invalidateSearchCache(ctx, t.TenantID)
	return ok(c, http.StatusOK, map[string]any{"docId": id, "deleted": true, "chunks": n})
}

// ---- POST /search -----------------------------------------------------------------------------

type searchRequest struct {
	Query  *string        `json:"query"`
	TopK   *int           `json:"topK"`
	Filter map[string]any `json:"filter"`
}

type searchData struct {
	Status  string `json:"status"`
	TraceID string `json:"traceId"`
	rag.Answer
}

func (s *Server) postSearch(c echo.Context) error {
	var req searchRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	switch {
	case req.Query == nil:
		return errInvalidRequest("query: required")
	case strings.TrimSpace(*req.Query) == "":
		return errInvalidRequest("query: must contain at least one non-space character")
	case len(*req.Query) > maxMessageChars:
		return errInvalidRequest("query: must be at most %d characters", maxMessageChars)
	}
	topK := rag.DefaultTopK
	if req.TopK != nil {
		topK = *req.TopK
	}
	if topK < 1 || topK > rag.MaxTopK {
		return errInvalidRequest("topK: must be between 1 and %d", rag.MaxTopK)
	}
	for k, v := range req.Filter {
		switch v.(type) {
		case string, float64, bool:
		default:
			return errInvalidRequest("filter.%s: must be a string, number or boolean", k)
		}
	}
	if err := s.checkRateLimit(c, s.rag.Limiter, ""); err != nil {
		return err
	}
	started := time.Now() // metrics.go: the search event's latency
	t := tenantOf(c)
	s.noteEmbeddingModel(t)
	ctx := c.Request().Context()
	query := strings.TrimSpace(*req.Query)
	rewritten := s.rewriteQuery(ctx, t, query)

	cacheKey := s.searchCacheKey(ctx, t.TenantID, rewritten, topK, req.Filter)
	if cacheKey != "" {
		if b, err := s.rag.Cache.Get(ctx, t.TenantID, cacheKey); err == nil {
			var a rag.Answer
			if json.Unmarshal(b, &a) == nil {
				s.recordSearch(c, store.SearchCacheHit, started, nil)
				c.Response().Header().Set("x-cache", "HIT")
				return ok(c, http.StatusOK, searchData{Status: "ok", TraceID: traceID(c), Answer: a})
			}
		}
	}
	// The rewrite already happened (the cache is keyed on it), so this request's Searcher is
	// handed the result rather than asking the model again.
	searcher := rag.NewSearcher(s.rag.Store, s.rag.Embedder, rag.SearcherOptions{
		Keyword: s.rag.keyword, Rewriter: fixedRewrite(rewritten), Tracer: s.ragTracer,
	})
	a, err := searcher.Search(ctx, t.TenantID, rag.Query{Text: query, TopK: topK, Filter: req.Filter})
	cacheState := store.SearchCacheOff
	if cacheKey != "" {
		cacheState = store.SearchCacheMiss
	}
	if err != nil {
		rerr := ragError(err, "")
		s.recordSearch(c, cacheState, started, rerr)
		return rerr
	}
	if cacheKey != "" && !a.Refused {
		if b, err := json.Marshal(a); err == nil {
			if err := s.rag.Cache.Put(ctx, t.TenantID, cacheKey, b, searchCacheTTL); err != nil {
				s.log.Debug().Err(err).Str("traceId", traceID(c)).Msg("search cache put")
			}
		}
	}
	s.recordSearch(c, cacheState, started, nil)
	c.Response().Header().Set("x-cache", "MISS")
	return ok(c, http.StatusOK, searchData{Status: "ok", TraceID: traceID(c), Answer: a})
}

type fixedRewrite string

func (f fixedRewrite) RewriteQuery(context.Context, string, string) (string, error) {
	return string(f), nil
}

// searchCacheKey is "search.<generation>.<sha256(rewritten query, topK, filter)>", or "" without a
// cache. The generation changes whenever the tenant's documents change (invalidateSearchCache).
func (s *Server) searchCacheKey(ctx context.Context, tenant, rewritten string, topK int, filter map[string]any) string {
	if s.rag.Cache == nil {
		return ""
	}
	gen := "0"
	if b, err := s.rag.Cache.Get(ctx, tenant, searchGenKey); err == nil {
		gen = string(b)
	} else if !errors.Is(err, store.ErrNotFound) {
		return "" // the cache is unreachable: search without it
	}
	f, _ := json.Marshal(filter) // map keys are sorted: equal filters hash equally
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%d\x00%s", rewritten, topK, f)
	return "search." + gen + "." + hex.EncodeToString(h.Sum(nil))
}

// invalidateSearchCache gives the tenant a new, random search-cache generation, so every cached
// answer is unreachable (and expires by its TTL). Why a generation rather than PurgeTenant: the
// cache bucket also holds other caches (the chat response cache), which a purge would clear; and a
// search that read the old generation before this change can only write under the old
// generation, so a stale answer computed concurrently with an ingest is never served — a purge
// followed by that late write would serve it for 24 h. The generation is random, not a counter,
// so two concurrent changes never write the same value.
func (s *Server) invalidateSearchCache(ctx context.Context, tenant string) {
	if s.rag.Cache == nil {
		return
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	if err := s.rag.Cache.Put(ctx, tenant, searchGenKey, []byte(hex.EncodeToString(b[:])), 0); err != nil {
		s.log.Warn().Err(err).Str("tenantId", tenant).Msg("search cache: generation not bumped")
	}
}

// rewriteQuery asks the tenant's chat model for a better search query, within the rewrite timeout;
// on failure, timeout, empty output, or when the model is local/extractive or not served, the
// original query is used (CONTRACT.md: "falls back to the original on failure or after 1 s").
func (s *Server) rewriteQuery(ctx context.Context, t *config.TenantConfig, query string) string {
	if s.rag.Models == nil {
		return query
	}
	model := cmpOr(s.env.ModelID, t.AIModels.Chat)
	if model == "" || model == gateway.ExtractiveModelID || strings.HasPrefix(model, "local/") {
		return query
	}
	if _, err := s.rag.Models.Describe(model); err != nil {
		return query
	}
	timeout := s.rag.RewriteTimeout
	if timeout <= 0 {
		timeout = rag.RewriteTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type result struct {
		text string
		err  error
	}
	done := make(chan result, 1) // buffered: a late answer does not block its goroutine
	go func() {
		text, _, _, err := s.rag.Models.Complete(ctx, gateway.ChatRequest{
			Model: model, MaxTokens: 64,
			Messages: []gateway.Message{
				{Role: "system", Content: "Rewrite the user's search query into a short, specific search query for a document " +
					"knowledge base. Keep its meaning and language. Reply with the rewritten query only, no quotes or explanation."},
				{Role: "user", Content: query},
			},
			Meta: gateway.RequestMeta{TenantID: t.TenantID, AccountID: t.AccountID, GatewayID: t.AIGatewayID, TraceID: observe.TraceID(ctx), Route: "/search"},
		}, "")
		done <- result{text, err}
	}()
	select {
	case r := <-done:
		out := strings.Trim(strings.TrimSpace(r.text), `"'`)
		if r.err != nil || out == "" || len(out) > 4*len(query)+200 {
			return query
		}
		return out
	case <-ctx.Done():
		return query
	}
}

// ---- local/extractive -------------------------------------------------------------------------

// Retriever is gateway.Retriever over a tenant's documents: hybrid retrieval (vector + BM25 fused
// by reciprocal rank) through a rag.Searcher without rewriting. It returns only passages that
// share a term with the question (the Searcher's relevance rule), so with nothing relevant
// local/extractive says so and cites nothing.
type Retriever struct {
	searcher *rag.Searcher
}

var _ gateway.Retriever = (*Retriever)(nil)

// NewRetriever returns a Retriever; keyword may be nil (store is used when it implements BM25).
func NewRetriever(st rag.VectorStore, embedder gateway.EmbeddingModel, keyword rag.KeywordSearcher) *Retriever {
	return &Retriever{searcher: rag.NewSearcher(st, embedder, rag.SearcherOptions{Keyword: keyword})}
}

// Retrieve returns up to k passages, best first. A tenant that has no documents gets none.
func (r *Retriever) Retrieve(ctx context.Context, tenantID, query string, k int) ([]gateway.Passage, error) {
	if strings.TrimSpace(query) == "" {
		return nil, nil
	}
	k = min(max(k, 1), rag.MaxTopK)
	a, err := r.searcher.Search(ctx, tenantID, rag.Query{Text: query, TopK: k})
	if err != nil {
		return nil, err
	}
	out := make([]gateway.Passage, 0, len(a.Sources))
	for _, src := range a.Sources {
		score := src.Score
		if score <= 0 {
			score = 1e-6 // it shares a term with the question (the Searcher kept it): relevant
		}
		out = append(out, gateway.Passage{ID: src.ID, DocID: src.DocID, Title: src.Title, Source: src.Source, URL: src.URL, Text: src.Text, Score: score})
	}
	return out, nil
}

// jobKeyOK reports whether a job ID from the URL can be a KV key (UUIDs are).
func jobKeyOK(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r == '-' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'f')) {
			return false
		}
	}
	return true
}
