package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/wire"
)

// semanticCorpus: each document is about one thing; the questions of the tests paraphrase them
// without sharing a content word.
var semanticCorpus = map[string]string{
	"caffeine": "Caffeine blocks adenosine receptors in the brain. Adenosine accumulates during waking hours " +
		"and produces drowsiness; while its receptors are occupied, fatigue is held off.",
	"volcano":    "Magma rising through the crust erupts as lava, and ash clouds can ground aircraft for days.",
	"lighthouse": docLighthouse,
	"bakery":     docBakery,
}

// paraphraseQuery shares no content word with the caffeine document.
const paraphraseQuery = "Why does an espresso keep me awake?"

type healthEmbeddings struct {
	Embeddings *wire.TenantEmbeddings `json:"embeddings"`
}

func (ts *testServer) embeddingsOf(t *testing.T, h []string) wire.TenantEmbeddings {
	t.Helper()
	var got healthEmbeddings
	ts.ragJSON(t, "GET", "/health", "", 200, &got, h...)
	if got.Embeddings == nil {
		t.Fatal("/health has no embeddings")
	}
	return *got.Embeddings
}

func (ts *testServer) ingestCorpus(t *testing.T, h []string, wantModel string) {
	t.Helper()
	for id, text := range semanticCorpus {
		var res wire.IngestItemResult
		ts.ragJSON(t, "POST", "/ingest", ingestBody(id, text), 200, &res, h...)
		if res.EmbeddingModelID != wantModel {
			t.Fatalf("ingest %s: embeddingModelId %q, want %q", id, res.EmbeddingModelID, wantModel)
		}
	}
}

func (ts *testServer) topDoc(t *testing.T, h []string, query string) string {
	t.Helper()
	var res searchResult
	ts.ragJSON(t, "POST", "/search", `{"query":`+quoteJSON(query)+`}`, 200, &res, h...)
	if len(res.Sources) == 0 {
		return ""
	}
	return res.Sources[0].DocID
}

// deployEmbeddings deploys a public tenant with the given embedding model, every other tenant gone,
// to the server and its retrieval service, as a tenants watcher does.
func (ts *testServer) deployEmbeddings(t *testing.T, id, model string) {
	t.Helper()
	raw := strings.Replace(tenantJSON(id, `, "public": true`), `"embeddings": "local/hash-embed"`, `"embeddings": "`+model+`"`, 1)
	cfg, _, err := config.ParseTenantConfig(id+".json", []byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	ix, err := config.NewIndex([]*config.TenantConfig{cfg})
	if err != nil {
		t.Fatal(err)
	}
	ts.SetTenants(ix)
	ts.rag.live.Store(ix)
}

// steppingClock is a server clock that moves on by componentsTTL at every reading, so /health never
// answers from its one-second cache and each call shows the state of that moment.
func steppingClock() func() time.Time {
	var ticks atomic.Int64
	start := time.Now()
	return func() time.Time { return start.Add(time.Duration(ticks.Add(1)) * componentsTTL) }
}

func quoteJSON(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// TestFreshNodeSearchesByMeaning: a fresh node, a tenant whose configured embedding model is not
// served here (an @cf/ model with no Cloudflare token): its documents are embedded with the built-in
// local/minilm, /health says so and why, and POST /search answers a paraphrase with the right
// document.
func TestFreshNodeSearchesByMeaning(t *testing.T) {
	fresh := strings.Replace(tenantJSON("fresh", `, "public": true`), `"embeddings": "local/hash-embed"`, `"embeddings": "@cf/baai/bge-m3"`, 1)
	ts := newTestServer(t, testServerOpts{rag: &testRAGOpts{spaces: true}, tenants: []string{fresh}, now: steppingClock()})
	h := []string{"x-tenant-id: fresh"}

	ts.ingestCorpus(t, h, "local/minilm")
	if got := ts.topDoc(t, h, paraphraseQuery); got != "caffeine" {
		t.Fatalf("search %q: first source %q, want caffeine", paraphraseQuery, got)
	}
	e := ts.embeddingsOf(t, h)
	if e.Configured != "@cf/baai/bge-m3" || e.EmbeddingModel != "local/minilm" || e.FallbackReason == "" ||
		e.ActiveIndex == nil || *e.ActiveIndex != (wire.IndexRef{Model: "local/minilm", Dimension: 384}) || e.Reindex != nil {
		t.Fatalf("/health embeddings = %+v, want @cf/baai/bge-m3 served as local/minilm (384) with a reason, no re-embedding", e)
	}
}

// TestEmbeddingModelChangeReembeds: a tenant on local/hash-embed is deployed with local/minilm. The
// next search starts a re-embedding job and is still answered from the old index, as is every
// request until the job switches (an ingest meanwhile lands in the old index, and the job carries it
// over); then the new index answers, paraphrases included.
func TestEmbeddingModelChangeReembeds(t *testing.T) {
	ts := newTestServer(t, testServerOpts{rag: &testRAGOpts{spaces: true, deferWorker: true}, now: steppingClock()})
	h := []string{"x-tenant-id: open"}
	ts.ingestCorpus(t, h, "local/hash-embed")
	old := wire.IndexRef{Model: "local/hash-embed", Dimension: 384}
	if e := ts.embeddingsOf(t, h); e.ActiveIndex == nil || *e.ActiveIndex != old || e.Reindex != nil {
		t.Fatalf("before the change: /health embeddings = %+v", e)
	}

	// The deploy: the same tenant with another embedding model.
	ts.deployEmbeddings(t, "open", "local/minilm")

	// The job is queued (its worker is not running yet); the old index serves.
	if got := ts.topDoc(t, h, "when does the keeper light the lamp"); got != "lighthouse" {
		t.Fatalf("search during the job: first source %q, want lighthouse", got)
	}
	e := ts.embeddingsOf(t, h)
	if e.EmbeddingModel != "local/minilm" || e.ActiveIndex == nil || *e.ActiveIndex != old || e.Reindex == nil ||
		e.Reindex.Phase != wire.JobQueued || e.Reindex.To.Model != "local/minilm" {
		t.Fatalf("during the job: /health embeddings = %+v, want local/hash-embed active and a queued job to local/minilm", e)
	}
	jobID := e.Reindex.JobID
	var late wire.IngestItemResult
	ts.ragJSON(t, "POST", "/ingest", ingestBody("tides", "Tides follow the moon, which orbits the earth every 27 days."), 200, &late, h...)
	if late.EmbeddingModelID != "local/hash-embed" {
		t.Fatalf("ingest during the job: embeddingModelId %q, want the active index's local/hash-embed", late.EmbeddingModelID)
	}

	ts.rag.start(t, ts.Server)
	st := ts.waitJob(t, h, jobID)
	if st.Status != wire.JobDone || st.Kind != wire.JobKindReindex || st.Reindex == nil ||
		st.Reindex.Phase != wire.JobDone || st.Reindex.Copied != len(semanticCorpus)+1 {
		t.Fatalf("re-embedding job = %+v (reindex %+v), want done with %d chunks copied", st, st.Reindex, len(semanticCorpus)+1)
	}
	e = ts.embeddingsOf(t, h)
	if e.ActiveIndex == nil || *e.ActiveIndex != (wire.IndexRef{Model: "local/minilm", Dimension: 384}) || e.Reindex != nil {
		t.Fatalf("after the job: /health embeddings = %+v, want local/minilm active", e)
	}
	if got := ts.topDoc(t, h, paraphraseQuery); got != "caffeine" {
		t.Fatalf("search %q after the switch: first source %q, want caffeine", paraphraseQuery, got)
	}
	if got := ts.topDoc(t, h, "How long does a lunar cycle around our planet take?"); got != "tides" {
		t.Fatalf("the document ingested during the job: first source %q, want tides", got)
	}
	var now wire.IngestItemResult
	ts.ragJSON(t, "POST", "/ingest", ingestBody("tides", "Tides follow the moon."), 200, &now, h...)
	if now.EmbeddingModelID != "local/minilm" {
		t.Fatalf("ingest after the switch: embeddingModelId %q, want local/minilm", now.EmbeddingModelID)
	}
}

// TestFailedReembeddingKeepsOldIndex: the tenant's new model answers with vectors of the wrong
// dimension (after a good probe), so its re-embedding job fails; nothing switches and the old index
// keeps serving.
func TestFailedReembeddingKeepsOldIndex(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Input []string `json:"input"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		dim := 3 // the probe's; every later call answers with 4
		if len(req.Input) != 1 || !strings.Contains(req.Input[0], "probe") {
			dim = 4
		}
		data := make([]map[string]any, len(req.Input))
		for i := range data {
			data[i] = map[string]any{"index": i, "embedding": make([]float32, dim)}
			data[i]["embedding"].([]float32)[0] = 1
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"data": data})
	}))
	t.Cleanup(up.Close)
	models := gateway.RouterOptions{Providers: []gateway.ProviderConfig{{Name: "bad", BaseURL: up.URL + "/v1", Embeddings: []string{"bad/embed"}}}}
	ts := newTestServer(t, testServerOpts{models: models, rag: &testRAGOpts{spaces: true}, now: steppingClock()})
	h := []string{"x-tenant-id: open"}
	ts.ingestCorpus(t, h, "local/hash-embed")

	ts.deployEmbeddings(t, "open", "bad/embed")

	if got := ts.topDoc(t, h, "when does the keeper light the lamp"); got != "lighthouse" {
		t.Fatalf("search after the change: first source %q, want lighthouse", got)
	}
	e := ts.embeddingsOf(t, h)
	if e.Reindex == nil {
		t.Fatalf("/health embeddings = %+v, want a re-embedding job", e)
	}
	st := ts.waitJob(t, h, e.Reindex.JobID)
	if st.Status != wire.JobFailed || st.Reindex == nil || st.Reindex.Phase != wire.JobFailed || st.Error == "" {
		t.Fatalf("job = %+v (reindex %+v), want failed with a reason", st, st.Reindex)
	}
	e = ts.embeddingsOf(t, h)
	if e.ActiveIndex == nil || e.ActiveIndex.Model != "local/hash-embed" || e.Reindex == nil || e.Reindex.Error == "" {
		t.Fatalf("after the failed job: /health embeddings = %+v, want local/hash-embed still active and the failure shown", e)
	}
	if got := ts.topDoc(t, h, "sourdough bread baked daily"); got != "bakery" {
		t.Fatalf("search after the failed job: first source %q, want bakery", got)
	}
}
