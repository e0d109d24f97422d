package api

import (
	"context"
	"errors"
	"fmt"

	"github.com/crispy-enigma/crispy/observe"
	"github.com/crispy-enigma/crispy/rag"
	"github.com/crispy-enigma/crispy/tools"
)

// KnowledgeBase lets tools reach a tenant's documents through the same paths as the HTTP routes:
// kb_search retrieves as POST /search does (hybrid, cited), and ingest_docs lands a document as
// POST /ingest does, catalogue entry and search-cache invalidation included. Tools run with the
// tenant already resolved and authorised by the tool gate.
type KnowledgeBase struct{ s *Server }

var (
	_ tools.Searcher = (*KnowledgeBase)(nil)
	_ tools.Ingester = (*KnowledgeBase)(nil)
)

// KnowledgeBase returns the tools' view of the documents, or nil when RAG is not configured.
func (s *Server) KnowledgeBase() *KnowledgeBase {
	if s.rag == nil {
		return nil
	}
	return &KnowledgeBase{s: s}
}

// SearchKB answers a query from the tenant's documents: the answer with [n] citations, its
// sources and the confidence.
func (kb *KnowledgeBase) SearchKB(ctx context.Context, tenantID, query string, topK int) (any, error) {
	r := kb.s.rag
	searcher := rag.NewSearcher(r.Store, r.Embedder, rag.SearcherOptions{Keyword: r.keyword, Tracer: kb.s.ragTracer})
	a, err := searcher.Search(ctx, tenantID, rag.Query{Text: query, TopK: min(max(topK, 1), rag.MaxTopK)})
	if err != nil {
		return nil, fmt.Errorf("kb_search: %w", err)
	}
	return map[string]any{"answer": a.Answer, "sources": a.Sources, "confidence": a.Confidence}, nil
}

// IngestText ingests text as document docID of the tenant, replacing an earlier version.
func (kb *KnowledgeBase) IngestText(ctx context.Context, tenantID, docID, text string) (int, error) {
	t, ok := kb.s.tenants.Load().ByID(tenantID)
	if !ok {
		return 0, errors.New("ingest_docs: unknown tenant")
	}
	if err := validateDocID(docID); err != nil {
		return 0, err
	}
	res, err := kb.s.ingestOne(ctx, t, rag.Document{ID: docID, Text: text, ContentType: "text/plain"}, observe.TraceID(ctx))
	if err != nil {
		return 0, fmt.Errorf("ingest_docs %s: %w", docID, err)
	}
	return res.Chunks, nil
}
