package rag_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/rag"
	"github.com/crispy-enigma/crispy/store"
)

// TestIngestChunkAmplificationIsRefused replays the attack: a 450 KB body with maxChunkSize 1
// made 300,000 chunks (2 GB → 4.1 GB RSS, +1.2 GB on disk). It is now a clear 400-class error
// before anything is embedded or stored, at any chunk size.
func TestIngestChunkAmplificationIsRefused(t *testing.T) {
	body := strings.Repeat("a b c d e f g h i ", 25_000) // 450 KB
	tests := []struct {
		name     string
		chunking rag.ChunkOptions
		want     error
		wantMsg  string
	}{
		{"maxChunkSize 1", rag.ChunkOptions{MaxChunkSize: 1}, rag.ErrInvalidChunking, "maxChunkSize 1 must be at least 10"},
		{"smallest chunk size over a large body", rag.ChunkOptions{MaxChunkSize: rag.MinChunkSize}, rag.ErrTooManyChunks, "more than 5000 chunks at maxChunkSize 10"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			_, err := e.ingester.Ingest(context.Background(), "acme", rag.Document{ID: "big", Text: body, Chunking: &tt.chunking})
			if !errors.Is(err, tt.want) || !errors.Is(err, rag.ErrInvalidChunking) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("err = %v, want %v containing %q", err, tt.want, tt.wantMsg)
			}
			if n, _ := e.store.Count(context.Background(), "acme"); n != 0 {
				t.Fatalf("%d chunks stored", n)
			}
		})
	}
}

// TestIngestRequestChunkAllowance: the documents of one request share one allowance of chunks,
// and a document that fails gives its share back.
func TestIngestRequestChunkAllowance(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	allowance := rag.NewChunkAllowance(5)
	opts := &rag.ChunkOptions{MaxChunkSize: 10, Overlap: 0}
	doc := func(id, text string) rag.Document {
		return rag.Document{ID: id, Text: text, Chunking: opts, Limits: &rag.IngestLimits{Request: allowance}}
	}
	if _, err := e.ingester.Ingest(ctx, "acme", doc("a", "alpha beta gamma delta")); err != nil { // 3 chunks
		t.Fatal(err)
	}
	if _, err := e.ingester.Ingest(ctx, "acme", doc("b", "one two three four five six")); !errors.Is(err, rag.ErrTooManyChunks) { // 3 > 2 left
		t.Fatalf("err = %v, want ErrTooManyChunks", err)
	}
	if _, err := e.ingester.Ingest(ctx, "acme", doc("c", "eins zwei")); err != nil { // 1 chunk
		t.Fatal(err)
	}
}

func TestIngestTenantQuota(t *testing.T) {
	catalog := []store.Document{{DocID: "a", Chunks: 8, Bytes: 800}, {DocID: "b", Chunks: 1, Bytes: 100}}
	tests := []struct {
		name    string
		quota   config.Quota
		docID   string
		wantErr string
	}{
		{"within", config.Quota{Documents: 3, Chunks: 20, StoredBytes: 2000}, "c", ""},
		{"documents", config.Quota{Documents: 2, Chunks: 20, StoredBytes: 2000}, "c", "documents quota is 2; this document would bring it to 3"},
		{"re-ingest does not count the old version", config.Quota{Documents: 2, Chunks: 20, StoredBytes: 2000}, "a", ""},
		{"chunks", config.Quota{Documents: 3, Chunks: 10, StoredBytes: 2000}, "c", "chunks quota is 10"},
		{"stored bytes", config.Quota{Documents: 3, Chunks: 20, StoredBytes: 940}, "c", "storedBytes quota is 940"},
	}
	text := "one two three four five six seven eight nine" // 4 chunks at 14
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			lim := &rag.IngestLimits{Quota: &tt.quota, Used: rag.UsageOf(catalog, tt.docID)}
			_, err := e.ingester.Ingest(context.Background(), "acme", rag.Document{ID: tt.docID, Text: text, Chunking: &rag.ChunkOptions{MaxChunkSize: 14, Overlap: 4}, Limits: lim})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, rag.ErrQuotaExceeded) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want quota exceeded with %q", err, tt.wantErr)
			}
		})
	}
}
