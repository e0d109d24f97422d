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
	ix, err := config.NewIndex([]*config.TenantConfig{open, listed, unlisted})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	emb := gateway.NewHashEmbedder(0)
	vs, err := embedded.Open(dir, embedded.Options{Dimension: emb.Dimension()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vs.Close() })
	dbs := store.OpenTenantDBs(dir)
	t.Cleanup(func() { _ = dbs.Close() })
	models := &rewriter{}
	svc, err := rag.NewService(rag.ServiceOptions{
		Store: vs, Embedder: emb, Catalog: dbs, Tenants: config.NewLive(ix), Models: models,
		Select: metering.New(metering.Options{Env: config.DefaultEnv(), Logger: zerolog.Nop()}), Logger: zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
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
