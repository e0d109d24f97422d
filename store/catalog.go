package store

import (
	"context"
	"database/sql"
	"fmt"
)

// The document catalogue (the documents table of each tenant's meta.db) is written in two places
// that must agree: the retrieval service writes a row as soon as a document lands (so GET
// /documents reads its own writes), and the projector writes the same row from the
// document_ingested event (so any node can rebuild it). Both go through putDocument and
// dropDocument, the only statements that touch the table.

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func putDocument(ctx context.Context, db execer, d Document) error {
	_, err := db.ExecContext(ctx, `INSERT OR REPLACE INTO documents (doc_id, title, source, url, content_type, chunks,
		bytes, sha256, ingested_at) VALUES (?,?,?,?,?,?,?,?,?)`,
		d.DocID, d.Title, d.Source, d.URL, d.ContentType, d.Chunks, d.Bytes, d.SHA256, d.IngestedAt.UnixMilli())
	return err
}

func dropDocument(ctx context.Context, db execer, docID string) error {
	_, err := db.ExecContext(ctx, `DELETE FROM documents WHERE doc_id = ?`, docID)
	return err
}

// documentOf is the catalogue row a document_ingested event describes.
func documentOf(ev Event) Document {
	return Document{
		DocID: ev.Subject, Title: detailString(ev.Detail, "title"), Source: detailString(ev.Detail, "source"),
		URL: detailString(ev.Detail, "url"), ContentType: detailString(ev.Detail, "contentType"),
		Chunks: int(detailInt(ev.Detail, "chunks")), Bytes: detailInt(ev.Detail, "bytes"),
		SHA256: detailString(ev.Detail, "sha256"), IngestedAt: ev.Time,
	}
}

// PutDocument writes the tenant's catalogue row for d (replacing an earlier version), as the
// projector does for d's document_ingested event.
func (t *TenantDBs) PutDocument(ctx context.Context, tenantID string, d Document) error {
	db, err := t.DB(ctx, tenantID)
	if err != nil {
		return fmt.Errorf("store: catalogue: %w", err)
	}
	if err := putDocument(ctx, db, d); err != nil {
		return fmt.Errorf("store: catalogue %s: %w", d.DocID, err)
	}
	return nil
}

// DeleteDocument removes the tenant's catalogue row of docID, as the projector does for a
// document_deleted event.
func (t *TenantDBs) DeleteDocument(ctx context.Context, tenantID, docID string) error {
	db, err := t.DB(ctx, tenantID)
	if err != nil {
		return fmt.Errorf("store: catalogue: %w", err)
	}
	if err := dropDocument(ctx, db, docID); err != nil {
		return fmt.Errorf("store: catalogue delete %s: %w", docID, err)
	}
	return nil
}
