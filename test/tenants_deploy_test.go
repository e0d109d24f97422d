package test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/test/harness"
)

// tenantFile writes <dir>/<id>/tenant.config.json: a public tenant with the given chat model and
// rate limit, so that /health (which reports the tenant's chat model) shows which config a node
// serves.
func tenantFile(t *testing.T, dir, id, chatModel, perMinute string) {
	t.Helper()
	data := `{"tenantId":"` + id + `","accountId":"a","aiGatewayId":"g",
"aiModels":{"chat":"` + chatModel + `","embeddings":"local/hash-embed"},"vectorizeNamespace":"` + id + `",
"rateLimit":{"perMinute":` + perMinute + `,"burst":50},"featureFlags":{},"allowedHosts":["` + id + `.test"],"apiKeys":[],"public":true}`
	if err := os.MkdirAll(filepath.Join(dir, id), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, id, "tenant.config.json"), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// tenantsCLI runs `crispy tenants <args>` and returns its combined output and exit code.
func tenantsCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command(crispyBin, append([]string{"tenants"}, args...)...).CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	default:
		t.Fatalf("run crispy tenants %v: %v", args, err)
		return "", -1
	}
}

// healthModel is the chat model /health reports for tenant (or the HTTP status when not 200).
func healthModel(t *testing.T, n *harness.Node, tenant string) string {
	t.Helper()
	code, body := get(t, n.URL()+"/health", "x-tenant-id: "+tenant)
	if code != 200 {
		return fmt.Sprintf("status %d", code)
	}
	data, _ := body["data"].(map[string]any)
	m, _ := data["modelId"].(string)
	return m
}

// waitModel polls until the node serves tenant with model; the limit only guards against a hang.
func waitModel(t *testing.T, n *harness.Node, tenant, model string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if healthModel(t, n, tenant) == model {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("node never served %s with %s (last: %s)\n%s", tenant, model, healthModel(t, n, tenant), n.Output())
}

// TestTenantDeployHotReload (issue 8 "Tenant deployment"): a running node picks up deployed
// configs without a restart; an invalid config is refused before it is written and the node keeps
// what it serves; rollback restores; diff is a CI gate (exit 1 on drift).
func TestTenantDeployHotReload(t *testing.T) {
	dir := t.TempDir()
	tenantFile(t, dir, "shop", "local/extractive", "100")
	natsAddr := harness.FreeAddr(t)
	n := &harness.Node{
		Bin: crispyBin, DataDir: t.TempDir(), TenantsDir: dir,
		Addr: harness.FreeAddr(t), AdminAddr: harness.FreeAddr(t),
		Args: []string{"--nats-listen", natsAddr},
	}
	n.Start(t)
	nats := []string{"--dir", dir, "--nats-url", "nats://" + natsAddr}

	if got := healthModel(t, n, "shop"); got != "local/extractive" {
		t.Fatalf("before deploy shop serves %s", got)
	}
	// A started node seeded the bucket from its dir: no drift yet.
	if out, code := tenantsCLI(t, append([]string{"diff", "--all"}, nats...)...); code != 0 {
		t.Fatalf("diff after start: exit %d\n%s", code, out)
	}

	// Change shop and add a tenant; deploy both.
	tenantFile(t, dir, "shop", "local/model-v2", "5")
	tenantFile(t, dir, "newco", "local/newco-model", "10")
	if got := healthModel(t, n, "newco"); got != "status 404" {
		t.Fatalf("newco before deploy: %s", got)
	}
	if out, code := tenantsCLI(t, append([]string{"diff", "--all"}, nats...)...); code != 1 ||
		!strings.Contains(out, "aiModels.chat: \"local/extractive\" → \"local/model-v2\"") || !strings.Contains(out, "newco: not deployed") {
		t.Fatalf("diff with local changes: exit %d\n%s", code, out)
	}
	if out, code := tenantsCLI(t, append([]string{"deploy", "--all"}, nats...)...); code != 0 {
		t.Fatalf("deploy: exit %d\n%s", code, out)
	}
	waitModel(t, n, "shop", "local/model-v2")
	waitModel(t, n, "newco", "local/newco-model")

	// An invalid config is refused before anything is written; the node keeps serving the last
	// deployed one.
	tenantFile(t, dir, "shop", "local/broken", "0")
	out, code := tenantsCLI(t, append([]string{"deploy", "shop"}, nats...)...)
	if code == 0 || !strings.Contains(out, "nothing was written") || !strings.Contains(out, "rateLimit.perMinute") {
		t.Fatalf("invalid deploy: exit %d\n%s", code, out)
	}
	hist, _ := tenantsCLI(t, "history", "shop", "--nats-url", "nats://"+natsAddr)
	if rows := strings.Count(strings.TrimSpace(hist), "\n"); rows != 2 {
		t.Fatalf("history after a refused deploy has %d revisions, want 2 (seed, deploy):\n%s", rows, hist)
	}
	if got := healthModel(t, n, "shop"); got != "local/model-v2" {
		t.Fatalf("after a refused deploy shop serves %s", got)
	}

	// Rollback restores the seeded revision, on the same process.
	if out, code := tenantsCLI(t, "rollback", "shop", "--nats-url", "nats://"+natsAddr); code != 0 {
		t.Fatalf("rollback: exit %d\n%s", code, out)
	}
	waitModel(t, n, "shop", "local/extractive")
	if !n.Running() || !strings.Contains(n.Output(), "tenants: index swapped") {
		t.Fatalf("the node restarted or never swapped its index:\n%s", n.Output())
	}
}
