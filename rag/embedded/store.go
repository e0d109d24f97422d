// Package embedded is the default rag.VectorStore when no Milvus address is
// configured: one SQLite file per tenant (chunk rows with vector BLOBs and an
// FTS5 index for BM25) plus an in-memory index of normalised vectors for
// exact cosine search. A tenant's index is loaded on first use and kept in
// memory; 100,000 chunks of dimension 384 take about 150 MiB.
package embedded

import (
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"unicode"

	"github.com/crispy-enigma/crispy/rag"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

var (
	_ rag.VectorStore     = (*Store)(nil)
	_ rag.KeywordSearcher = (*Store)(nil)
	_ rag.DocReplacer     = (*Store)(nil)
	_ rag.ChunkLister     = (*Store)(nil)
	_ rag.ChunkCounter    = (*Store)(nil)
)

var (
	// ErrClosed is returned by every call after Close.
	ErrClosed = errors.New("embedded vector store is closed")
	// ErrModelMismatch is returned when a tenant's file holds another embedding model's vectors.
	ErrModelMismatch = errors.New("embedding model mismatch")
)

// parallelThreshold is the index size above which a search scores shards on
// all cores; below it the goroutine hand-off costs more than it saves.
const parallelThreshold = 16384

// Options configure a Store.
type Options struct {
	// Dimension of every vector (the embedding model's); required.
	Dimension int
	// File is each tenant's database file name under <dataDir>/tenants/<tenant>/ (default
	// "vectors.db"); one file per embedding model keeps their vectors apart (NewIndexes).
	File string
	// Model is the embedding model whose vectors the store holds. When set it is recorded in each
	// tenant's file, and a file recorded for another model is refused, so two models' vectors never
	// meet in one index. A file from before models were recorded is adopted by the first model that
	// opens it.
	Model string
}

// DefaultFile is the tenant database of a store opened without Options.File.
const DefaultFile = "vectors.db"

// Store is an embedded, persistent, concurrency-safe vector and keyword store.
type Store struct {
	dir   string
	dim   int
	file  string
	model string
	// parallelMin is parallelThreshold; tests lower it to cover the shards.
	parallelMin int

	mu      sync.Mutex
	closed  bool
	tenants map[string]*tenantSlot
}

// tenantSlot lets one goroutine load a tenant while others wait for that
// tenant only; loading 100k chunks takes a while and must not stall the
// other tenants.
type tenantSlot struct {
	ready chan struct{} // closed when t or err is set
	t     *tenantIndex
	err   error
}

// tenantIndex is one tenant's SQLite file and in-memory vectors. Row i of
// the index is ids[i], docs[i], filt[i] and vecs[i*dim:(i+1)*dim].
type tenantIndex struct {
	db *sql.DB

	mu   sync.RWMutex
	ids  []string
	docs []string
	filt []map[string]any // metadata minus "text", for filters
	vecs []float32
	pos  map[string]int
}

// Open returns a store keeping tenants under <dataDir>/tenants/<tenant>/vectors.db.
func Open(dataDir string, opts Options) (*Store, error) {
	if opts.Dimension < 1 {
		return nil, fmt.Errorf("embedded vector store: dimension %d must be positive", opts.Dimension)
	}
	if dataDir == "" {
		return nil, errors.New("embedded vector store: data dir is required")
	}
	file := opts.File
	if file == "" {
		file = DefaultFile
	}
	if file != filepath.Base(file) || file == "." || file == ".." {
		return nil, fmt.Errorf("embedded vector store: file %q must be a plain file name", file)
	}
	return &Store{dir: dataDir, dim: opts.Dimension, file: file, model: opts.Model, parallelMin: parallelThreshold,
		tenants: make(map[string]*tenantSlot)}, nil
}

// Dimension returns the vector dimension the store accepts.
func (s *Store) Dimension() int { return s.dim }

// Close closes every loaded tenant's database and waits for loads in
// progress. The store cannot be used afterwards.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	slots := s.tenants
	s.tenants = nil
	s.mu.Unlock()
	var errs []error
	for name, slot := range slots {
		<-slot.ready
		if slot.t == nil {
			continue
		}
		slot.t.mu.Lock()
		if err := slot.t.db.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close tenant %s: %w", name, err))
		}
		slot.t.mu.Unlock()
	}
	return errors.Join(errs...)
}

const schema = `
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
	id     TEXT PRIMARY KEY,
	doc_id TEXT NOT NULL,
	idx    INTEGER NOT NULL,
	text   TEXT NOT NULL,
	vector BLOB NOT NULL,
	meta   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
	text, content='chunks', content_rowid='rowid', tokenize='unicode61 remove_diacritics 2');
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_vocab USING fts5vocab(chunks_fts, 'row');
CREATE TRIGGER IF NOT EXISTS chunks_ai AFTER INSERT ON chunks BEGIN
	INSERT INTO chunks_fts(rowid, text) VALUES (new.rowid, new.text);
END;
CREATE TRIGGER IF NOT EXISTS chunks_ad AFTER DELETE ON chunks BEGIN
	INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.rowid, old.text);
END;
CREATE TRIGGER IF NOT EXISTS chunks_au AFTER UPDATE ON chunks BEGIN
	INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.rowid, old.text);
	INSERT INTO chunks_fts(rowid, text) VALUES (new.rowid, new.text);
END;
`

// tenant returns the tenant's index, opening and loading it on first use.
// A failed load is not remembered, so the next call retries.
func (s *Store) tenant(ctx context.Context, name string) (*tenantIndex, error) {
	if err := rag.ValidateTenant(name); err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	slot, ok := s.tenants[name]
	if !ok {
		slot = &tenantSlot{ready: make(chan struct{})}
		s.tenants[name] = slot
	}
	s.mu.Unlock()
	if ok {
		select {
		case <-slot.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if slot.err != nil {
			return nil, slot.err
		}
		return slot.t, nil
	}
	// Load with a context that the first caller's cancellation cannot cut
	// short: other callers are waiting for the same load.
	t, err := s.load(context.WithoutCancel(ctx), name)
	if err != nil {
		slot.err = fmt.Errorf("open vector store of tenant %s: %w", name, err)
		s.mu.Lock()
		if s.tenants != nil && s.tenants[name] == slot {
			delete(s.tenants, name)
		}
		s.mu.Unlock()
		close(slot.ready)
		return nil, slot.err
	}
	slot.t = t
	close(slot.ready)
	return t, nil
}

func (s *Store) load(ctx context.Context, name string) (*tenantIndex, error) {
	dir := filepath.Join(s.dir, "tenants", name)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	dsn := "file:" + filepath.Join(dir, s.file) +
		"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)&_pragma=synchronous(NORMAL)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(4)
	t := &tenantIndex{db: db, pos: make(map[string]int)}
	if err := t.init(ctx, s.dim, s.model); err != nil {
		db.Close()
		return nil, err
	}
	return t, nil
}

func (t *tenantIndex) init(ctx context.Context, dim int, model string) error {
	if _, err := t.db.ExecContext(ctx, schema); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	if model != "" {
		// INSERT OR IGNORE adopts a file without a recorded model; the read below refuses another's.
		if _, err := t.db.ExecContext(ctx, `INSERT OR IGNORE INTO settings(key, value) VALUES ('model', ?)`, model); err != nil {
			return fmt.Errorf("record model: %w", err)
		}
		var stored string
		if err := t.db.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = 'model'`).Scan(&stored); err != nil {
			return fmt.Errorf("read model: %w", err)
		}
		if stored != model {
			return fmt.Errorf("%w: store holds vectors of %s, opened for %s", ErrModelMismatch, stored, model)
		}
	}
	var stored string
	err := t.db.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = 'dimension'`).Scan(&stored)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if _, err := t.db.ExecContext(ctx, `INSERT INTO settings(key, value) VALUES ('dimension', ?)`, fmt.Sprint(dim)); err != nil {
			return fmt.Errorf("record dimension: %w", err)
		}
	case err != nil:
		return fmt.Errorf("read dimension: %w", err)
	case stored != fmt.Sprint(dim):
		return fmt.Errorf("%w: store holds dimension %s, opened with %d", rag.ErrDimensionMismatch, stored, dim)
	}
	rows, err := t.db.QueryContext(ctx, `SELECT id, doc_id, vector, meta FROM chunks`)
	if err != nil {
		return fmt.Errorf("load chunks: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id, doc, meta string
			blob          []byte
		)
		if err := rows.Scan(&id, &doc, &blob, &meta); err != nil {
			return fmt.Errorf("load chunks: %w", err)
		}
		vec, err := decodeVector(blob, dim)
		if err != nil {
			return fmt.Errorf("load chunk %s: %w", id, err)
		}
		m, err := decodeMeta(meta)
		if err != nil {
			return fmt.Errorf("load chunk %s: %w", id, err)
		}
		t.put(id, doc, vec, filterable(m), dim)
	}
	return rows.Err()
}

// put inserts or replaces a row of the in-memory index (caller holds t.mu).
func (t *tenantIndex) put(id, doc string, vec []float32, filt map[string]any, dim int) {
	if i, ok := t.pos[id]; ok {
		t.docs[i] = doc
		t.filt[i] = filt
		copy(t.vecs[i*dim:(i+1)*dim], vec)
		return
	}
	t.pos[id] = len(t.ids)
	t.ids = append(t.ids, id)
	t.docs = append(t.docs, doc)
	t.filt = append(t.filt, filt)
	t.vecs = append(t.vecs, vec...)
}

// remove deletes a row by moving the last row into its place (caller holds t.mu).
func (t *tenantIndex) remove(id string, dim int) {
	i, ok := t.pos[id]
	if !ok {
		return
	}
	last := len(t.ids) - 1
	if i != last {
		t.ids[i], t.docs[i], t.filt[i] = t.ids[last], t.docs[last], t.filt[last]
		copy(t.vecs[i*dim:(i+1)*dim], t.vecs[last*dim:(last+1)*dim])
		t.pos[t.ids[i]] = i
	}
	t.ids, t.docs, t.filt = t.ids[:last], t.docs[:last], t.filt[:last]
	t.vecs = t.vecs[:last*dim]
	delete(t.pos, id)
}

// compactMinRows keeps small indexes from being copied for a few freed rows.
const compactMinRows = 1024

// compact gives memory back after deletes (caller holds t.mu). remove only shortens the slices,
// and Go maps never shrink, so deleting a 300,000-chunk document kept its gigabytes: once less
// than half of what the slices hold is in use, they are copied into right-sized ones and the
// position map is rebuilt. Copying n rows after at least n were deleted keeps it amortized O(1)
// per delete.
func (t *tenantIndex) compact(dim int) {
	n := len(t.ids)
	if c := cap(t.ids); c < compactMinRows || n > c/2 {
		return
	}
	t.ids = append([]string(nil), t.ids...)
	t.docs = append([]string(nil), t.docs...)
	t.filt = append([]map[string]any(nil), t.filt...)
	t.vecs = append(make([]float32, 0, n*dim), t.vecs...)
	pos := make(map[string]int, n)
	for i, id := range t.ids {
		pos[id] = i
	}
	t.pos = pos
}

// Upsert validates every chunk first (so a bad one stores nothing), writes
// them in one transaction, then updates the in-memory index.
func (s *Store) Upsert(ctx context.Context, tenant string, chunks []rag.Chunk) error {
	_, err := s.write(ctx, tenant, "", false, chunks)
	return err
}

// DeleteDoc removes every chunk of docID from the rows, the FTS index and
// memory.
func (s *Store) DeleteDoc(ctx context.Context, tenant, docID string) (int, error) {
	return s.write(ctx, tenant, docID, true, nil)
}

// ReplaceDoc deletes every chunk of docID and upserts chunks in one
// transaction and one index update, so a concurrent search sees either the
// old version or the new one, never neither (rag.DocReplacer).
func (s *Store) ReplaceDoc(ctx context.Context, tenant, docID string, chunks []rag.Chunk) (int, error) {
	for _, c := range chunks {
		if c.DocID != docID {
			return 0, fmt.Errorf("replace doc %s: chunk %s belongs to doc %q", docID, c.ID, c.DocID)
		}
	}
	return s.write(ctx, tenant, docID, true, chunks)
}

type row struct {
	c    rag.Chunk
	vec  []float32
	meta []byte
	filt map[string]any
}

func (s *Store) prepare(chunks []rag.Chunk) ([]row, error) {
	rows := make([]row, 0, len(chunks))
	for _, c := range chunks {
		if c.ID == "" || c.DocID == "" {
			return nil, fmt.Errorf("upsert: chunk %q of doc %q: ID and DocID are required", c.ID, c.DocID)
		}
		if len(c.Vector) != s.dim {
			return nil, fmt.Errorf("upsert: chunk %s: %w: got %d, want %d", c.ID, rag.ErrDimensionMismatch, len(c.Vector), s.dim)
		}
		meta, err := rag.EncodeMeta(c)
		if err != nil {
			return nil, fmt.Errorf("upsert: %w", err)
		}
		m, err := decodeMeta(string(meta))
		if err != nil {
			return nil, fmt.Errorf("upsert: chunk %s: %w", c.ID, err)
		}
		rows = append(rows, row{c: c, vec: rag.Normalize(c.Vector), meta: meta, filt: filterable(m)})
	}
	return rows, nil
}

// write optionally deletes a document's chunks, then upserts chunks, in one
// SQLite transaction; the in-memory index changes only after the commit,
// under the tenant's write lock, so memory never runs ahead of disk.
func (s *Store) write(ctx context.Context, tenant, docID string, deleteDoc bool, chunks []rag.Chunk) (int, error) {
	rows, err := s.prepare(chunks)
	if err != nil {
		return 0, err
	}
	t, err := s.tenant(ctx, tenant)
	if err != nil {
		return 0, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	tx, err := t.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("write tenant %s: begin: %w", tenant, err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit this is a no-op
	var deleted []string
	if deleteDoc {
		if deleted, err = deleteRows(ctx, tx, docID); err != nil {
			return 0, err
		}
	}
	if len(rows) > 0 {
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO chunks(id, doc_id, idx, text, vector, meta) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT(id) DO UPDATE SET doc_id = excluded.doc_id, idx = excluded.idx, text = excluded.text,
			vector = excluded.vector, meta = excluded.meta`)
		if err != nil {
			return 0, fmt.Errorf("upsert: prepare: %w", err)
		}
		defer stmt.Close()
		for _, r := range rows {
			if _, err := stmt.ExecContext(ctx, r.c.ID, r.c.DocID, r.c.Index, r.c.Text, encodeVector(r.vec), string(r.meta)); err != nil {
				return 0, fmt.Errorf("upsert chunk %s: %w", r.c.ID, err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("write tenant %s: commit: %w", tenant, err)
	}
	for _, id := range deleted {
		t.remove(id, s.dim)
	}
	if len(deleted) > 0 {
		t.compact(s.dim)
	}
	for _, r := range rows {
		t.put(r.c.ID, r.c.DocID, r.vec, r.filt, s.dim)
	}
	return len(deleted), nil
}

func deleteRows(ctx context.Context, tx *sql.Tx, docID string) ([]string, error) {
	rows, err := tx.QueryContext(ctx, `DELETE FROM chunks WHERE doc_id = ? RETURNING id`, docID)
	if err != nil {
		return nil, fmt.Errorf("delete doc %s: %w", docID, err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("delete doc %s: %w", docID, err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("delete doc %s: %w", docID, err)
	}
	return ids, nil
}

// ListChunks returns up to limit of the tenant's chunks with IDs after after, in ascending ID order
// (rag.ChunkLister), vectors included.
func (s *Store) ListChunks(ctx context.Context, tenant, after string, limit int) ([]rag.Chunk, error) {
	if limit < 1 {
		return nil, fmt.Errorf("list chunks: limit %d must be positive", limit)
	}
	t, err := s.tenant(ctx, tenant)
	if err != nil {
		return nil, err
	}
	rows, err := t.db.QueryContext(ctx, `SELECT id, doc_id, idx, text, vector, meta FROM chunks WHERE id > ? ORDER BY id LIMIT ?`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list chunks of tenant %s: %w", tenant, err)
	}
	defer rows.Close()
	var out []rag.Chunk
	for rows.Next() {
		c, err := scanChunk(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// Count returns how many chunks the tenant has.
func (s *Store) Count(ctx context.Context, tenant string) (int, error) {
	t, err := s.tenant(ctx, tenant)
	if err != nil {
		return 0, err
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.ids), nil
}

// Search is exact cosine search: a dot product against every normalised
// vector, keeping the best topK in a small sorted buffer. Large indexes are
// scored in parallel shards.
func (s *Store) Search(ctx context.Context, tenant string, vec []float32, topK int, filter map[string]any) ([]rag.Hit, error) {
	if err := rag.CheckTopK(topK); err != nil {
		return nil, err
	}
	if len(vec) != s.dim {
		return nil, fmt.Errorf("search: %w: got %d, want %d", rag.ErrDimensionMismatch, len(vec), s.dim)
	}
	t, err := s.tenant(ctx, tenant)
	if err != nil {
		return nil, err
	}
	q := rag.Normalize(vec)
	t.mu.RLock()
	best := t.topK(q, topK, filter, s.dim, s.parallelMin)
	ids := make([]string, len(best))
	for i, b := range best {
		ids[i] = t.ids[b.row]
	}
	t.mu.RUnlock()
	chunks, err := t.fetch(ctx, ids)
	if err != nil {
		return nil, err
	}
	hits := make([]rag.Hit, 0, len(best))
	for i, b := range best {
		if c, ok := chunks[ids[i]]; ok { // a concurrent delete may have removed it
			hits = append(hits, rag.Hit{Chunk: c, Score: float64(b.score)})
		}
	}
	return hits, nil
}

type scored struct {
	row   int
	score float32
}

// topList keeps the k best rows, sorted by descending score.
type topList struct {
	k     int
	items []scored
}

func (l *topList) offer(row int, score float32) {
	if len(l.items) == l.k && score <= l.items[len(l.items)-1].score {
		return
	}
	i := len(l.items)
	if i < l.k {
		l.items = append(l.items, scored{})
	} else {
		i--
	}
	for i > 0 && l.items[i-1].score < score {
		l.items[i] = l.items[i-1]
		i--
	}
	l.items[i] = scored{row, score}
}

func (t *tenantIndex) topK(q []float32, k int, filter map[string]any, dim, parallelMin int) []scored {
	n := len(t.ids)
	scan := func(from, to int) []scored {
		l := topList{k: k, items: make([]scored, 0, k)}
		for i := from; i < to; i++ {
			if len(filter) > 0 && !rag.MatchFilter(t.docs[i], t.filt[i], filter) {
				continue
			}
			l.offer(i, rag.Dot(q, t.vecs[i*dim:(i+1)*dim]))
		}
		return l.items
	}
	shards := runtime.GOMAXPROCS(0)
	if n < parallelMin || shards < 2 {
		return scan(0, n)
	}
	parts := make([][]scored, shards)
	var wg sync.WaitGroup
	size := (n + shards - 1) / shards
	for p := range shards {
		from, to := p*size, min(n, (p+1)*size)
		if from >= to {
			continue
		}
		wg.Go(func() { parts[p] = scan(from, to) })
	}
	wg.Wait()
	l := topList{k: k, items: make([]scored, 0, k)}
	for _, part := range parts {
		for _, s := range part {
			l.offer(s.row, s.score)
		}
	}
	return l.items
}

// fetch loads full chunks by ID.
func (t *tenantIndex) fetch(ctx context.Context, ids []string) (map[string]rag.Chunk, error) {
	out := make(map[string]rag.Chunk, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	query := `SELECT id, doc_id, idx, text, vector, meta FROM chunks WHERE id IN (?` + strings.Repeat(",?", len(ids)-1) + `)`
	rows, err := t.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("fetch chunks: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		c, err := scanChunk(rows)
		if err != nil {
			return nil, err
		}
		out[c.ID] = c
	}
	return out, rows.Err()
}

type scanner interface{ Scan(dest ...any) error }

func scanChunk(r scanner, extra ...any) (rag.Chunk, error) {
	var (
		c    rag.Chunk
		blob []byte
		meta string
	)
	dest := append([]any{&c.ID, &c.DocID, &c.Index, &c.Text, &blob, &meta}, extra...)
	if err := r.Scan(dest...); err != nil {
		return c, fmt.Errorf("scan chunk: %w", err)
	}
	var err error
	if c.Vector, err = decodeVector(blob, len(blob)/4); err != nil {
		return c, fmt.Errorf("chunk %s: %w", c.ID, err)
	}
	if c.Meta, err = decodeMeta(meta); err != nil {
		return c, fmt.Errorf("chunk %s: %w", c.ID, err)
	}
	return c, nil
}

// maxFilteredKeywordRows bounds how many BM25 matches a filtered keyword
// search examines (the filter is applied in Go, after ranking).
const maxFilteredKeywordRows = 5000

// KeywordSearch ranks the tenant's chunks by BM25 (SQLite FTS5). The query
// is reduced to its words, each quoted, joined with OR, so user input can
// never be read as FTS5 syntax (NEAR, column filters, unbalanced quotes).
// Score is the negated bm25() value, so higher is better.
func (s *Store) KeywordSearch(ctx context.Context, tenant, query string, topK int, filter map[string]any) ([]rag.Hit, error) {
	if err := rag.CheckTopK(topK); err != nil {
		return nil, err
	}
	terms := ftsTerms(query)
	if len(terms) == 0 {
		if err := rag.ValidateTenant(tenant); err != nil {
			return nil, err
		}
		return nil, nil
	}
	t, err := s.tenant(ctx, tenant)
	if err != nil {
		return nil, err
	}
	terms, err = t.selective(ctx, terms)
	if err != nil {
		return nil, err
	}
	if len(terms) == 0 {
		return nil, nil
	}
	match := ftsMatch(terms)
	limit := topK
	if len(filter) > 0 {
		limit = maxFilteredKeywordRows
	}
	// Rank in the FTS index alone, then read the rows of the top hits only: joined before the
	// LIMIT, SQLite fetched every matching chunk's row (text, vector) just to sort them.
	rows, err := t.db.QueryContext(ctx, `SELECT c.id, c.doc_id, c.idx, c.text, c.vector, c.meta, r.rank
		FROM (SELECT rowid, bm25(chunks_fts) AS rank FROM chunks_fts WHERE chunks_fts MATCH ?
		      ORDER BY rank LIMIT ?) r
		JOIN chunks c ON c.rowid = r.rowid ORDER BY r.rank`, match, limit)
	if err != nil {
		return nil, fmt.Errorf("keyword search: %w", err)
	}
	defer rows.Close()
	var hits []rag.Hit
	for rows.Next() && len(hits) < topK {
		var rank float64
		c, err := scanChunk(rows, &rank)
		if err != nil {
			return nil, err
		}
		if len(filter) > 0 && !rag.MatchFilter(c.DocID, c.Meta, filter) {
			continue
		}
		hits = append(hits, rag.Hit{Chunk: c, Score: -rank})
	}
	return hits, rows.Err()
}

// maxFTSTerms bounds the OR query a long question turns into.
const maxFTSTerms = 32

// FTSQuery turns free text into a safe FTS5 MATCH expression: its words
// (letters and digits), each double-quoted, joined with OR; "" when the
// text has no words.
func FTSQuery(text string) string { return ftsMatch(ftsTerms(text)) }

// ftsTerms returns the distinct words (letters and digits, lower case) of
// text, at most maxFTSTerms.
func ftsTerms(text string) []string {
	words := strings.FieldsFunc(strings.ToLower(text), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	})
	seen := make(map[string]bool, len(words))
	var terms []string
	for _, w := range words {
		if seen[w] || len(terms) == maxFTSTerms {
			continue
		}
		seen[w] = true
		terms = append(terms, w)
	}
	return terms
}

// ftsMatch quotes each term and joins them with OR. Terms hold no quotes
// (ftsTerms keeps letters and digits), so no escaping is needed.
func ftsMatch(terms []string) string {
	quoted := make([]string, len(terms))
	for i, t := range terms {
		quoted[i] = `"` + t + `"`
	}
	return strings.Join(quoted, " OR ")
}

// minCorpusForPruning is the chunk count below which every term is kept:
// small corpora rank fast whatever the query.
const minCorpusForPruning = 256

// selective drops the terms that cannot change the ranking: those in no
// chunk, and those in at least half of them. FTS5's BM25 gives the latter an
// IDF of ~0 (it clamps log((N-n+0.5)/(n+0.5)) ≤ 0 to 1e-6), so they only add
// matches scored ~0 — yet every match is scored, so a question with "the" in
// it ranked the whole corpus: search cost grew with every document ingested
// (the soak's throughput halved in two minutes). When every term is that
// common, the rarest alone is kept, so the search still answers.
//
// Document frequencies come from the fts5vocab table, one indexed lookup per
// term; N is the in-memory chunk count.
func (t *tenantIndex) selective(ctx context.Context, terms []string) ([]string, error) {
	t.mu.RLock()
	n := len(t.ids)
	t.mu.RUnlock()
	if n < minCorpusForPruning {
		return terms, nil
	}
	args := make([]any, len(terms))
	for i, term := range terms {
		args[i] = term
	}
	rows, err := t.db.QueryContext(ctx, `SELECT term, doc FROM chunks_vocab WHERE term IN (?`+
		strings.Repeat(",?", len(terms)-1)+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("keyword search: term frequencies: %w", err)
	}
	defer rows.Close()
	df := make(map[string]int, len(terms))
	for rows.Next() {
		var term string
		var docs int
		if err := rows.Scan(&term, &docs); err != nil {
			return nil, fmt.Errorf("keyword search: term frequencies: %w", err)
		}
		df[term] = docs
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("keyword search: term frequencies: %w", err)
	}
	var kept []string
	rarest := ""
	for _, term := range terms {
		d := df[term]
		if d == 0 {
			continue
		}
		if 2*d < n {
			kept = append(kept, term)
		}
		if rarest == "" || d < df[rarest] {
			rarest = term
		}
	}
	if len(kept) == 0 && rarest != "" {
		kept = []string{rarest}
	}
	return kept, nil
}

func encodeVector(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func decodeVector(b []byte, dim int) ([]float32, error) {
	if len(b) != 4*dim {
		return nil, fmt.Errorf("%w: blob of %d bytes, want %d", rag.ErrDimensionMismatch, len(b), 4*dim)
	}
	v := make([]float32, dim)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v, nil
}

func decodeMeta(s string) (map[string]any, error) {
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, fmt.Errorf("decode metadata: %w", err)
	}
	return m, nil
}

// filterable drops the chunk text copy from metadata kept in memory: filters
// never match on it and it is most of the bytes.
func filterable(m map[string]any) map[string]any {
	delete(m, "text")
	if len(m) == 0 {
		return nil
	}
	return m
}
