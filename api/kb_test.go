package api

import (
	"context"
	"net/http"
	"strings"
	"testing"
)

// The tools' view of the documents is the retrieval service the routes use (catalogue, search
// cache) and keeps tenants apart: what ingest_docs lands for one tenant, kb_search of another never
// finds.
func TestKnowledgeBaseForTools(t *testing.T) {
	ts := newTestServer(t, testServerOpts{rag: &testRAGOpts{}})
	kb := ts.rag.service
	ctx := context.Background()
	n, err := kb.IngestText(ctx, "open", "kites", "Box kites fly best in steady wind. Delta kites are easy to launch.")
	if err != nil || n != 1 {
		t.Fatalf("IngestText = %d, %v; want 1 chunk", n, err)
	}
	if _, err := kb.IngestText(ctx, "open", "../etc", "x"); err == nil {
		t.Fatal("a bad docId must be refused")
	}
	if _, err := kb.IngestText(ctx, "nope", "kites", "x"); err == nil {
		t.Fatal("an unknown tenant must be refused")
	}

	resp, body := ts.do(t, "GET", "/documents", "", "x-tenant-id: open")
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"docId":"kites"`) {
		t.Fatalf("ingest_docs must land in the catalogue: %d %s", resp.StatusCode, body)
	}
	got, err := kb.SearchKB(ctx, "open", "which kites are easy to launch", 5)
	if err != nil {
		t.Fatal(err)
	}
	res := got.(map[string]any)
	if a, _ := res["answer"].(string); !strings.Contains(a, "[1]") || !strings.Contains(a, "Delta kites") {
		t.Fatalf("kb_search answer = %q, want a cited quote", a)
	}
	other, err := kb.SearchKB(ctx, "acme", "which kites are easy to launch", 5)
	if err != nil {
		t.Fatal(err)
	}
	if a := other.(map[string]any)["answer"].(string); strings.Contains(a, "kites") {
		t.Fatalf("another tenant found the document: %q", a)
	}
}
