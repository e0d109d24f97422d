package api

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/metering"
	"github.com/crispy-enigma/crispy/rag"
	"github.com/crispy-enigma/crispy/store"
	"github.com/crispy-enigma/crispy/wire"
)

// Retrieval is the retrieval service as the document and search routes use it (rag.Service).
type Retrieval interface {
	Ingest(ctx context.Context, t *config.TenantConfig, doc rag.Document, trace string) (rag.IngestResult, error)
	IngestBatch(ctx context.Context, t *config.TenantConfig, docs []rag.PendingDoc, trace string) ([]wire.IngestItemResult, string, error)
	JobStatus(ctx context.Context, tenant, jobID string) (wire.JobStatus, error)
	Documents(ctx context.Context, tenantID string) ([]store.Document, error)
	Delete(ctx context.Context, tenantID, docID, trace string) (int, error)
	Search(ctx context.Context, t *config.TenantConfig, q rag.Query) (rag.SearchResult, error)
	// EmbeddingStatus is GET /health's embeddings: read from records, no side effects.
	EmbeddingStatus(ctx context.Context, t *config.TenantConfig) wire.TenantEmbeddings
}

var _ Retrieval = (*rag.Service)(nil)

// RAGDeps are the document and search routes' dependencies (POST /ingest, GET /documents,
// DELETE /documents/:docId, POST /search, GET /ingest/jobs/:id).
type RAGDeps struct {
	Service Retrieval // required
	// MaxUploadSize is POST /ingest's body limit (JSON and multipart), which replaces the global
	// MaxRequestBodySize for that route only; 0 means DefaultMaxUploadSize.
	MaxUploadSize int64
}

// DefaultMaxUploadSize is RAGDeps.MaxUploadSize's default.
const DefaultMaxUploadSize = 32 << 20

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

func (s *Server) postIngest(c echo.Context) error {
	if err := s.checkRateLimit(c, ""); err != nil {
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
	docs := make([]rag.PendingDoc, len(*req.Documents))
	for i, d := range *req.Documents {
		docs[i] = pendingFromJSON(d, fmt.Sprintf("documents[%d]", i))
	}
	return s.ingestBatch(c, docs)
}

// ingestOriginal is the original single-document form and its answer (docs/api.md).
func (s *Server) ingestOriginal(c echo.Context, d ingestDoc) error {
	p := pendingFromJSON(d, "")
	if p.Err != nil {
		return NewError(http.StatusBadRequest, p.Err.Code, p.Err.Message)
	}
	res, err := s.rag.Service.Ingest(c.Request().Context(), tenantOf(c), p.Doc, traceID(c))
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
func pendingFromJSON(d ingestDoc, field string) rag.PendingDoc {
	prefix := ""
	if field != "" {
		prefix = field + "."
	}
	fail := func(id, format string, args ...any) rag.PendingDoc {
		return rag.PendingDoc{Doc: rag.Document{ID: id}, Err: &wire.ErrorBody{Code: CodeInvalidRequest, Message: fmt.Sprintf(format, args...)}}
	}
	if d.DocID == nil || *d.DocID == "" {
		return fail("", "%sdocId: required", prefix)
	}
	id := *d.DocID
	if err := rag.ValidateDocID(id); err != nil {
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
	return rag.PendingDoc{Doc: doc}
}

// multipartDocs reads a multipart/form-data upload: each "file" part is a document; its docId is
// the docId form value at the same position, else the file name made into a valid docId. Form
// values title, source and url apply to every file (useful for one).
func (s *Server) multipartDocs(c echo.Context) ([]rag.PendingDoc, error) {
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
	docs := make([]rag.PendingDoc, len(files))
	for i, fh := range files {
		id := ""
		if i < len(ids) {
			id = ids[i]
		} else {
			id = wire.DocIDFromFilename(fh.Filename)
		}
		if err := rag.ValidateDocID(id); err != nil {
			docs[i] = rag.PendingDoc{Doc: rag.Document{ID: id}, Err: &wire.ErrorBody{Code: CodeInvalidRequest, Message: fmt.Sprintf("file %q: %v", rag.Truncate(fh.Filename, 64), err)}}
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
		docs[i] = rag.PendingDoc{Doc: rag.Document{
			ID: id, Data: data, ContentType: ct, Filename: filepath.Base(fh.Filename),
			Title: first("title"), Source: cmpOr(first("source"), filepath.Base(fh.Filename)), URL: first("url"),
		}}
	}
	return docs, nil
}

// ingestBatch ingests docs inline, or queues them as a job (202) when the batch is large.
func (s *Server) ingestBatch(c echo.Context, docs []rag.PendingDoc) error {
	results, jobID, err := s.rag.Service.IngestBatch(c.Request().Context(), tenantOf(c), docs, traceID(c))
	if err != nil {
		return Wrap(http.StatusServiceUnavailable, CodeUnavailable, "could not queue the ingest job, retry shortly", err)
	}
	if jobID != "" {
		return ok(c, http.StatusAccepted, wire.IngestJobAccepted{JobID: jobID, Status: wire.JobQueued, Total: len(docs)})
	}
	return ok(c, http.StatusOK, wire.Summarize(results))
}

func (s *Server) getIngestJob(c echo.Context) error {
	st, err := s.rag.Service.JobStatus(c.Request().Context(), tenantOf(c).TenantID, c.Param("id"))
	if errors.Is(err, rag.ErrJobNotFound) {
		return NewError(http.StatusNotFound, CodeNotFound, "no such ingest job")
	}
	if err != nil {
		return Wrap(http.StatusInternalServerError, CodeInternal, "internal error", err)
	}
	return ok(c, http.StatusOK, st)
}

// ragError maps retrieval errors to the envelope (rag.Classify says the code and message).
func ragError(err error, docID string) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var be *metering.BudgetError
	if errors.As(err, &be) { // an upstream embedding model is metered like chat
		return Wrap(http.StatusTooManyRequests, CodeBudgetExceeded, "token budget exceeded: embedding this request's text "+
			"(an estimate of "+strconv.FormatInt(be.Estimate, 10)+" tokens) would pass the tenant's tokenBudget", err)
	}
	f := rag.Classify(err, docID)
	status := map[string]int{
		CodeInvalidRequest: http.StatusBadRequest, CodeNotFound: http.StatusNotFound,
		CodeAIError: http.StatusBadGateway, CodeUnavailable: http.StatusServiceUnavailable,
		CodeQuotaExceeded: http.StatusForbidden,
	}[f.Code]
	if status == 0 {
		status = http.StatusInternalServerError
	}
	return Wrap(status, f.Code, f.Message, err)
}

// ---- documents --------------------------------------------------------------------------------

func (s *Server) getDocuments(c echo.Context) error {
	docs, err := s.rag.Service.Documents(c.Request().Context(), tenantOf(c).TenantID)
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
	id := c.Param("docId")
	n, err := s.rag.Service.Delete(c.Request().Context(), tenantOf(c).TenantID, id, traceID(c))
	if err != nil {
		return ragError(err, id)
	}
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
	if err := s.checkRateLimit(c, ""); err != nil {
		return err
	}
	started := time.Now() // metrics.go: the search event's latency
	res, err := s.rag.Service.Search(c.Request().Context(), tenantOf(c), rag.Query{Text: *req.Query, TopK: topK, Filter: req.Filter})
	if err != nil {
		rerr := ragError(err, "")
		s.recordSearch(c, res.Cache, started, rerr)
		return rerr
	}
	s.recordSearch(c, res.Cache, started, nil)
	if res.Cache == store.SearchCacheHit {
		c.Response().Header().Set("x-cache", "HIT")
	} else {
		c.Response().Header().Set("x-cache", "MISS")
	}
	return ok(c, http.StatusOK, searchData{Status: "ok", TraceID: traceID(c), Answer: res.Answer})
}
