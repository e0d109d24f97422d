package rag_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"

	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/metering"
	"github.com/crispy-enigma/crispy/rag"
	"github.com/crispy-enigma/crispy/rag/embedded"
	"github.com/crispy-enigma/crispy/store"
)

// rewriter is a served chat model that counts the rewrites it is asked for.
type rewriter struct{ calls atomic.Int64 }

func (r *rewriter) Complete(context.Context, gateway.ChatRequest, string) (string, gateway.Usage, string, error) {
	r.calls.Add(1)
	return "lighthouse lamp", gateway.Usage{}, "remote/chat", nil
}

func (r *rewriter) Describe(model string) (gateway.ModelInfo, error) {
	return gateway.ModelInfo{Model: model, Provider: "remote"}, nil
}

// The search rewrite goes through the one model rule: a tenant whose allow-list does not hold its
// chat model gets no rewrite (it used to get one, unmetered by the list), the others do; kb_search
// searches exactly as POST /search does, so it is rewritten too.
// newService is a Service over an embedded store and read model in a temporary directory, for
// tenants; o's Store, Catalog, Tenants and Logger are filled in, and Embedder unless set.
func newService(t *testing.T, o rag.ServiceOptions, tenants ...*config.TenantConfig) *rag.Service {
	t.Helper()
	ix, err := config.NewIndex(tenants)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var emb gateway.EmbeddingModel = gateway.NewHashEmbedder(0)
	if o.Embedder != nil {
		emb = o.Embedder
	}
	vs, err := embedded.Open(dir, embedded.Options{Dimension: emb.Dimension()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vs.Close() })
	dbs := store.OpenTenantDBs(dir)
	t.Cleanup(func() { _ = dbs.Close() })
	o.Store, o.Embedder, o.Catalog, o.Tenants, o.Logger = vs, emb, dbs, config.NewLive(ix), zerolog.Nop()
	svc, err := rag.NewService(o)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func TestSearchRewriteFollowsTheModelRule(t *testing.T) {
	parse := func(id, extra string) *config.TenantConfig {
		cfg, _, err := config.ParseTenantConfig(id+".json", []byte(fmt.Sprintf(`{
			"tenantId": %q, "accountId": "acc", "aiGatewayId": "gw",
			"aiModels": {"chat": "remote/chat", "embeddings": "local/hash-embed"},
			"vectorizeNamespace": %[1]q, "rateLimit": {"perMinute": 100, "burst": 100},
			"allowedHosts": [], "apiKeys": []%s}`, id, extra)))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	open := parse("open", `, "featureFlags": {}`)
	listed := parse("listed", `, "featureFlags": {"modelAllowList": true}, "allowedModels": ["remote/chat"]`)
	unlisted := parse("unlisted", `, "featureFlags": {"modelAllowList": true}, "allowedModels": ["remote/other"]`)
	models := &rewriter{}
	svc := newService(t, rag.ServiceOptions{
		Models: models, Select: metering.New(metering.Options{Env: config.DefaultEnv(), Logger: zerolog.Nop()}),
	}, open, listed, unlisted)
	ctx := t.Context()
	tests := []struct {
		tenant       *config.TenantConfig
		wantRewrites int64
	}{
		{open, 1},
		{listed, 1},
		{unlisted, 0},
	}
	for _, tt := range tests {
		t.Run(tt.tenant.TenantID, func(t *testing.T) {
			if _, err := svc.Ingest(ctx, tt.tenant, rag.Document{ID: "doc", Text: "The keeper lights the lighthouse lamp at dusk."}, "t"); err != nil {
				t.Fatal(err)
			}
			before := models.calls.Load()
			res, err := svc.Search(ctx, tt.tenant, rag.Query{Text: "when is the lamp lit", TopK: 3})
			if err != nil {
				t.Fatal(err)
			}
			if got := models.calls.Load() - before; got != tt.wantRewrites {
				t.Errorf("%d rewrites, want %d", got, tt.wantRewrites)
			}
			if want := map[bool]string{true: "lighthouse lamp", false: "when is the lamp lit"}[tt.wantRewrites > 0]; res.RewrittenQuery != want {
				t.Errorf("rewritten query %q, want %q", res.RewrittenQuery, want)
			}
			before = models.calls.Load()
			if _, err := svc.SearchKB(ctx, tt.tenant.TenantID, "when is the lamp lit", 3); err != nil {
				t.Fatal(err)
			}
			if got := models.calls.Load() - before; got != tt.wantRewrites {
				t.Errorf("kb_search: %d rewrites, want %d", got, tt.wantRewrites)
			}
		})
	}
	if _, err := svc.SearchKB(ctx, "nobody", "x", 3); err == nil || errors.Is(err, context.Canceled) {
		t.Errorf("kb_search for an unknown tenant: err = %v, want a refusal", err)
	}
}

// twoDocumentQuotaTenant is a tenant whose knowledge base may hold two documents.
func twoDocumentQuotaTenant(t *testing.T) *config.TenantConfig {
	t.Helper()
	cfg, _, err := config.ParseTenantConfig("acme.json", []byte(`{
		"tenantId": "acme", "accountId": "acc", "aiGatewayId": "gw",
		"aiModels": {"chat": "local/extractive", "embeddings": "local/hash-embed"},
		"vectorizeNamespace": "acme", "rateLimit": {"perMinute": 100, "burst": 100},
		"featureFlags": {}, "allowedHosts": [], "apiKeys": [], "quota": {"documents": 2}}`))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestServiceIngestEnforcesTheTenantQuota: an ingest that would pass the tenant's quota is refused
// with quota_exceeded naming the quota; re-ingesting a stored document counts only its new version.
func TestServiceIngestEnforcesTheTenantQuota(t *testing.T) {
	cfg := twoDocumentQuotaTenant(t)
	svc := newService(t, rag.ServiceOptions{}, cfg)
	ctx := t.Context()
	for _, id := range []string{"a", "b", "a"} { // the second "a" replaces the first
		if _, err := svc.Ingest(ctx, cfg, rag.Document{ID: id, Text: "stored text " + id}, "t"); err != nil {
			t.Fatalf("ingest %s: %v", id, err)
		}
	}
	_, err := svc.Ingest(ctx, cfg, rag.Document{ID: "c", Text: "one too many"}, "t")
	f := rag.Classify(err, "c")
	if !errors.Is(err, rag.ErrQuotaExceeded) || f.Code != "quota_exceeded" || f.Message != `document "c": quota exceeded: the tenant's documents quota is 2; this document would bring it to 3` {
		t.Fatalf("err %v, classified %+v", err, f)
	}
}

// TestServiceIngestBatchKeepsTheQuotaCurrent: a batch reads the catalogue once, and counts its own
// documents as they land, so the batch cannot pass the quota together.
func TestServiceIngestBatchKeepsTheQuotaCurrent(t *testing.T) {
	cfg := twoDocumentQuotaTenant(t)
	svc := newService(t, rag.ServiceOptions{}, cfg)
	var docs []rag.PendingDoc
	for _, id := range []string{"a", "a", "b", "c"} { // "a" twice: the second replaces the first
		docs = append(docs, rag.PendingDoc{Doc: rag.Document{ID: id, Text: "text of " + id}})
	}
	results, _, err := svc.IngestBatch(t.Context(), cfg, docs, "t")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range results {
		s := string(r.Status)
		if r.Error != nil {
			s += " " + r.Error.Code
		}
		got = append(got, r.DocID+" "+s)
	}
	want := []string{"a ingested", "a ingested", "b ingested", "c failed quota_exceeded"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("results %q, want %q", got, want)
	}
}
