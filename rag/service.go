package rag

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/observe"
	"github.com/crispy-enigma/crispy/store"
	"github.com/crispy-enigma/crispy/wire"
)

// Catalog is the document catalogue of each tenant's read model (store.TenantDBs): the same
// statements the ledger projector runs for document events.
type Catalog interface {
	PutDocument(ctx context.Context, tenantID string, d store.Document) error
	DeleteDocument(ctx context.Context, tenantID, docID string) error
	Documents(ctx context.Context, tenantID string) ([]store.Document, error)
}

// Ledger receives the document_ingested and document_deleted events (store.Ledger).
type Ledger interface {
	Append(ctx context.Context, ev store.Event) error
}

// Cache is the tenant-scoped "cache" bucket (store.TenantKV), which holds the search cache.
type Cache interface {
	Get(ctx context.Context, tenantID, key string) ([]byte, error)
	Put(ctx context.Context, tenantID, key string, value []byte, ttl time.Duration) error
}

// RewriteModels is the (metered) gateway router as query rewriting uses it: Describe says whether a
// model is served (no call is made for one that is not), Complete runs the rewrite.
type RewriteModels interface {
	Complete(ctx context.Context, req gateway.ChatRequest, fallbackModel string) (text string, usage gateway.Usage, model string, err error)
	Describe(model string) (gateway.ModelInfo, error)
}

// ModelSelector is the one model-selection rule (metering.Meter.SelectModels): the rewrite uses
// the model /chat would, under the same allow-list.
type ModelSelector interface {
	SelectModels(t *config.TenantConfig, requested string) (primary, fallback string, err error)
}

// Tenants looks up the tenant configs in force (config.Live).
type Tenants interface {
	ByID(id string) (*config.TenantConfig, bool)
}

var (
	_ Catalog = (*store.TenantDBs)(nil)
	_ Ledger  = (*store.Ledger)(nil)
	_ Cache   = (*store.TenantKV)(nil)
	_ Tenants = (*config.Live)(nil)
)

// ServiceOptions are a Service's dependencies.
type ServiceOptions struct {
	// Spaces gives each tenant its own active index and embedding model (serve); a tenant whose
	// model changes is re-embedded by a background job. Without it, Store and Embedder are the one
	// index and model of every tenant (tests, tools), and nothing is re-embedded.
	Spaces   *Spaces
	Store    VectorStore            // required without Spaces
	Embedder gateway.EmbeddingModel // required without Spaces
	Catalog  Catalog                // required
	Tenants  Tenants                // required: the job worker and the tools name tenants by ID
	// Keyword is the BM25 side of hybrid retrieval; nil uses the tenant's index when it implements it.
	Keyword KeywordSearcher
	// Ledger, when set, also receives document events (audit, and what a rebuild replays). The
	// catalogue row is written directly either way, so a listing reads its own writes; the
	// projector's write of the same event is idempotent and equal.
	Ledger Ledger
	// Cache holds the search cache; nil disables it.
	Cache Cache
	// Models and Select rewrite queries through the tenant's chat model; nil disables rewriting.
	Models RewriteModels
	Select ModelSelector
	// Jobs runs large batches in the background; nil ingests every batch inline.
	Jobs *store.JobQueue
	// JobMinDocs and JobMinBytes: a batch with more documents, or more payload bytes, becomes a job.
	// Zero values select DefaultJobMinDocs and DefaultJobMinBytes.
	JobMinDocs  int
	JobMinBytes int64
	// JobLease is how long a running job's worker holds it without renewing; the worker renews it
	// every third of that. Zero selects DefaultJobLease.
	JobLease time.Duration
	// RewriteTimeout overrides RewriteTimeout (tests).
	RewriteTimeout time.Duration
	Logger         zerolog.Logger
	Tracer         observe.Tracer // one span per search
	Now            func() time.Time
}

// Defaults of ServiceOptions.
const (
	DefaultJobMinDocs  = 20
	DefaultJobMinBytes = 2 << 20
	// DefaultJobLease: a killed worker's job reads "interrupted" within this long.
	DefaultJobLease = 10 * time.Second
	// searchCacheTTL is how long a cached answer lives (24 h) unless the tenant's documents change.
	searchCacheTTL = 24 * time.Hour
	// searchGenKey holds the tenant's search-cache generation (see invalidateSearchCache).
	searchGenKey = "search-gen"
)

// Service is the retrieval service: it owns ingest (parse, chunk, embed, catalogue), delete,
// search with its cache and rewrite, the ingest job queue, and what the gateway's extractive model
// and the kb_search / ingest_docs tools need, so every path to a tenant's documents behaves the
// same.
type Service struct {
	o       ServiceOptions
	spaces  *Spaces
	writes  sync.Map // tenant ID → *sync.RWMutex: writes share it, a re-embedding's switch holds it alone
	reindex sync.Map // tenant ID → *reindexWatch (reindex_job.go)
}

// NewService returns the service over o.
func NewService(o ServiceOptions) (*Service, error) {
	if (o.Spaces == nil && (o.Store == nil || o.Embedder == nil)) || o.Catalog == nil || o.Tenants == nil {
		return nil, errors.New("rag: a Service needs Spaces (or Store and Embedder), Catalog and Tenants")
	}
	if o.JobMinDocs <= 0 {
		o.JobMinDocs = DefaultJobMinDocs
	}
	if o.JobMinBytes <= 0 {
		o.JobMinBytes = DefaultJobMinBytes
	}
	if o.RewriteTimeout <= 0 {
		o.RewriteTimeout = RewriteTimeout
	}
	if o.JobLease <= 0 {
		o.JobLease = DefaultJobLease
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Service{o: o, spaces: o.Spaces}, nil
}

// space returns the tenant's index and the model that embeds for it. When the tenant's model
// changed, it also makes sure a re-embedding job is on its way (reindex_job.go); the active index
// serves until that job switches.
func (s *Service) space(ctx context.Context, t *config.TenantConfig, route string) (TenantSpace, error) {
	if s.spaces == nil {
		m := s.o.Embedder
		return TenantSpace{Store: s.o.Store, Embedder: m, Want: m, Configured: t.AIModels.Embeddings,
			Active: ActiveIndex{Model: m.ID(), Dimension: m.Dimension()}}, nil
	}
	ts, err := s.spaces.Resolve(ctx, t, route)
	if ts.Active.Model != "" && !ts.Current() {
		s.ensureReindex(ctx, t, ts)
	}
	return ts, err
}

// keywordOf is the BM25 side of a tenant's index.
func (s *Service) keywordOf(vs VectorStore) KeywordSearcher {
	if s.o.Keyword != nil {
		return s.o.Keyword
	}
	kw, _ := vs.(KeywordSearcher)
	return kw
}

// writeLock is the tenant's write lock: ingests and deletes share it; the switch to a re-embedded
// index takes it alone, so no write lands in the old index after the final reconcile.
func (s *Service) writeLock(tenant string) *sync.RWMutex {
	l, _ := s.writes.LoadOrStore(tenant, &sync.RWMutex{})
	return l.(*sync.RWMutex)
}

// ValidateDocID checks a document ID's syntax (config.CheckDocID, the one rule).
func ValidateDocID(id string) error { return config.CheckDocID(id) }

// Truncate keeps client input echoed in a message short.
func Truncate(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}

// Ingest is the one place a document lands: ingest (replacing its chunks) → catalogue → search
// cache invalidation.
func (s *Service) Ingest(ctx context.Context, t *config.TenantConfig, doc Document, trace string) (IngestResult, error) {
	if err := s.applyQuota(ctx, t, &doc); err != nil {
		return IngestResult{}, err
	}
	lock := s.writeLock(t.TenantID)
	lock.RLock()
	res, err := s.ingestChunks(ctx, t, doc)
	lock.RUnlock()
	if err != nil {
		return IngestResult{}, err
	}
	raw := doc.Data
	if raw == nil {
		raw = []byte(doc.Text)
	}
	sum := sha256.Sum256(raw)
	title := doc.Title
	if title == "" {
		title = res.Title
	}
	entry := store.Document{
		DocID: res.DocID, Title: title, Source: doc.Source, URL: doc.URL,
		ContentType: res.ContentType, Chunks: res.Chunks, Bytes: int64(len(raw)),
		SHA256: hex.EncodeToString(sum[:]), IngestedAt: s.o.Now().UTC(),
	}
	if err := s.o.Catalog.PutDocument(ctx, t.TenantID, entry); err != nil {
		return IngestResult{}, err
	}
	if s.o.Ledger != nil {
		ev := store.DocumentIngestedEvent(t.TenantID, entry)
		ev.TraceID = trace
		if err := s.o.Ledger.Append(ctx, ev); err != nil {
			s.o.Logger.Warn().Err(err).Str("tenantId", t.TenantID).Str("traceId", trace).Msg("ledger: document_ingested not recorded")
		}
	}
	s.invalidateSearchCache(ctx, t.TenantID)
	return res, nil
}

// IngestItem ingests one batch document and reports its outcome; a failure names the document.
func (s *Service) IngestItem(ctx context.Context, t *config.TenantConfig, d PendingDoc, trace string) wire.IngestItemResult {
	if d.Err != nil {
		return wire.IngestItemResult{DocID: d.Doc.ID, Status: wire.DocFailed, Error: d.Err}
	}
	res, err := s.Ingest(ctx, t, d.Doc, trace)
	if err != nil {
		f := Classify(err, d.Doc.ID)
		if f.Code == wire.CodeInternal || f.Code == wire.CodeUnavailable || f.Code == wire.CodeAIError {
			s.o.Logger.Warn().Err(err).Str("tenantId", t.TenantID).Str("traceId", trace).Str("docId", d.Doc.ID).Msg("ingest failed")
		}
		return wire.IngestItemResult{DocID: d.Doc.ID, Status: wire.DocFailed, Error: &wire.ErrorBody{Code: f.Code, Message: f.Message}}
	}
	return wire.IngestItemResult{DocID: res.DocID, Status: wire.DocIngested, Chunks: res.Chunks, EmbeddingModelID: res.EmbeddingModelID, ContentType: res.ContentType}
}

// IngestBatch ingests docs inline, or queues them as a job (returning its ID and no results) when
// the batch is large and a job queue is configured.
func (s *Service) IngestBatch(ctx context.Context, t *config.TenantConfig, docs []PendingDoc, trace string) (results []wire.IngestItemResult, jobID string, err error) {
	var total int64
	for _, d := range docs {
		total += d.size()
	}
	if s.o.Jobs != nil && (len(docs) > s.o.JobMinDocs || total > s.o.JobMinBytes) {
		id, err := s.submitJob(ctx, t.TenantID, trace, docs) // jobs.go
		return nil, id, err
	}
	lims, err := s.newBatchLimits(ctx, t)
	if err != nil {
		return nil, "", err
	}
	results = make([]wire.IngestItemResult, len(docs))
	for i, d := range docs {
		d = lims.apply(d)
		results[i] = s.IngestItem(ctx, t, d, trace)
		lims.landed(d, results[i])
	}
	return results, "", nil
}

// applyQuota sets doc's limits, unless the caller did (a batch, see batchLimits), to the tenant's
// quota and what its catalogue already holds without doc's previous version, which the ingest
// replaces.
func (s *Service) applyQuota(ctx context.Context, t *config.TenantConfig, doc *Document) error {
	if t.Quota == nil || (doc.Limits != nil && doc.Limits.Quota != nil) {
		return nil
	}
	docs, err := s.o.Catalog.Documents(ctx, t.TenantID)
	if err != nil {
		return fmt.Errorf("document %s: read the catalogue for the quota: %w", doc.ID, err)
	}
	lim := IngestLimits{}
	if doc.Limits != nil {
		lim = *doc.Limits
	}
	lim.Quota, lim.Used = t.Quota, UsageOf(docs, doc.ID)
	doc.Limits = &lim
	return nil
}

// batchLimits are the limits of the documents of one request or job, ingested one after another:
// one chunk allowance (DefaultMaxChunksPerRequest), and the tenant's catalogue read once and kept
// current as each document lands, instead of read again per document.
type batchLimits struct {
	allowance *ChunkAllowance
	quota     *config.Quota
	docs      []store.Document // the catalogue; nil when the tenant has no quota
}

func (s *Service) newBatchLimits(ctx context.Context, t *config.TenantConfig) (*batchLimits, error) {
	b := &batchLimits{allowance: NewChunkAllowance(0), quota: t.Quota}
	if t.Quota == nil {
		return b, nil
	}
	docs, err := s.o.Catalog.Documents(ctx, t.TenantID)
	if err != nil {
		return nil, fmt.Errorf("read the catalogue for the quota: %w", err)
	}
	b.docs = docs
	return b, nil
}

// apply sets d's limits.
func (b *batchLimits) apply(d PendingDoc) PendingDoc {
	lim := &IngestLimits{Request: b.allowance}
	if b.quota != nil {
		lim.Quota, lim.Used = b.quota, UsageOf(b.docs, d.Doc.ID)
	}
	d.Doc.Limits = lim
	return d
}

// landed records an ingested document in the catalogue copy.
func (b *batchLimits) landed(d PendingDoc, r wire.IngestItemResult) {
	if b.quota == nil || r.Status != wire.DocIngested {
		return
	}
	b.docs = slices.DeleteFunc(b.docs, func(x store.Document) bool { return x.DocID == r.DocID })
	b.docs = append(b.docs, store.Document{DocID: r.DocID, Chunks: r.Chunks, Bytes: d.size()})
}

// ingestChunks replaces the document's chunks in the tenant's active index, embedded with its model.
func (s *Service) ingestChunks(ctx context.Context, t *config.TenantConfig, doc Document) (IngestResult, error) {
	ts, err := s.space(ctx, t, "/ingest")
	if err != nil {
		return IngestResult{}, err
	}
	return NewIngester(ts.Store, ts.Embedder, IngesterOptions{}).Ingest(ctx, t.TenantID, doc)
}

// ErrDocumentNotFound is returned by Delete for a docId the tenant does not have (another
// tenant's included: this tenant's store cannot see it).
var ErrDocumentNotFound = errors.New("no such document")

// Delete removes every chunk of the document (vector store, keyword index) and its catalogue row,
// and reports how many chunks it removed.
func (s *Service) Delete(ctx context.Context, tenantID, docID, trace string) (int, error) {
	if ValidateDocID(docID) != nil {
		return 0, ErrDocumentNotFound
	}
	n, err := s.deleteChunks(ctx, tenantID, docID)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		// A catalogue row without chunks (an interrupted delete) still counts as existing.
		docs, err := s.o.Catalog.Documents(ctx, tenantID)
		if err != nil {
			return 0, err
		}
		found := false
		for _, d := range docs {
			found = found || d.DocID == docID
		}
		if !found {
			return 0, ErrDocumentNotFound
		}
	}
	if err := s.o.Catalog.DeleteDocument(ctx, tenantID, docID); err != nil {
		return 0, err
	}
	if s.o.Ledger != nil {
		ev := store.Event{Kind: store.KindDocumentDeleted, TenantID: tenantID, Subject: docID, TraceID: trace}
		if err := s.o.Ledger.Append(ctx, ev); err != nil {
			s.o.Logger.Warn().Err(err).Str("tenantId", tenantID).Str("traceId", trace).Msg("ledger: document_deleted not recorded")
		}
	}
	s.invalidateSearchCache(ctx, tenantID)
	return n, nil
}

// deleteChunks removes the document's chunks from the tenant's active index.
func (s *Service) deleteChunks(ctx context.Context, tenantID, docID string) (int, error) {
	t, ok := s.o.Tenants.ByID(tenantID)
	if !ok {
		return 0, ErrDocumentNotFound
	}
	lock := s.writeLock(tenantID)
	lock.RLock()
	defer lock.RUnlock()
	ts, err := s.space(ctx, t, "/documents")
	if err != nil {
		return 0, err
	}
	n, err := ts.Store.DeleteDoc(ctx, tenantID, docID)
	if err != nil {
		return 0, fmt.Errorf("delete document %s: %w", docID, err)
	}
	return n, nil
}

// Documents lists the tenant's catalogue, newest first.
func (s *Service) Documents(ctx context.Context, tenantID string) ([]store.Document, error) {
	return s.o.Catalog.Documents(ctx, tenantID)
}

// SearchResult is an answer and how the search cache took part: store.SearchCacheHit,
// SearchCacheMiss or SearchCacheOff.
type SearchResult struct {
	Answer
	Cache string
}

// Search answers q from the tenant's documents: rewrite (through the tenant's chat model, within
// the rewrite timeout), the search cache, hybrid retrieval, the cited answer. The same path serves
// POST /search and the kb_search tool.
func (s *Service) Search(ctx context.Context, t *config.TenantConfig, q Query) (SearchResult, error) {
	query := strings.TrimSpace(q.Text)
	rewritten := s.rewriteQuery(ctx, t, query)
	key := s.searchCacheKey(ctx, t.TenantID, rewritten, q.TopK, q.Filter)
	if key != "" {
		if b, err := s.o.Cache.Get(ctx, t.TenantID, key); err == nil {
			var a Answer
			if json.Unmarshal(b, &a) == nil {
				return SearchResult{Answer: a, Cache: store.SearchCacheHit}, nil
			}
		}
	}
	// The rewrite already happened (the cache is keyed on it), so this search's Searcher is handed
	// the result rather than asking the model again.
	res := SearchResult{Cache: store.SearchCacheOff}
	ts, err := s.space(ctx, t, "/search")
	if err != nil {
		return res, err
	}
	searcher := NewSearcher(ts.Store, ts.Embedder, SearcherOptions{
		Keyword: s.keywordOf(ts.Store), Rewriter: fixedRewrite(rewritten), Tracer: s.o.Tracer,
		MinAnswerSimilarity: MinAnswerSimilarityFor(ts.Embedder.ID()),
	})
	if key != "" {
		res.Cache = store.SearchCacheMiss
	}
	a, err := searcher.Search(ctx, t.TenantID, Query{Text: query, TopK: q.TopK, Filter: q.Filter})
	if err != nil {
		return res, err
	}
	if key != "" && !a.Refused {
		if b, err := json.Marshal(a); err == nil {
			if err := s.o.Cache.Put(ctx, t.TenantID, key, b, searchCacheTTL); err != nil {
				s.o.Logger.Debug().Err(err).Str("traceId", observe.TraceID(ctx)).Msg("search cache put")
			}
		}
	}
	res.Answer = a
	return res, nil
}

type fixedRewrite string

func (f fixedRewrite) RewriteQuery(context.Context, string, string) (string, error) {
	return string(f), nil
}

// searchCacheKey is "search.<generation>.<sha256(rewritten query, topK, filter)>", or "" without a
// cache. The generation changes whenever the tenant's documents change (invalidateSearchCache).
func (s *Service) searchCacheKey(ctx context.Context, tenant, rewritten string, topK int, filter map[string]any) string {
	if s.o.Cache == nil {
		return ""
	}
	gen := "0"
	if b, err := s.o.Cache.Get(ctx, tenant, searchGenKey); err == nil {
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
// answer is unreachable (and expires by its TTL). Why a generation rather than a purge: the cache
// bucket also holds other caches (the chat response cache), which a purge would clear; and a
// search that read the old generation before this change can only write under the old
// generation, so a stale answer computed concurrently with an ingest is never served — a purge
// followed by that late write would serve it for 24 h. The generation is random, not a counter,
// so two concurrent changes never write the same value.
func (s *Service) invalidateSearchCache(ctx context.Context, tenant string) {
	if s.o.Cache == nil {
		return
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	if err := s.o.Cache.Put(ctx, tenant, searchGenKey, []byte(hex.EncodeToString(b[:])), 0); err != nil {
		s.o.Logger.Warn().Err(err).Str("tenantId", tenant).Msg("search cache: generation not bumped")
	}
}

// rewriteQuery asks the tenant's chat model (chosen by the one model rule, allow-list included)
// for a better search query, within the rewrite timeout; on failure, timeout, empty output, or when
// the model is local or not served, the original query is used.
func (s *Service) rewriteQuery(ctx context.Context, t *config.TenantConfig, query string) string {
	if s.o.Models == nil || s.o.Select == nil {
		return query
	}
	model, _, err := s.o.Select.SelectModels(t, "")
	if err != nil || model == "" || model == gateway.ExtractiveModelID || strings.HasPrefix(model, "local/") {
		return query
	}
	if _, err := s.o.Models.Describe(model); err != nil {
		return query
	}
	ctx, cancel := context.WithTimeout(ctx, s.o.RewriteTimeout)
	defer cancel()
	type result struct {
		text string
		err  error
	}
	done := make(chan result, 1) // buffered: a late answer does not block its goroutine
	go func() {
		text, _, _, err := s.o.Models.Complete(ctx, gateway.ChatRequest{
			Model: model, MaxTokens: 64,
			Messages: []gateway.Message{
				{Role: "system", Content: "Rewrite the user's search query into a short, specific search query for a document " +
					"knowledge base. Keep its meaning and language. Reply with the rewritten query only, no quotes or explanation."},
				{Role: "user", Content: query},
			},
			Meta: gateway.RequestMeta{TenantID: t.TenantID, AccountID: t.AccountID, GatewayID: t.AIGatewayID, Tenant: t,
				TraceID: observe.TraceID(ctx), Route: "/search"},
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

// SearchKB implements the kb_search tool: it retrieves exactly as POST /search does and answers
// with [n] citations, the sources and the confidence.
func (s *Service) SearchKB(ctx context.Context, tenantID, query string, topK int) (any, error) {
	t, ok := s.o.Tenants.ByID(tenantID)
	if !ok {
		return nil, errors.New("kb_search: unknown tenant")
	}
	res, err := s.Search(ctx, t, Query{Text: query, TopK: min(max(topK, 1), MaxTopK)})
	if err != nil {
		return nil, fmt.Errorf("kb_search: %w", err)
	}
	return map[string]any{"answer": res.Answer.Answer, "sources": res.Sources, "confidence": res.Confidence}, nil
}

// IngestText implements the ingest_docs tool: it ingests text as document docID of the tenant,
// replacing an earlier version, as POST /ingest does.
func (s *Service) IngestText(ctx context.Context, tenantID, docID, text string) (int, error) {
	t, ok := s.o.Tenants.ByID(tenantID)
	if !ok {
		return 0, errors.New("ingest_docs: unknown tenant")
	}
	if err := ValidateDocID(docID); err != nil {
		return 0, err
	}
	res, err := s.Ingest(ctx, t, Document{ID: docID, Text: text, ContentType: "text/plain"}, observe.TraceID(ctx))
	if err != nil {
		return 0, fmt.Errorf("ingest_docs %s: %w", docID, err)
	}
	return res.Chunks, nil
}

// Retriever is gateway.Retriever over a tenant's documents, for local/extractive: hybrid retrieval
// (vector + BM25 fused by reciprocal rank) without rewriting. It returns only passages that share
// a term with the question (the Searcher's relevance rule), so with nothing relevant
// local/extractive says so and cites nothing. It is built before the Router (the Router serves
// local/extractive with it), the Service after.
type Retriever struct {
	search func(ctx context.Context, tenantID string, q Query) (Answer, error)
}

var _ gateway.Retriever = (*Retriever)(nil)

// NewRetriever returns a Retriever over one index; keyword may be nil (store is used when it
// implements BM25).
func NewRetriever(st VectorStore, embedder gateway.EmbeddingModel, keyword KeywordSearcher) *Retriever {
	return &Retriever{search: NewSearcher(st, embedder, SearcherOptions{Keyword: keyword}).Search}
}

// NewSpacesRetriever returns a Retriever over each tenant's active index (Spaces.Resolve), the one
// the retrieval service searches.
func NewSpacesRetriever(sp *Spaces, tenants Tenants) *Retriever {
	return &Retriever{search: func(ctx context.Context, tenantID string, q Query) (Answer, error) {
		t, ok := tenants.ByID(tenantID)
		if !ok {
			return Answer{}, fmt.Errorf("%w: %q", ErrInvalidTenant, tenantID)
		}
		ts, err := sp.Resolve(ctx, t, "/chat")
		if err != nil {
			return Answer{}, err
		}
		kw, _ := ts.Store.(KeywordSearcher)
		return NewSearcher(ts.Store, ts.Embedder, SearcherOptions{
			Keyword: kw, MinAnswerSimilarity: MinAnswerSimilarityFor(ts.Embedder.ID()),
		}).Search(ctx, tenantID, q)
	}}
}

// Retrieve returns up to k passages, best first. A tenant that has no documents gets none.
func (r *Retriever) Retrieve(ctx context.Context, tenantID, query string, k int) ([]gateway.Passage, error) {
	if strings.TrimSpace(query) == "" {
		return nil, nil
	}
	k = min(max(k, 1), MaxTopK)
	a, err := r.search(ctx, tenantID, Query{Text: query, TopK: k})
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
