package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/rag"
	"github.com/crispy-enigma/crispy/rag/embedded"
	"github.com/crispy-enigma/crispy/store"
	"github.com/crispy-enigma/crispy/wire"
)

// testRAGOpts tune the RAG wiring of a test server.
type testRAGOpts struct {
	jobMinDocs int   // 0: the default threshold
	maxUpload  int64 // 0: the default upload limit
	// spaces wires serve's retrieval: an index per (model, dimension), each tenant's active index
	// in the ragindex bucket, embedders resolved by the router (local/minilm by default).
	spaces bool
	// deferWorker leaves the ingest job worker stopped until the test calls ts.rag.start.
	deferWorker bool
}

type testRAG struct {
	dbs     *store.TenantDBs
	router  *gateway.Router
	store   *embedded.Store
	jobs    *store.JobQueue
	service *rag.Service
	live    *config.Live  // the configs the service reads (swap with ts.SetTenants for a deploy)
	up      *fakeUpstream // the model upstream of TestRAG, to count rewrite calls
}

// newTestRAG wires RAG over real parts: an embedded vector store and tenant databases in a temp
// dir, an embedded NATS server for the cache bucket, the ledger and the job queue, local/hash-embed,
// the rate-limiter grain, and local/extractive answering chat from the same store.
func newTestRAG(t testing.TB, ts *testServer, o testServerOpts, deps *Deps) *testRAG {
	t.Helper()
	js := ts.js
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cache, err := store.OpenTenantKV(ctx, js, store.BucketCache, store.KVOptions{AllowTTL: true})
	if err != nil {
		t.Fatal(err)
	}
	ledger, err := store.OpenLedger(ctx, js, store.LedgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := store.OpenJobQueue(ctx, js, store.JobQueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	dbs := store.OpenTenantDBs(dir)
	t.Cleanup(func() { _ = dbs.Close() })
	live := config.NewLive(deps.Tenants)
	if o.rag.spaces {
		return newTestSpacesRAG(t, ts, o, deps, testRAG{dbs: dbs, jobs: jobs, live: live}, dir, cache, ledger)
	}
	emb := gateway.NewHashEmbedder(0)
	vs, err := embedded.Open(dir, embedded.Options{Dimension: emb.Dimension()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vs.Close() })

	models := o.models
	models.Local = map[string]gateway.ChatModel{gateway.ExtractiveModelID: gateway.NewExtractive(rag.NewRetriever(vs, emb, nil))}
	router := gateway.NewRouter(models)
	if deps.Chat != nil {
		deps.Chat.Models = router
	}
	svc, err := rag.NewService(rag.ServiceOptions{
		Store: vs, Embedder: emb, Catalog: dbs, Tenants: live, Ledger: ledger, Cache: cache,
		Models: router, Select: ts.mt, Jobs: jobs, JobMinDocs: o.rag.jobMinDocs, RewriteTimeout: 300 * time.Millisecond,
		Tracer: o.tracing.Tracer("github.com/crispy-enigma/crispy/rag"),
	})
	if err != nil {
		t.Fatal(err)
	}
	deps.RAG = &RAGDeps{Service: svc, MaxUploadSize: o.rag.maxUpload}
	return &testRAG{dbs: dbs, router: router, store: vs, jobs: jobs, service: svc, live: live}
}

// newTestSpacesRAG completes newTestRAG with serve's wiring of the indexes and embedders.
func newTestSpacesRAG(t testing.TB, ts *testServer, o testServerOpts, deps *Deps, r testRAG, dir string, cache *store.TenantKV, ledger *store.Ledger) *testRAG {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := store.OpenTenantKV(ctx, ts.js, store.BucketRAGIndex, store.KVOptions{History: 5})
	if err != nil {
		t.Fatal(err)
	}
	indexes := embedded.NewIndexes(dir, embedded.IndexesOptions{LegacyModel: gateway.HashEmbedID, LegacyDimension: gateway.DefaultHashEmbedDimension})
	t.Cleanup(func() { _ = indexes.Close() })
	embedders := gateway.NewRouter(o.models)
	spaces, err := rag.NewSpaces(rag.SpacesOptions{
		Indexes: indexes, Actives: rag.NewActiveIndexes(kv, store.ErrNotFound), Embedders: embedders,
		Legacy: rag.IndexKey{Model: gateway.HashEmbedID, Dim: gateway.DefaultHashEmbedDimension},
	})
	if err != nil {
		t.Fatal(err)
	}
	r.router = embedders.WithLocal(map[string]gateway.ChatModel{
		gateway.ExtractiveModelID: gateway.NewExtractive(rag.NewSpacesRetriever(spaces, r.live)),
	})
	if deps.Chat != nil {
		deps.Chat.Models = r.router
	}
	r.service, err = rag.NewService(rag.ServiceOptions{
		Spaces: spaces, Catalog: r.dbs, Tenants: r.live, Ledger: ledger, Cache: cache,
		Models: r.router, Select: ts.mt, Jobs: r.jobs, JobMinDocs: o.rag.jobMinDocs, RewriteTimeout: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	deps.RAG = &RAGDeps{Service: r.service, MaxUploadSize: o.rag.maxUpload}
	return &r
}

func (r *testRAG) start(t testing.TB, _ *Server) {
	t.Helper()
	stop, err := r.service.StartWorker(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
}

// Documents of the tests: distinct topics so retrieval has a right answer.
const (
	docLighthouse = "The lighthouse keeper lights the lamp at dusk every evening. " +
		"He climbs one hundred and twelve steps to reach the lantern room. " +
		"In winter storms the keeper winds the clockwork that turns the lens."
	docBakery = "Our bakery opens at six in the morning. Sourdough bread is baked daily with a rye starter. " +
		"Croissants are laminated with butter over three days."
	docSecret = "Project Zanzibar launches on the fourteenth of March with the quantum flux capacitor."
)

// ragJSON posts body to path for a tenant and decodes the success envelope's data into out.
func (ts *testServer) ragJSON(t *testing.T, method, path, body string, wantStatus int, out any, headers ...string) *http.Response {
	t.Helper()
	resp, b := ts.do(t, method, path, body, headers...)
	if resp.StatusCode != wantStatus {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, wantStatus, b)
	}
	env := decodeEnvelope(t, resp, b)
	if out != nil {
		if err := json.Unmarshal(env.Data, out); err != nil {
			t.Fatalf("%s %s: decode data: %v: %s", method, path, err, env.Data)
		}
	}
	return resp
}

func ingestBody(docID, text string) string {
	b, _ := json.Marshal(map[string]any{"docId": docID, "text": text, "title": "Title of " + docID, "source": "tests", "url": "https://example.test/" + docID})
	return string(b)
}

type searchResult struct {
	Status  string `json:"status"`
	TraceID string `json:"traceId"`
	Answer  string `json:"answer"`
	Sources []struct {
		ID      string  `json:"id"`
		DocID   string  `json:"docId"`
		ChunkID string  `json:"chunkId"`
		Title   string  `json:"title"`
		URL     string  `json:"url"`
		Source  string  `json:"source"`
		Text    string  `json:"text"`
		Score   float64 `json:"score"`
	} `json:"sources"`
	Confidence     float64  `json:"confidence"`
	FollowUps      []string `json:"followUps"`
	RewrittenQuery string   `json:"rewrittenQuery"`
}

func (ts *testServer) search(t *testing.T, tenantHeaders []string, body string) (searchResult, string) {
	t.Helper()
	var r searchResult
	resp := ts.ragJSON(t, "POST", "/search", body, 200, &r, tenantHeaders...)
	return r, resp.Header.Get("x-cache")
}

func (r searchResult) docIDs() []string {
	var out []string
	for _, s := range r.Sources {
		out = append(out, s.DocID)
	}
	return out
}

type documentsData struct {
	Documents []store.Document `json:"documents"`
	Count     int              `json:"count"`
}

func (ts *testServer) documents(t *testing.T, headers ...string) documentsData {
	t.Helper()
	var d documentsData
	ts.ragJSON(t, "GET", "/documents", "", 200, &d, headers...)
	return d
}

func hdr(tenant string) []string { return []string{"x-tenant-id: " + tenant} }

// TestRAG runs the document and search routes on one server over real parts; each subtest has its
// own tenant. Not parallel: see TestChat.
func TestRAG(t *testing.T) {
	up := newFakeUpstream(t)
	var tenants []string
	for _, id := range []string{"r-orig", "r-batch", "r-multi", "r-replace", "r-docs", "r-shape", "r-cache", "r-harm", "r-chat", "r-jobs"} {
		tenants = append(tenants, tenantJSON(id, `, "public": true`))
	}
	tenants = append(tenants,
		chatTenant("r-rewrite", "fake/echo"), chatTenant("r-slowrw", "fake/block"),
		chatTenant("r-tight", "local/extractive", `"perMinute": 1000, "burst": 1000`, `"perMinute": 2, "burst": 2`))
	ts := newTestServer(t, testServerOpts{
		models: routerFor(up), tenants: tenants,
		rag: &testRAGOpts{jobMinDocs: 6, maxUpload: 64 << 10},
	})
	ts.rag.up = up
	for _, tt := range []struct {
		name string
		run  func(*testing.T, *testServer)
	}{
		{"original ingest body and response", testIngestOriginal},
		{"batch with bad documents: the rest lands", testIngestBatchPartial},
		{"multipart upload of .md and .html", testIngestMultipart},
		{"upload body limit is the route's own", testIngestBodyLimit},
		{"re-ingest replaces", testReingestReplaces},
		{"GET /documents and DELETE", testDocumentsListAndDelete},
		{"search response shape and validation", testSearchShape},
		{"search cache HIT, cleared by ingest and delete", testSearchCache},
		{"self-harm refusal is not cached", testSearchSelfHarm},
		{"query rewrite through the tenant's model and its fallback", testSearchRewrite},
		{"chat with local/extractive quotes a document", testChatExtractive},
		{"large batch runs as a job with progress", testIngestJob},
		{"tenant isolation across every route", testRAGTenantIsolation},
		{"ingest and search are rate limited", testRAGRateLimit},
	} {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, ts) })
	}
}

// docs/api.md POST /ingest: `{docId, text, source?, title?, url?, chunking?}` →
// `data: {status:"ingested", docId, chunks, embeddingModelId}`; whitespace-only text → 400.
func testIngestOriginal(t *testing.T, ts *testServer) {
	h := hdr("r-orig")
	var d map[string]any
	ts.ragJSON(t, "POST", "/ingest", ingestBody("lighthouse", docLighthouse), 200, &d, h...)
	if d["status"] != "ingested" || d["docId"] != "lighthouse" || d["embeddingModelId"] != gateway.HashEmbedID || d["chunks"] != 1.0 {
		t.Fatalf("original response = %v", d)
	}
	// chunking options are honoured: "one two three four five six seven eight nine" at (14, 4) is six chunks.
	ts.ragJSON(t, "POST", "/ingest", `{"docId":"fixture","text":"one two three four five six seven eight nine","chunking":{"maxChunkSize":14,"overlap":4}}`, 200, &d, h...)
	if d["chunks"] != 6.0 {
		t.Fatalf("chunks = %v, want 6 (docs/api.md fixture)", d["chunks"])
	}
	for _, tc := range []struct{ name, body, code string }{
		{"whitespace-only text", `{"docId":"w","text":"  \n\t "}`, CodeInvalidRequest},
		{"missing docId", `{"text":"hello"}`, CodeInvalidRequest},
		{"missing text", `{"docId":"x"}`, CodeInvalidRequest},
		{"path tricks in docId", `{"docId":"../etc/passwd","text":"hello"}`, CodeInvalidRequest},
		{"dot-dot docId", `{"docId":"a..b","text":"hello"}`, CodeInvalidRequest},
		{"docId too long", `{"docId":"` + strings.Repeat("a", 129) + `","text":"hello"}`, CodeInvalidRequest},
		{"bad chunking", `{"docId":"c","text":"hello","chunking":{"maxChunkSize":10,"overlap":10}}`, CodeInvalidRequest},
		{"unsupported type", `{"docId":"c","text":"hello","contentType":"image/png"}`, CodeInvalidRequest},
		{"malformed JSON", `{"docId":`, CodeInvalidJSON},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := ts.do(t, "POST", "/ingest", tc.body, h...)
			wantError(t, resp, b, 400, tc.code)
		})
	}
}

type batchData struct {
	Status    string                  `json:"status"`
	Results   []wire.IngestItemResult `json:"results"`
	Succeeded int                     `json:"succeeded"`
	Failed    int                     `json:"failed"`
}

// Ours: a batch with per-document results; an unsupported or corrupt document fails with an error
// naming it, the rest lands.
func testIngestBatchPartial(t *testing.T, ts *testServer) {
	h := hdr("r-batch")
	body := `{"documents":[
		{"docId":"bakery","content":` + jsonString(docBakery) + `},
		{"docId":"image","text":"xx","contentType":"image/png"},
		{"docId":"broken-pdf","content":` + jsonString(base64.StdEncoding.EncodeToString([]byte("%PDF-1.4 garbage"))) + `,"encoding":"base64","contentType":"application/pdf"},
		{"docId":"page","content":"<html><head><title>Opening hours</title><script>alert(1)</script></head><body><h1>Hours</h1><p>We open at nine on Sundays.</p></body></html>","contentType":"text/html"},
		{"docId":"data","content":"{\"product\":\"rye loaf\",\"price\":4}","contentType":"application/json"},
		{"docId":"../x","text":"y"}
	]}`
	var d batchData
	ts.ragJSON(t, "POST", "/ingest", body, 200, &d, h...)
	if d.Status != "partial" || d.Succeeded != 3 || d.Failed != 3 || len(d.Results) != 6 {
		t.Fatalf("batch = %+v", d)
	}
	want := map[string]string{"bakery": "ingested", "image": "failed", "broken-pdf": "failed", "page": "ingested", "data": "ingested", "../x": "failed"}
	for _, r := range d.Results {
		if want[r.DocID] != r.Status {
			t.Errorf("%s: status %s, want %s (%+v)", r.DocID, r.Status, want[r.DocID], r.Error)
		}
		if r.Status == "failed" && (r.Error == nil || r.Error.Code != CodeInvalidRequest || !strings.Contains(r.Error.Message, r.DocID)) {
			t.Errorf("%s: failure must name the document: %+v", r.DocID, r.Error)
		}
	}
	if r := d.Results[1]; r.Error != nil && !strings.Contains(r.Error.Message, "image/png") {
		t.Errorf("unsupported type error should name the type: %s", r.Error.Message)
	}
	if r := d.Results[3]; r.ContentType != rag.ContentTypeHTML {
		t.Errorf("page content type = %q", r.ContentType)
	}
	got, _ := ts.search(t, h, `{"query":"When do you open on Sundays?"}`)
	if len(got.Sources) == 0 || got.Sources[0].DocID != "page" || strings.Contains(got.Answer, "alert") {
		t.Fatalf("HTML document not searchable as text: %+v", got)
	}
	docs := ts.documents(t, h...)
	if docs.Count != 3 {
		t.Fatalf("catalogue has %d documents, want the 3 that landed: %+v", docs.Count, docs.Documents)
	}
	// An all-failed batch is still 200 with status "failed".
	ts.ragJSON(t, "POST", "/ingest", `{"documents":[{"docId":"e","text":" "}]}`, 200, &d, h...)
	if d.Status != "failed" || d.Failed != 1 {
		t.Fatalf("all-failed batch = %+v", d)
	}
	resp, b := ts.do(t, "POST", "/ingest", `{"documents":[]}`, h...)
	wantError(t, resp, b, 400, CodeInvalidRequest)
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

type upload struct {
	field, name, contentType string
	data                     []byte
}

func multipartBody(t *testing.T, values map[string][]string, files ...upload) (string, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for k, vs := range values {
		for _, v := range vs {
			_ = w.WriteField(k, v)
		}
	}
	for _, f := range files {
		var part io.Writer
		var err error
		if f.contentType == "" {
			part, err = w.CreateFormFile(f.field, f.name) // application/octet-stream, as browsers send unknown types
		} else {
			hd := make(map[string][]string)
			hd["Content-Disposition"] = []string{fmt.Sprintf(`form-data; name=%q; filename=%q`, f.field, f.name)}
			hd["Content-Type"] = []string{f.contentType}
			part, err = w.CreatePart(hd)
		}
		if err != nil {
			t.Fatal(err)
		}
		_, _ = part.Write(f.data)
	}
	_ = w.Close()
	return w.FormDataContentType(), &buf
}

func (ts *testServer) postMultipart(t *testing.T, tenant, ct string, body *bytes.Buffer) (*http.Response, []byte) {
	t.Helper()
	return ts.do(t, "POST", "/ingest", body.String(), "x-tenant-id: "+tenant, "Content-Type: "+ct)
}

// Ours: multipart upload; docId from the form or the file name; type from the extension.
func testIngestMultipart(t *testing.T, ts *testServer) {
	md := "# Garden guide\n\nIntro text.\n\n## Watering\n\nWater the tomatoes twice a week in summer.\n\n## Pruning\n\nPrune roses in late winter.\n"
	html := "<html><head><title>Bees</title><style>p{color:red}</style></head><body><h2>Hives</h2><p>Honeybees swarm in spring.</p></body></html>"
	ct, body := multipartBody(t, nil,
		upload{field: "file", name: "garden guide.md", data: []byte(md)},
		upload{field: "file", name: "bees.html", contentType: "text/html; charset=utf-8", data: []byte(html)})
	resp, b := ts.postMultipart(t, "r-multi", ct, body)
	if resp.StatusCode != 200 {
		t.Fatalf("multipart: %d %s", resp.StatusCode, b)
	}
	var d batchData
	_ = json.Unmarshal(decodeEnvelope(t, resp, b).Data, &d)
	if d.Status != "ingested" || d.Succeeded != 2 {
		t.Fatalf("multipart = %+v", d)
	}
	if d.Results[0].DocID != "garden_guide.md" || d.Results[0].ContentType != rag.ContentTypeMarkdown || d.Results[0].Chunks < 2 {
		t.Errorf("markdown result = %+v (docId from the file name, split at headings)", d.Results[0])
	}
	if d.Results[1].DocID != "bees.html" || d.Results[1].ContentType != rag.ContentTypeHTML {
		t.Errorf("html result = %+v", d.Results[1])
	}
	got, _ := ts.search(t, hdr("r-multi"), `{"query":"how often should I water tomatoes"}`)
	if len(got.Sources) == 0 || got.Sources[0].DocID != "garden_guide.md" || !strings.Contains(got.Sources[0].Text, "twice a week") {
		t.Fatalf("search after upload: %+v", got)
	}
	if got, _ := ts.search(t, hdr("r-multi"), `{"query":"color red style"}`); slices.Contains(got.docIDs(), "bees.html") {
		t.Errorf("HTML styles must be dropped, got %+v", got.Sources)
	}
	// docId from the form, and a missing file part.
	ct, body = multipartBody(t, map[string][]string{"docId": {"notes-1"}}, upload{field: "file", name: "x.txt", data: []byte("plain notes about kites")})
	resp, b = ts.postMultipart(t, "r-multi", ct, body)
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"docId":"notes-1"`) {
		t.Fatalf("docId form field not used: %d %s", resp.StatusCode, b)
	}
	ct, body = multipartBody(t, map[string][]string{"docId": {"x"}})
	resp, b = ts.postMultipart(t, "r-multi", ct, body)
	wantError(t, resp, b, 400, CodeInvalidRequest)
}

// docs/api.md "Body size": the global limit (4096 bytes in tests) still holds for other routes;
// POST /ingest has its own (64 KiB here), for JSON and multipart alike.
func testIngestBodyLimit(t *testing.T, ts *testServer) {
	h := hdr("r-multi")
	big := strings.Repeat("kite flying in the park. ", 400) // ~10 KB
	ts.ragJSON(t, "POST", "/ingest", ingestBody("big", big), 200, nil, h...)
	resp, b := ts.do(t, "POST", "/search", `{"query":"`+big+`"}`, h...)
	wantError(t, resp, b, 413, CodePayloadTooLarge)
	ct, body := multipartBody(t, nil, upload{field: "file", name: "huge.txt", data: bytes.Repeat([]byte("a b "), 20<<10)})
	resp, b = ts.postMultipart(t, "r-multi", ct, body)
	wantError(t, resp, b, 413, CodePayloadTooLarge)
}

// Re-ingesting a docId replaces all its chunks: the count drops and old text is no longer found.
func testReingestReplaces(t *testing.T, ts *testServer) {
	h := hdr("r-replace")
	var long strings.Builder
	for i := range 30 {
		fmt.Fprintf(&long, "Paragraph %d tells of the walrus colony number %d on the northern ice shelf. ", i, i)
	}
	var d map[string]any
	ts.ragJSON(t, "POST", "/ingest", `{"docId":"doc","text":`+jsonString(long.String())+`,"chunking":{"maxChunkSize":200,"overlap":20}}`, 200, &d, h...)
	first := d["chunks"].(float64)
	if first < 5 {
		t.Fatalf("first version has %v chunks, want many", first)
	}
	ts.ragJSON(t, "POST", "/ingest", ingestBody("doc", "Penguins nest on the southern rocks."), 200, &d, h...)
	if d["chunks"] != 1.0 {
		t.Fatalf("second version chunks = %v", d["chunks"])
	}
	n, err := ts.rag.store.Count(context.Background(), "r-replace")
	if err != nil || n != 1 {
		t.Fatalf("store holds %d chunks (%v), want 1: every old chunk must be gone", n, err)
	}
	got, _ := ts.search(t, h, `{"query":"walrus colony northern ice shelf"}`)
	for _, s := range got.Sources {
		if strings.Contains(s.Text, "walrus") {
			t.Fatalf("old version still retrievable: %+v", s)
		}
	}
	docs := ts.documents(t, h...)
	if docs.Count != 1 || docs.Documents[0].Chunks != 1 {
		t.Fatalf("catalogue = %+v", docs)
	}
}

// GET /documents lists the catalogue; DELETE removes chunks, keyword index and row; unknown → 404.
func testDocumentsListAndDelete(t *testing.T, ts *testServer) {
	h := hdr("r-docs")
	if d := ts.documents(t, h...); d.Count != 0 || d.Documents == nil {
		t.Fatalf("empty catalogue must be an empty list: %+v", d)
	}
	ts.ragJSON(t, "POST", "/ingest", ingestBody("lighthouse", docLighthouse), 200, nil, h...)
	ts.ragJSON(t, "POST", "/ingest", ingestBody("bakery", docBakery), 200, nil, h...)
	resp, b := ts.do(t, "GET", "/documents", "", h...)
	var raw struct {
		Documents []map[string]any `json:"documents"`
	}
	_ = json.Unmarshal(decodeEnvelope(t, resp, b).Data, &raw)
	if len(raw.Documents) != 2 {
		t.Fatalf("documents = %s", b)
	}
	for _, k := range []string{"docId", "title", "source", "url", "contentType", "chunks", "bytes", "ingestedAt"} {
		if _, ok := raw.Documents[0][k]; !ok {
			t.Errorf("document entry lacks %q: %v", k, raw.Documents[0])
		}
	}
	d := ts.documents(t, h...)
	var lh store.Document
	for _, doc := range d.Documents {
		if doc.DocID == "lighthouse" {
			lh = doc
		}
	}
	if lh.Title != "Title of lighthouse" || lh.Bytes != int64(len(docLighthouse)) || lh.ContentType != rag.ContentTypeText || lh.IngestedAt.IsZero() {
		t.Errorf("lighthouse entry = %+v", lh)
	}

	var del map[string]any
	ts.ragJSON(t, "DELETE", "/documents/lighthouse", "", 200, &del, h...)
	if del["deleted"] != true || del["docId"] != "lighthouse" {
		t.Fatalf("delete = %v", del)
	}
	resp, b = ts.do(t, "DELETE", "/documents/lighthouse", "", h...)
	wantError(t, resp, b, 404, CodeNotFound)
	resp, b = ts.do(t, "DELETE", "/documents/never-was", "", h...)
	wantError(t, resp, b, 404, CodeNotFound)
	if d := ts.documents(t, h...); d.Count != 1 || d.Documents[0].DocID != "bakery" {
		t.Fatalf("after delete: %+v", d)
	}
	got, _ := ts.search(t, h, `{"query":"lighthouse keeper lamp lantern"}`)
	if slices.Contains(got.docIDs(), "lighthouse") {
		t.Fatalf("deleted document still retrieved: %+v", got.Sources)
	}
	// The keyword index forgot it too, not only the vectors.
	hits, err := ts.rag.store.KeywordSearch(context.Background(), "r-docs", "lighthouse keeper", 5, nil)
	if err != nil || len(hits) != 0 {
		t.Fatalf("keyword index still has %d hits (%v)", len(hits), err)
	}
}

// docs/api.md POST /search: the data's exact keys, citations [n], confidence in [0,1], topK ≤ 20.
func testSearchShape(t *testing.T, ts *testServer) {
	h := hdr("r-shape")
	ts.ragJSON(t, "POST", "/ingest", ingestBody("lighthouse", docLighthouse), 200, nil, h...)
	ts.ragJSON(t, "POST", "/ingest", ingestBody("bakery", docBakery), 200, nil, h...)
	resp, b := ts.do(t, "POST", "/search", `{"query":"How many steps does the keeper climb to the lantern?","topK":3}`, h...)
	env := decodeEnvelope(t, resp, b)
	rateLimitHeadersPresent(t, resp.Header)
	want := []string{"answer", "confidence", "followUps", "rewrittenQuery", "sources", "status", "traceId"}
	if got := keysOf(t, env.Data); !slices.Equal(got, want) {
		t.Fatalf("data keys = %v, want %v", got, want)
	}
	var r searchResult
	_ = json.Unmarshal(env.Data, &r)
	if r.Status != "ok" || r.TraceID != env.TraceID || r.RewrittenQuery == "" {
		t.Fatalf("search = %+v", r)
	}
	if len(r.Sources) == 0 || len(r.Sources) > 3 || r.Sources[0].DocID != "lighthouse" {
		t.Fatalf("sources = %+v", r.Sources)
	}
	var rawSources []json.RawMessage
	_ = json.Unmarshal(mustField(t, env.Data, "sources"), &rawSources)
	for _, s := range rawSources {
		for _, k := range keysOf(t, s) {
			if !slices.Contains([]string{"id", "docId", "chunkId", "title", "url", "source", "text", "score"}, k) {
				t.Errorf("unexpected source key %q", k)
			}
		}
	}
	s0 := r.Sources[0]
	if s0.ID != "lighthouse:0" || s0.ChunkID != s0.ID || s0.Title != "Title of lighthouse" || s0.URL == "" || s0.Source != "tests" || s0.Score <= 0 || s0.Score > 1 {
		t.Errorf("first source = %+v", s0)
	}
	if !strings.Contains(r.Answer, "[1]") || !strings.Contains(r.Answer, "hundred and twelve steps") {
		t.Errorf("answer must quote and cite [1]: %q", r.Answer)
	}
	if r.Confidence <= 0 || r.Confidence > 1 {
		t.Errorf("confidence = %v, want (0,1]", r.Confidence)
	}
	if len(r.FollowUps) > 5 || r.FollowUps == nil {
		t.Errorf("followUps = %v", r.FollowUps)
	}
	// Nothing relevant: a non-empty answer that cites nothing.
	none, _ := ts.search(t, h, `{"query":"xylophone zebra quasar"}`)
	if none.Answer == "" || strings.Contains(none.Answer, "[1]") || len(none.Sources) != 0 || none.Confidence != 0 {
		t.Errorf("no-hit search = %+v", none)
	}
	// A filter narrows to matching metadata.
	f, _ := ts.search(t, h, `{"query":"keeper bread","filter":{"docId":"bakery"}}`)
	for _, s := range f.Sources {
		if s.DocID != "bakery" {
			t.Errorf("filter leaked %s", s.DocID)
		}
	}
	for _, tc := range []struct{ name, body, code string }{
		{"topK above 20", `{"query":"keeper","topK":21}`, CodeInvalidRequest},
		{"topK zero", `{"query":"keeper","topK":0}`, CodeInvalidRequest},
		{"empty query", `{"query":""}`, CodeInvalidRequest},
		{"blank query", `{"query":"   "}`, CodeInvalidRequest},
		{"missing query", `{}`, CodeInvalidRequest},
		{"query not a string", `{"query":5}`, CodeInvalidRequest},
		{"filter with an object", `{"query":"k","filter":{"a":{"b":1}}}`, CodeInvalidRequest},
		{"malformed", `{"query":`, CodeInvalidJSON},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := ts.do(t, "POST", "/search", tc.body, h...)
			wantError(t, resp, b, 400, tc.code)
		})
	}
	var ok20 searchResult
	ts.ragJSON(t, "POST", "/search", `{"query":"keeper","topK":20}`, 200, &ok20, h...)
}

func mustField(t *testing.T, raw json.RawMessage, k string) json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m[k]
}

// docs/api.md cache: a repeat is served from the tenant's cache; any change to the tenant's
// documents clears it (ours).
func testSearchCache(t *testing.T, ts *testServer) {
	h := hdr("r-cache")
	ts.ragJSON(t, "POST", "/ingest", ingestBody("bakery", docBakery), 200, nil, h...)
	q := `{"query":"when is sourdough baked","topK":2}`
	first, c1 := ts.search(t, h, q)
	second, c2 := ts.search(t, h, q)
	if c1 != "MISS" || c2 != "HIT" {
		t.Fatalf("x-cache = %s then %s, want MISS then HIT", c1, c2)
	}
	if first.Answer != second.Answer || len(first.Sources) != len(second.Sources) || first.TraceID == second.TraceID {
		t.Fatalf("cached answer differs (or reused the trace ID): %+v vs %+v", first, second)
	}
	if _, c := ts.search(t, h, `{"query":"when is sourdough baked","topK":3}`); c != "MISS" {
		t.Errorf("another topK must be another cache entry, got %s", c)
	}
	ts.ragJSON(t, "POST", "/ingest", ingestBody("sourdough", "Sourdough is baked at dawn in the stone oven."), 200, nil, h...)
	after, c3 := ts.search(t, h, q)
	if c3 != "MISS" || !slices.Contains(after.docIDs(), "sourdough") {
		t.Fatalf("after ingest: x-cache %s, sources %v; the new document must be found", c3, after.docIDs())
	}
	if _, c := ts.search(t, h, q); c != "HIT" {
		t.Fatalf("repeat after ingest: %s", c)
	}
	ts.ragJSON(t, "DELETE", "/documents/sourdough", "", 200, nil, h...)
	gone, c4 := ts.search(t, h, q)
	if c4 != "MISS" || slices.Contains(gone.docIDs(), "sourdough") {
		t.Fatalf("after delete: x-cache %s, sources %v", c4, gone.docIDs())
	}
	// Another tenant asking the same question never gets this tenant's cached answer.
	if _, c := ts.search(t, hdr("r-shape"), q); c != "MISS" {
		t.Fatalf("cache crossed tenants: %s", c)
	}
}

// docs/api.md safety: a self-harm query answers the refusal with confidence 0 and is not cached.
func testSearchSelfHarm(t *testing.T, ts *testServer) {
	h := hdr("r-harm")
	ts.ragJSON(t, "POST", "/ingest", ingestBody("bakery", docBakery), 200, nil, h...)
	q := `{"query":"how can I kill myself"}`
	for i := range 2 {
		r, c := ts.search(t, h, q)
		if r.Answer != rag.RefusalAnswer || r.Confidence != 0 || len(r.Sources) != 0 {
			t.Fatalf("refusal = %+v", r)
		}
		if c != "MISS" {
			t.Fatalf("request %d: x-cache %s; refusals must not be cached", i, c)
		}
	}
}

// Query rewriting goes through the tenant's chat model (fake/echo answers "echo: <query>"); a model
// that does not answer within the rewrite timeout falls back to the original query.
func testSearchRewrite(t *testing.T, ts *testServer) {
	ts.ragJSON(t, "POST", "/ingest", ingestBody("bakery", docBakery), 200, nil, hdr("r-rewrite")...)
	r, _ := ts.search(t, hdr("r-rewrite"), `{"query":"croissants butter"}`)
	if r.RewrittenQuery != "echo: croissants butter" || len(r.Sources) == 0 {
		t.Fatalf("rewrite = %q, sources %v", r.RewrittenQuery, r.docIDs())
	}
	slow, _ := ts.search(t, hdr("r-slowrw"), `{"query":"croissants butter"}`)
	if slow.RewrittenQuery != "croissants butter" {
		t.Fatalf("a blocked rewrite must fall back to the query, got %q", slow.RewrittenQuery)
	}
	// local/extractive tenants make no rewrite call at all.
	before := 0
	for _, m := range []string{"fake/echo", "fake/block"} {
		before += ts.upCalls(m)
	}
	ts.search(t, hdr("r-shape"), `{"query":"anything at all"}`)
	after := 0
	for _, m := range []string{"fake/echo", "fake/block"} {
		after += ts.upCalls(m)
	}
	if before != after {
		t.Fatalf("a local/extractive tenant's search called a model")
	}
}

// upCalls is set by TestRAG's upstream; kept as a method so subtests read naturally.
func (ts *testServer) upCalls(model string) int {
	if ts.rag == nil || ts.rag.up == nil {
		return 0
	}
	return ts.rag.up.callsTo(model)
}

// local/extractive answers chat by quoting the tenant's documents with [1]; with nothing relevant it
// says so and cites nothing.
func testChatExtractive(t *testing.T, ts *testServer) {
	h := hdr("r-chat")
	ts.ragJSON(t, "POST", "/ingest", ingestBody("lighthouse", docLighthouse), 200, nil, h...)
	_, d := ts.jsonChat(t, `{"message":"How many steps to reach the lantern room?","stream":false}`, h...)
	if !strings.Contains(d.Message, "[1]") || !strings.Contains(d.Message, "hundred and twelve steps") {
		t.Fatalf("extractive reply must quote the passage with [1]: %q", d.Message)
	}
	_, d = ts.jsonChat(t, `{"message":"xylophone quasar zebra","stream":false}`, h...)
	if strings.Contains(d.Message, "[1]") || !strings.Contains(d.Message, "nothing relevant") {
		t.Fatalf("no-hit reply = %q", d.Message)
	}
}

// Ours: a batch above the threshold (6 documents in this server) is a 202 job processed from the
// INGEST_JOBS work queue, with progress in the jobs bucket.
func testIngestJob(t *testing.T, ts *testServer) {
	h := hdr("r-jobs")
	var docs []string
	for i := range 6 {
		docs = append(docs, fmt.Sprintf(`{"docId":"job-%d","text":"Job document %d is about comet number %d."}`, i, i, i))
	}
	docs = append(docs, `{"docId":"job-bad","text":"x","contentType":"image/gif"}`)
	var acc struct {
		JobID  string `json:"jobId"`
		Status string `json:"status"`
		Total  int    `json:"total"`
	}
	ts.ragJSON(t, "POST", "/ingest", `{"documents":[`+strings.Join(docs, ",")+`]}`, 202, &acc, h...)
	if acc.JobID == "" || acc.Status != wire.JobQueued || acc.Total != 7 {
		t.Fatalf("accepted = %+v", acc)
	}
	st := ts.waitJob(t, h, acc.JobID)
	if st.Status != wire.JobDone || st.Total != 7 || st.Done != 7 || st.Succeeded != 6 || st.Failed != 1 || len(st.Results) != 7 {
		t.Fatalf("job = %+v", st)
	}
	if r := st.Results[6]; r.DocID != "job-bad" || r.Status != "failed" || !strings.Contains(r.Error.Message, "image/gif") {
		t.Errorf("bad document result = %+v", r)
	}
	if d := ts.documents(t, h...); d.Count != 6 {
		t.Fatalf("catalogue after job = %d", d.Count)
	}
	got, _ := ts.search(t, h, `{"query":"comet number 4"}`)
	if len(got.Sources) == 0 || got.Sources[0].DocID != "job-4" {
		t.Fatalf("job documents not searchable: %v", got.docIDs())
	}
	resp, b := ts.do(t, "GET", "/ingest/jobs/not-a-job", "", h...)
	wantError(t, resp, b, 404, CodeNotFound)
}

// waitJob polls the job until it finishes. The bound is generous (the job takes milliseconds); it
// only keeps a broken worker from hanging the test.
func (ts *testServer) waitJob(t *testing.T, headers []string, id string) wire.JobStatus {
	t.Helper()
	var st wire.JobStatus
	for range 1000 {
		ts.ragJSON(t, "GET", "/ingest/jobs/"+id, "", 200, &st, headers...)
		if st.Done > st.Total || st.Failed > st.Done {
			t.Fatalf("inconsistent progress %+v", st)
		}
		if st.Status == wire.JobDone || st.Status == wire.JobFailed {
			return st
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("job %s did not finish: %+v", id, st)
	return st
}

// Tenant B can never retrieve, list, delete or learn of tenant A's documents: /search, /documents,
// DELETE, /ingest/jobs and chat (local/extractive) all behave as if A's documents did not exist.
func testRAGTenantIsolation(t *testing.T, ts *testServer) {
	a := []string{"x-api-key: " + testKey}
	b := []string{"x-api-key: " + globexKey}
	ts.ragJSON(t, "POST", "/ingest", ingestBody("zanzibar", docSecret), 200, nil, a...)
	if r, _ := ts.search(t, a, `{"query":"Project Zanzibar launch date"}`); len(r.Sources) == 0 {
		t.Fatal("tenant A cannot find its own document")
	}
	// Jobs of A.
	var docs []string
	for i := range 8 {
		docs = append(docs, fmt.Sprintf(`{"docId":"za-%d","text":"Zanzibar appendix %d."}`, i, i))
	}
	var acc struct {
		JobID string `json:"jobId"`
	}
	ts.ragJSON(t, "POST", "/ingest", `{"documents":[`+strings.Join(docs, ",")+`]}`, 202, &acc, a...)
	ts.waitJob(t, a, acc.JobID)

	r, c := ts.search(t, b, `{"query":"Project Zanzibar launch date"}`)
	if len(r.Sources) != 0 || strings.Contains(r.Answer, "Zanzibar launches") || r.Confidence != 0 {
		t.Fatalf("tenant B retrieved A's document: %+v", r)
	}
	if c != "MISS" {
		t.Fatalf("tenant B got a cached answer: %s", c)
	}
	if d := ts.documents(t, b...); d.Count != 0 {
		t.Fatalf("tenant B lists A's documents: %+v", d)
	}
	// DELETE of A's docId answers exactly as for a docId that never existed, and deletes nothing.
	resp1, body1 := ts.do(t, "DELETE", "/documents/zanzibar", "", b...)
	e1 := wantError(t, resp1, body1, 404, CodeNotFound)
	resp2, body2 := ts.do(t, "DELETE", "/documents/no-such-doc", "", b...)
	e2 := wantError(t, resp2, body2, 404, CodeNotFound)
	if e1.Error.Message != e2.Error.Message {
		t.Fatalf("404 messages differ, which reveals existence: %q vs %q", e1.Error.Message, e2.Error.Message)
	}
	if d := ts.documents(t, a...); !slices.ContainsFunc(d.Documents, func(x store.Document) bool { return x.DocID == "zanzibar" }) {
		t.Fatal("tenant B's DELETE removed A's document")
	}
	// A's job is unknown to B.
	resp, body := ts.do(t, "GET", "/ingest/jobs/"+acc.JobID, "", b...)
	wantError(t, resp, body, 404, CodeNotFound)
	// Chat through local/extractive finds nothing of A's.
	_, d := ts.jsonChat(t, `{"message":"When does Project Zanzibar launch?","stream":false}`, b...)
	if strings.Contains(d.Message, "Zanzibar launches") || strings.Contains(d.Message, "[1]") {
		t.Fatalf("tenant B's chat quoted A's document: %q", d.Message)
	}
	// B re-using A's docId creates B's own document and leaves A's intact.
	ts.ragJSON(t, "POST", "/ingest", ingestBody("zanzibar", "Zanzibar is an island archipelago."), 200, nil, b...)
	if r, _ := ts.search(t, a, `{"query":"Project Zanzibar launch date"}`); len(r.Sources) == 0 || !strings.Contains(r.Sources[0].Text, "quantum") {
		t.Fatalf("A's document changed after B ingested the same docId: %+v", r.Sources)
	}
}

// docs/api.md rate limits (ours): /ingest and /search carry the headers and answer 429 past the limit.
func testRAGRateLimit(t *testing.T, ts *testServer) {
	h := hdr("r-tight")
	resp, _ := ts.do(t, "POST", "/ingest", ingestBody("a", "alpha"), h...)
	rateLimitHeadersPresent(t, resp.Header)
	resp, _ = ts.do(t, "POST", "/search", `{"query":"alpha"}`, h...)
	rateLimitHeadersPresent(t, resp.Header)
	resp, b := ts.do(t, "POST", "/search", `{"query":"alpha"}`, h...)
	wantError(t, resp, b, 429, CodeRateLimited)
	resp, b = ts.do(t, "POST", "/ingest", ingestBody("b", "beta"), h...)
	wantError(t, resp, b, 429, CodeRateLimited)
}
