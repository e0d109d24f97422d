package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/crispy-enigma/crispy/api"
	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/metering"
	"github.com/crispy-enigma/crispy/rag"
	"github.com/crispy-enigma/crispy/rag/embedded"
	"github.com/crispy-enigma/crispy/store"
	"github.com/crispy-enigma/crispy/test/fixture"
)

const cliTestKey = "ck_cli_test_key"

// startIngestServer runs the real API with RAG over an embedded store and the real rate-limiter
// grain, for the CLI to talk to over HTTP.
func startIngestServer(t *testing.T) string {
	t.Helper()
	cfg, _, err := config.ParseTenantConfig("kb.json", []byte(`{
		"tenantId": "kb", "accountId": "acc", "aiGatewayId": "gw",
		"aiModels": {"chat": "local/extractive", "embeddings": "local/hash-embed"},
		"vectorizeNamespace": "kb", "rateLimit": {"perMinute": 1000, "burst": 1000},
		"featureFlags": {}, "allowedHosts": [], "apiKeys": ["`+config.HashAPIKey(cliTestKey)+`"]}`))
	if err != nil {
		t.Fatal(err)
	}
	ix, err := config.NewIndex([]*config.TenantConfig{cfg})
	if err != nil {
		t.Fatal(err)
	}
	grains := fixture.Grains(t, fixture.JetStream(t))

	dir := t.TempDir()
	emb := gateway.NewHashEmbedder(0)
	vs, err := embedded.Open(dir, embedded.Options{Dimension: emb.Dimension()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vs.Close() })
	dbs := store.OpenTenantDBs(dir)
	t.Cleanup(func() { _ = dbs.Close() })
	env := config.DefaultEnv()
	retrieval, err := rag.NewService(rag.ServiceOptions{Store: vs, Embedder: emb, Catalog: dbs, Tenants: config.NewLive(ix)})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.New(api.Deps{
		Env: env, Tenants: ix, Logger: zerolog.Nop(),
		Meter: metering.New(metering.Options{Env: env, Limiter: grains}),
		RAG:   &api.RAGDeps{Service: retrieval},
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return hs.URL
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestIngestCommand(t *testing.T) {
	url := startIngestServer(t)
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "guide", "install.md"), "# Install\n\nRun the installer and accept the licence.\n")
	writeFile(t, filepath.Join(root, "guide", "faq.html"), "<html><body><h1>FAQ</h1><p>Reset your password from the profile page.</p></body></html>")
	writeFile(t, filepath.Join(root, "notes.txt"), "Plain notes about the release train.")
	writeFile(t, filepath.Join(root, "data.json"), `{"product":"widget","colour":"blue"}`)
	writeFile(t, filepath.Join(root, "image.png"), "not picked up by the walk")
	writeFile(t, filepath.Join(root, ".hidden", "secret.md"), "# hidden")

	t.Run("folder with a progress bar", func(t *testing.T) {
		var out, errOut bytes.Buffer
		err := runIngest(context.Background(), ingestOptions{Server: url, APIKey: cliTestKey}, []string{root}, &out, &errOut)
		if err != nil {
			t.Fatalf("ingest: %v\nstdout: %s\nstderr: %s", err, out.String(), errOut.String())
		}
		if !strings.Contains(out.String(), "ingested 4 of 4 files") || !strings.Contains(errOut.String(), "ingesting") {
			t.Fatalf("summary/progress missing:\nstdout: %s\nstderr: %s", out.String(), errOut.String())
		}
		ids := listDocIDs(t, url)
		want := []string{"data.json", "guide.faq.html", "guide.install.md", "notes.txt"}
		if !slices.Equal(ids, want) {
			t.Fatalf("documents = %v, want %v (walk by extension, hidden skipped, docId from the relative path)", ids, want)
		}
	})

	t.Run("a failing file gives a non-zero exit and names it", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "broken.pdf")
		writeFile(t, bad, "%PDF-1.4 this is not really a pdf")
		good := filepath.Join(root, "notes.txt")
		var out, errOut bytes.Buffer
		err := runIngest(context.Background(), ingestOptions{Server: url, APIKey: cliTestKey, NoBar: true}, []string{good, bad}, &out, &errOut)
		if err == nil {
			t.Fatalf("want an error; stdout: %s", out.String())
		}
		if !strings.Contains(out.String(), "failed: "+bad) || !strings.Contains(out.String(), "ingested 1 of 2 files") {
			t.Fatalf("summary = %s", out.String())
		}
		if !strings.Contains(errOut.String(), "ok   "+good) {
			t.Fatalf("per-file lines without a bar: %s", errOut.String())
		}
	})

	t.Run("the cobra command exits non-zero on a wrong key", func(t *testing.T) {
		cmd := newRootCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs([]string{"ingest", "--server", url, "--tenant", "kb", "--api-key", "ck_wrong", filepath.Join(root, "notes.txt")})
		err := cmd.Execute()
		if err == nil || !strings.Contains(out.String(), "unauthorized") {
			t.Fatalf("err = %v, output %s", err, out.String())
		}
	})
}

func listDocIDs(t *testing.T, url string) []string {
	t.Helper()
	req, _ := http.NewRequest("GET", url+"/documents", nil)
	req.Header.Set("x-api-key", cliTestKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var env struct {
		Data struct {
			Documents []store.Document `json:"documents"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, d := range env.Data.Documents {
		ids = append(ids, d.DocID)
	}
	slices.Sort(ids)
	return ids
}
