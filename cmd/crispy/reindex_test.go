package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/api"
	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/rag"
	"github.com/crispy-enigma/crispy/rag/embedded"
	"github.com/crispy-enigma/crispy/store"
	"github.com/crispy-enigma/crispy/test/fixture"
)

func reindexTenant(t *testing.T, embeddings string) *config.Index {
	t.Helper()
	cfg, _, err := config.ParseTenantConfig("kb.json", []byte(`{
		"tenantId": "kb", "accountId": "acc", "aiGatewayId": "gw",
		"aiModels": {"chat": "local/extractive", "embeddings": "`+embeddings+`"},
		"vectorizeNamespace": "kb", "rateLimit": {"perMinute": 1000, "burst": 1000},
		"featureFlags": {}, "allowedHosts": [], "apiKeys": []}`))
	if err != nil {
		t.Fatal(err)
	}
	ix, err := config.NewIndex([]*config.TenantConfig{cfg})
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

// crispy reindex: a tenant's documents, embedded with local/hash-embed, are re-embedded with
// local/minilm through the operator route, which the CLI follows to the end; the route needs the
// operator token and names a tenant that exists.
func TestReindexCommand(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	js := fixture.JetStream(t)
	res, err := store.Open(ctx, js, store.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	indexes := embedded.NewIndexes(dir, embedded.IndexesOptions{LegacyModel: gateway.HashEmbedID, LegacyDimension: gateway.DefaultHashEmbedDimension})
	t.Cleanup(func() { _ = indexes.Close() })
	dbs := store.OpenTenantDBs(dir)
	t.Cleanup(func() { _ = dbs.Close() })
	spaces, err := rag.NewSpaces(rag.SpacesOptions{
		Indexes: indexes, Actives: rag.NewActiveIndexes(res.RAGIndex, store.ErrNotFound), Embedders: gateway.NewRouter(gateway.RouterOptions{}),
	})
	if err != nil {
		t.Fatal(err)
	}
	live := config.NewLive(reindexTenant(t, gateway.HashEmbedID))
	svc, err := rag.NewService(rag.ServiceOptions{Spaces: spaces, Catalog: dbs, Tenants: live, Jobs: res.Jobs, Cache: res.Cache})
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := live.ByID("kb")
	for _, d := range []rag.Document{
		{ID: "caffeine", Text: "Caffeine blocks adenosine receptors, which holds off drowsiness."},
		{ID: "volcano", Text: "Magma rising through the crust erupts as lava."},
	} {
		if _, err := svc.Ingest(ctx, kb, d, ""); err != nil {
			t.Fatal(err)
		}
	}
	live.Store(reindexTenant(t, gateway.DefaultEmbeddingModel))
	stop, err := svc.StartWorker(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	admin := httptest.NewServer(api.ReindexHandler(svc, "s3cret"))
	t.Cleanup(admin.Close)

	o := reindexOptions{Admin: admin.URL, Token: "s3cret", Tenant: "kb", NoBar: true, Poll: 10 * time.Millisecond, Client: admin.Client()}
	var out, errOut bytes.Buffer
	if err := runReindex(ctx, o, &out, &errOut); err != nil {
		t.Fatalf("reindex: %v (%s)", err, errOut.String())
	}
	if want := "2 chunks re-embedded with local/minilm (dimension 384)"; !strings.Contains(out.String(), want) {
		t.Fatalf("reindex printed %q, want %q", out.String(), want)
	}
	if e := svc.EmbeddingStatus(ctx, kb); e.ActiveIndex == nil || e.ActiveIndex.Model != gateway.DefaultEmbeddingModel {
		t.Fatalf("after reindex: %+v, want local/minilm active", e)
	}
	out.Reset()
	if err := runReindex(ctx, o, &out, &errOut); err != nil || !strings.Contains(out.String(), "nothing to do") {
		t.Fatalf("second reindex = %v, %q; want nothing to do", err, out.String())
	}

	tests := []struct {
		name, token, tenant string
		want                int
	}{
		{"no token", "", "kb", http.StatusUnauthorized},
		{"unknown tenant", "s3cret", "nobody", http.StatusNotFound},
		{"no tenant", "s3cret", "", http.StatusBadRequest},
	}
	for _, tt := range tests {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, admin.URL+"/admin/reindex?tenant="+tt.tenant, nil)
		if tt.token != "" {
			req.Header.Set("Authorization", "Bearer "+tt.token)
		}
		resp, err := admin.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s: HTTP %d, want %d", tt.name, resp.StatusCode, tt.want)
		}
	}
}
