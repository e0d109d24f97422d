// Package milvus is the rag.VectorStore on a Milvus server (docs/architecture.md:
// "Milvus collection per embedding model, one partition per tenant").
//
// Layout: one collection per embedding model and dimension (CollectionName),
// one partition per tenant named from its vectorizeNamespace
// (PartitionName). Fields: id (VarChar primary key "<tenant>/<chunkId>"),
// tenant, doc_id, chunk_index, text, meta (JSON, ≤ rag.MaxMetadataBytes) and
// vector (FloatVector). The primary key carries the tenant because chunk IDs
// "<docId>:<i>" repeat across tenants and Milvus keys are collection-wide: an
// upsert of tenant B's "d1:0" must never replace tenant A's.
//
// Isolation: every insert, query, search and delete names the tenant's
// partition AND carries `tenant == "<id>"` in its expression (or its rows),
// so a wrong partition — a misconfigured namespace shared by two tenants —
// still never returns or deletes another tenant's chunks.
//
// Index: FLAT (exact) with the inner-product metric over normalised vectors,
// so scores are cosine similarities and results match the embedded store's
// exactly; per-tenant partitions keep the scanned set at one tenant's size.
// Consistency: Strong by default, so a search sees every write acknowledged
// before it, from this node or another (an ingest on one node, a search on
// the next); Session is cheaper but only guarantees this client's writes.
package milvus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/milvus-io/milvus-sdk-go/v2/client"
	"github.com/milvus-io/milvus-sdk-go/v2/entity"

	"github.com/crispy-enigma/crispy/rag"
)

var _ rag.VectorStore = (*Store)(nil)

// Field names of the collection schema.
const (
	fieldID     = "id"
	fieldTenant = "tenant"
	fieldDocID  = "doc_id"
	fieldIndex  = "chunk_index"
	fieldText   = "text"
	fieldMeta   = "meta"
	fieldVector = "vector"
)

// Field sizes (bytes; Milvus VarChar lengths count bytes).
const (
	maxTenantLen = 63
	maxChunkID   = 1024
	maxIDLen     = maxTenantLen + 1 + maxChunkID
	maxTextLen   = 65535 // Milvus's VarChar maximum
)

// ErrClosed is returned by every call after Close.
var ErrClosed = errors.New("milvus vector store is closed")

// Options configure a Store.
type Options struct {
	// Address is the Milvus gRPC address, "host:port" (MILVUS_ADDR).
	Address string
	// Model is the embedding model ID; with Dimension it names the collection.
	Model string
	// Dimension of every vector (the model's); required.
	Dimension int
	// Namespace returns a tenant's vectorizeNamespace, which names its
	// partition. Nil uses the tenant ID itself (a valid namespace).
	Namespace func(tenant string) (string, error)
	// Consistency of searches and queries; zero means entity.ClStrong.
	Consistency entity.ConsistencyLevel
}

// Store is a Milvus-backed rag.VectorStore, safe for concurrent use.
type Store struct {
	c          client.Client
	collection string
	dim        int
	namespace  func(string) (string, error)
	level      entity.ConsistencyLevel

	mu         sync.Mutex
	closed     bool
	partitions map[string]bool // partitions known to exist
}

// Open connects to Milvus and makes sure the model's collection exists with
// its FLAT index and is loaded. ctx bounds the connection and the setup.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Dimension < 1 {
		return nil, fmt.Errorf("milvus: dimension must be positive, got %d", opts.Dimension)
	}
	if opts.Model == "" {
		return nil, errors.New("milvus: model ID is required (it names the collection)")
	}
	if opts.Address == "" {
		return nil, errors.New("milvus: address is required")
	}
	c, err := client.NewClient(ctx, client.Config{Address: opts.Address})
	if err != nil {
		return nil, fmt.Errorf("milvus: connect to %s: %w", opts.Address, err)
	}
	s := &Store{
		c:          c,
		collection: CollectionName(opts.Model, opts.Dimension),
		dim:        opts.Dimension,
		namespace:  opts.Namespace,
		level:      opts.Consistency,
		partitions: map[string]bool{},
	}
	if s.namespace == nil {
		s.namespace = func(tenant string) (string, error) { return tenant, nil }
	}
	if s.level == 0 {
		s.level = entity.ClStrong
	}
	if err := s.ensureCollection(ctx, opts.Model); err != nil {
		c.Close()
		return nil, err
	}
	return s, nil
}

// Collection is the name of the collection this store uses.
func (s *Store) Collection() string { return s.collection }

func (s *Store) ensureCollection(ctx context.Context, model string) error {
	has, err := s.c.HasCollection(ctx, s.collection)
	if err != nil {
		return fmt.Errorf("milvus: has collection %s: %w", s.collection, err)
	}
	if has {
		coll, err := s.c.DescribeCollection(ctx, s.collection)
		if err != nil {
			return fmt.Errorf("milvus: describe collection %s: %w", s.collection, err)
		}
		if err := s.checkSchema(coll.Schema, model); err != nil {
			return err
		}
	} else if err := s.createCollection(ctx, model); err != nil {
		return err
	}
	// Loading is idempotent; it waits until the collection is searchable.
	if err := s.c.LoadCollection(ctx, s.collection, false); err != nil {
		return fmt.Errorf("milvus: load collection %s: %w", s.collection, err)
	}
	return nil
}

func (s *Store) checkSchema(sch *entity.Schema, model string) error {
	if sch.Description != model {
		return fmt.Errorf("milvus: collection %s belongs to model %q, not %q", s.collection, sch.Description, model)
	}
	for _, f := range sch.Fields {
		if f.Name == fieldVector && f.TypeParams[entity.TypeParamDim] != fmt.Sprint(s.dim) {
			return fmt.Errorf("milvus: collection %s has dimension %s, want %d", s.collection, f.TypeParams[entity.TypeParamDim], s.dim)
		}
	}
	return nil
}

func (s *Store) createCollection(ctx context.Context, model string) error {
	sch := entity.NewSchema().WithName(s.collection).WithDescription(model).
		WithField(entity.NewField().WithName(fieldID).WithDataType(entity.FieldTypeVarChar).WithIsPrimaryKey(true).WithMaxLength(maxIDLen)).
		WithField(entity.NewField().WithName(fieldTenant).WithDataType(entity.FieldTypeVarChar).WithMaxLength(maxTenantLen)).
		WithField(entity.NewField().WithName(fieldDocID).WithDataType(entity.FieldTypeVarChar).WithMaxLength(maxChunkID)).
		WithField(entity.NewField().WithName(fieldIndex).WithDataType(entity.FieldTypeInt64)).
		WithField(entity.NewField().WithName(fieldText).WithDataType(entity.FieldTypeVarChar).WithMaxLength(maxTextLen)).
		WithField(entity.NewField().WithName(fieldMeta).WithDataType(entity.FieldTypeJSON)).
		WithField(entity.NewField().WithName(fieldVector).WithDataType(entity.FieldTypeFloatVector).WithDim(int64(s.dim)))
	// One shard: a standalone node gains nothing from more, and each shard
	// is another channel to watch.
	err := s.c.CreateCollection(ctx, sch, 1, client.WithConsistencyLevel(entity.ClStrong))
	if err != nil {
		// Another node may have created it between our check and now.
		if has, herr := s.c.HasCollection(ctx, s.collection); herr != nil || !has {
			return fmt.Errorf("milvus: create collection %s: %w", s.collection, err)
		}
	}
	idx, err := entity.NewIndexFlat(entity.IP)
	if err != nil {
		return fmt.Errorf("milvus: flat index: %w", err)
	}
	if err := s.c.CreateIndex(ctx, s.collection, fieldVector, idx, false); err != nil {
		// An index that already exists (a concurrent creator) is fine.
		if idxs, derr := s.c.DescribeIndex(ctx, s.collection, fieldVector); derr != nil || len(idxs) == 0 {
			return fmt.Errorf("milvus: create index on %s: %w", s.collection, err)
		}
	}
	return nil
}

// partition resolves the tenant's partition; create makes it if missing.
// It reports "" with a nil error when the partition does not exist and
// create is false: that tenant has stored nothing.
func (s *Store) partition(ctx context.Context, tenant string, create bool) (string, error) {
	if err := rag.ValidateTenant(tenant); err != nil {
		return "", err
	}
	ns, err := s.namespace(tenant)
	if err != nil {
		return "", fmt.Errorf("milvus: namespace of tenant %s: %w", tenant, err)
	}
	name, err := PartitionName(ns)
	if err != nil {
		return "", fmt.Errorf("milvus: tenant %s: %w", tenant, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return "", ErrClosed
	}
	if s.partitions[name] {
		return name, nil
	}
	has, err := s.c.HasPartition(ctx, s.collection, name)
	if err != nil {
		return "", fmt.Errorf("milvus: has partition %s: %w", name, err)
	}
	if !has {
		if !create {
			return "", nil
		}
		// A partition created in a loaded collection is loaded with it.
		if err := s.c.CreatePartition(ctx, s.collection, name); err != nil {
			if has, herr := s.c.HasPartition(ctx, s.collection, name); herr != nil || !has {
				return "", fmt.Errorf("milvus: create partition %s: %w", name, err)
			}
		}
	}
	s.partitions[name] = true
	return name, nil
}

// Upsert validates the whole batch first (so a rejected batch stores
// nothing), then upserts it into the tenant's partition in one call.
func (s *Store) Upsert(ctx context.Context, tenant string, chunks []rag.Chunk) error {
	if err := rag.ValidateTenant(tenant); err != nil {
		return err
	}
	if len(chunks) == 0 {
		return nil
	}
	// Within one batch a later chunk with the same ID wins, as sequential
	// upserts would; Milvus would otherwise keep both rows.
	last := make(map[string]int, len(chunks))
	for i, c := range chunks {
		last[c.ID] = i
	}
	n := len(last)
	ids, tenants, docs, texts := make([]string, 0, n), make([]string, 0, n), make([]string, 0, n), make([]string, 0, n)
	idxs, metas, vecs := make([]int64, 0, n), make([][]byte, 0, n), make([][]float32, 0, n)
	for i, c := range chunks {
		if last[c.ID] != i {
			continue
		}
		if err := s.checkChunk(c); err != nil {
			return err
		}
		meta := []byte("{}")
		if c.Meta != nil {
			var err error
			if meta, err = rag.EncodeMeta(c); err != nil {
				return err
			}
		}
		ids = append(ids, tenant+"/"+c.ID)
		tenants = append(tenants, tenant)
		docs = append(docs, c.DocID)
		idxs = append(idxs, int64(c.Index))
		texts = append(texts, c.Text)
		metas = append(metas, meta)
		vecs = append(vecs, rag.Normalize(c.Vector))
	}
	part, err := s.partition(ctx, tenant, true)
	if err != nil {
		return err
	}
	_, err = s.c.Upsert(ctx, s.collection, part,
		entity.NewColumnVarChar(fieldID, ids),
		entity.NewColumnVarChar(fieldTenant, tenants),
		entity.NewColumnVarChar(fieldDocID, docs),
		entity.NewColumnInt64(fieldIndex, idxs),
		entity.NewColumnVarChar(fieldText, texts),
		entity.NewColumnJSONBytes(fieldMeta, metas),
		entity.NewColumnFloatVector(fieldVector, s.dim, vecs),
	)
	if err != nil {
		return fmt.Errorf("milvus: upsert %d chunks for tenant %s: %w", len(ids), tenant, err)
	}
	return nil
}

func (s *Store) checkChunk(c rag.Chunk) error {
	switch {
	case len(c.Vector) != s.dim:
		return fmt.Errorf("chunk %s: %w: got %d, want %d", c.ID, rag.ErrDimensionMismatch, len(c.Vector), s.dim)
	case c.ID == "" || len(c.ID) > maxChunkID:
		return fmt.Errorf("milvus: chunk ID %q: must be 1-%d bytes", c.ID, maxChunkID)
	case len(c.DocID) > maxChunkID:
		return fmt.Errorf("milvus: chunk %s: doc ID longer than %d bytes", c.ID, maxChunkID)
	case len(c.Text) > maxTextLen:
		return fmt.Errorf("milvus: chunk %s: text of %d bytes exceeds %d", c.ID, len(c.Text), maxTextLen)
	case !utf8.ValidString(c.ID) || !utf8.ValidString(c.DocID) || !utf8.ValidString(c.Text):
		return fmt.Errorf("milvus: chunk %s: ID, doc ID and text must be UTF-8", c.ID)
	}
	return nil
}

// DeleteDoc counts the document's chunks in the tenant, then deletes them
// by expression. Milvus's delete reports no count, so a concurrent upsert
// of the same document between the two calls can make the count stale
// (the ingest path replaces a document from one place at a time).
func (s *Store) DeleteDoc(ctx context.Context, tenant, docID string) (int, error) {
	part, err := s.partition(ctx, tenant, false)
	if err != nil || part == "" {
		return 0, err
	}
	expr := tenantExpr(tenant) + " && " + fieldDocID + " == " + quote(docID)
	rs, err := s.c.Query(ctx, s.collection, []string{part}, expr, []string{fieldID},
		client.WithSearchQueryConsistencyLevel(s.level))
	if err != nil {
		return 0, fmt.Errorf("milvus: find chunks of %s for tenant %s: %w", docID, tenant, err)
	}
	n := 0
	if col := rs.GetColumn(fieldID); col != nil {
		n = col.Len()
	}
	if n == 0 {
		return 0, nil
	}
	if err := s.c.Delete(ctx, s.collection, part, expr); err != nil {
		return 0, fmt.Errorf("milvus: delete %s for tenant %s: %w", docID, tenant, err)
	}
	return n, nil
}

// Search finds the tenant's nearest chunks by cosine similarity.
func (s *Store) Search(ctx context.Context, tenant string, vec []float32, topK int, filter map[string]any) ([]rag.Hit, error) {
	if err := rag.CheckTopK(topK); err != nil {
		return nil, err
	}
	if len(vec) != s.dim {
		return nil, fmt.Errorf("query: %w: got %d, want %d", rag.ErrDimensionMismatch, len(vec), s.dim)
	}
	if err := rag.ValidateTenant(tenant); err != nil {
		return nil, err
	}
	expr, err := filterExpr(tenant, filter)
	if err != nil {
		return nil, err
	}
	part, err := s.partition(ctx, tenant, false)
	if err != nil || part == "" {
		return nil, err
	}
	sp, err := entity.NewIndexFlatSearchParam()
	if err != nil {
		return nil, fmt.Errorf("milvus: search params: %w", err)
	}
	res, err := s.c.Search(ctx, s.collection, []string{part}, expr,
		[]string{fieldDocID, fieldIndex, fieldText, fieldMeta},
		[]entity.Vector{entity.FloatVector(rag.Normalize(vec))}, fieldVector, entity.IP, topK, sp,
		client.WithSearchQueryConsistencyLevel(s.level))
	if err != nil {
		return nil, fmt.Errorf("milvus: search for tenant %s: %w", tenant, err)
	}
	if len(res) == 0 {
		return nil, nil
	}
	return hits(tenant, res[0])
}

// hits turns one query vector's result into rag hits, checking every row's
// ID carries the tenant's prefix (the tenant guard, verified once more).
func hits(tenant string, r client.SearchResult) ([]rag.Hit, error) {
	if r.ResultCount == 0 {
		// Server 2.3 sends no typed field data with an empty result, which
		// SDK 2.4.2 reports in r.Err as "FieldData type not matched"; a
		// server-side failure would have come back from Search itself.
		return nil, nil
	}
	if r.Err != nil {
		return nil, fmt.Errorf("milvus: search result: %w", r.Err)
	}
	idCol, ok := r.IDs.(*entity.ColumnVarChar)
	docCol, ok2 := r.Fields.GetColumn(fieldDocID).(*entity.ColumnVarChar)
	idxCol, ok3 := r.Fields.GetColumn(fieldIndex).(*entity.ColumnInt64)
	textCol, ok4 := r.Fields.GetColumn(fieldText).(*entity.ColumnVarChar)
	metaCol, ok5 := r.Fields.GetColumn(fieldMeta).(*entity.ColumnJSONBytes)
	if !ok || !ok2 || !ok3 || !ok4 || !ok5 {
		return nil, errors.New("milvus: search result is missing output fields")
	}
	prefix := tenant + "/"
	out := make([]rag.Hit, 0, r.ResultCount)
	for i := range r.ResultCount {
		id := idCol.Data()[i]
		if !strings.HasPrefix(id, prefix) {
			return nil, fmt.Errorf("milvus: search for tenant %s returned foreign row %q", tenant, id)
		}
		var meta map[string]any
		if err := json.Unmarshal(metaCol.Data()[i], &meta); err != nil {
			return nil, fmt.Errorf("milvus: chunk %s: decode metadata: %w", id, err)
		}
		out = append(out, rag.Hit{
			Chunk: rag.Chunk{
				ID:    strings.TrimPrefix(id, prefix),
				DocID: docCol.Data()[i],
				Index: int(idxCol.Data()[i]),
				Text:  textCol.Data()[i],
				Meta:  meta,
			},
			Score: float64(r.Scores[i]),
		})
	}
	return out, nil
}

// Close closes the connection; the data stays on the server.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if err := s.c.Close(); err != nil {
		return fmt.Errorf("milvus: close: %w", err)
	}
	return nil
}

var _ rag.ChunkLister = (*Store)(nil)

// ListChunks returns up to limit of the tenant's chunks with IDs after after, in ascending ID order
// (rag.ChunkLister), without vectors. It relies on Milvus answering a query with a limit by
// ascending primary key (what the SDK's query iterator relies on too); the tenant prefix of the key
// keeps that the chunk ID order.
func (s *Store) ListChunks(ctx context.Context, tenant, after string, limit int) ([]rag.Chunk, error) {
	if limit < 1 || limit > 16384 {
		return nil, fmt.Errorf("milvus: list chunks: limit %d outside 1-16384", limit)
	}
	if err := rag.ValidateTenant(tenant); err != nil {
		return nil, err
	}
	part, err := s.partition(ctx, tenant, false)
	if err != nil || part == "" {
		return nil, err
	}
	expr := tenantExpr(tenant) + " && " + fieldID + " > " + quote(tenant+"/"+after)
	rs, err := s.c.Query(ctx, s.collection, []string{part}, expr,
		[]string{fieldID, fieldDocID, fieldIndex, fieldText, fieldMeta},
		client.WithLimit(int64(limit)), client.WithSearchQueryConsistencyLevel(s.level))
	if err != nil {
		return nil, fmt.Errorf("milvus: list chunks of tenant %s: %w", tenant, err)
	}
	idCol, ok := rs.GetColumn(fieldID).(*entity.ColumnVarChar)
	if !ok || idCol.Len() == 0 {
		return nil, nil
	}
	docCol, ok2 := rs.GetColumn(fieldDocID).(*entity.ColumnVarChar)
	idxCol, ok3 := rs.GetColumn(fieldIndex).(*entity.ColumnInt64)
	textCol, ok4 := rs.GetColumn(fieldText).(*entity.ColumnVarChar)
	metaCol, ok5 := rs.GetColumn(fieldMeta).(*entity.ColumnJSONBytes)
	if !ok2 || !ok3 || !ok4 || !ok5 {
		return nil, errors.New("milvus: list chunks: result is missing output fields")
	}
	prefix := tenant + "/"
	out := make([]rag.Chunk, 0, idCol.Len())
	for i, id := range idCol.Data() {
		if !strings.HasPrefix(id, prefix) {
			return nil, fmt.Errorf("milvus: list chunks of tenant %s returned foreign row %q", tenant, id)
		}
		var meta map[string]any
		if err := json.Unmarshal(metaCol.Data()[i], &meta); err != nil {
			return nil, fmt.Errorf("milvus: chunk %s: decode metadata: %w", id, err)
		}
		out = append(out, rag.Chunk{ID: strings.TrimPrefix(id, prefix), DocID: docCol.Data()[i],
			Index: int(idxCol.Data()[i]), Text: textCol.Data()[i], Meta: meta})
	}
	slices.SortFunc(out, func(a, b rag.Chunk) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}
