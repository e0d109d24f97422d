package test

import (
	"os"
	"strings"
	"testing"
)

// End to end against a real Milvus (MILVUS_ADDR, which `make test` sets with scripts/milvus.sh):
// the binary with --milvus-addr ingests, searches with citations, keeps tenants apart, and deletes
// every chunk of a document.
func TestMilvusIngestAndSearch(t *testing.T) {
	addr := os.Getenv("MILVUS_ADDR")
	if addr == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("MILVUS_ADDR not set: CI must run this test against a real Milvus (make test starts one)")
		}
		t.Skip("MILVUS_ADDR not set: start one with `eval export $(scripts/milvus.sh start)`")
	}
	n := newNode(t, "CRISPY_MILVUS_ADDR="+addr)
	n.Start(t)
	a := "x-tenant-id: mrrainbowsmoke"
	b := "x-api-key: ck_example_local_dev_key"

	// The tenant's key shows the components' details; an anonymous caller sees only ok or down.
	if code, body := get(t, n.URL()+"/health", b); code != 200 ||
		!strings.HasPrefix(body["data"].(map[string]any)["components"].(map[string]any)["vectorStore"].(string), "milvus") {
		t.Fatalf("health does not report milvus: %d %v", code, body)
	}
	code, body := call(t, "POST", n.URL()+"/ingest",
		`{"docId":"lighthouse","title":"Keeper","text":"The lighthouse keeper lights the lamp at dusk. He climbs one hundred and twelve steps to the lantern room."}`, a)
	if code != 200 || body["data"].(map[string]any)["status"] != "ingested" {
		t.Fatalf("ingest: %d %v", code, body)
	}
	code, body = call(t, "POST", n.URL()+"/search", `{"query":"how many steps does the keeper climb?"}`, a)
	data, _ := body["data"].(map[string]any)
	if code != 200 || data == nil {
		t.Fatalf("search: %d %v", code, body)
	}
	sources, _ := data["sources"].([]any)
	if len(sources) == 0 || sources[0].(map[string]any)["docId"] != "lighthouse" || !strings.Contains(data["answer"].(string), "[1]") {
		t.Fatalf("search did not cite the ingested document: %v", data)
	}
	// Another tenant, same Milvus collection: nothing of the first tenant's.
	_, body = call(t, "POST", n.URL()+"/search", `{"query":"how many steps does the keeper climb?"}`, b)
	if s, _ := body["data"].(map[string]any)["sources"].([]any); len(s) != 0 {
		t.Fatalf("tenant example retrieved mrrainbowsmoke's chunks: %v", s)
	}
	if code, _ := call(t, "DELETE", n.URL()+"/documents/lighthouse", "", b); code != 404 {
		t.Fatalf("tenant example could delete mrrainbowsmoke's document: %d", code)
	}
	if code, body := call(t, "DELETE", n.URL()+"/documents/lighthouse", "", a); code != 200 {
		t.Fatalf("delete: %d %v", code, body)
	}
	_, body = call(t, "POST", n.URL()+"/search", `{"query":"how many steps does the keeper climb?"}`, a)
	if s, _ := body["data"].(map[string]any)["sources"].([]any); len(s) != 0 {
		t.Fatalf("chunks left in Milvus after delete: %v", s)
	}
}
