package test

import (
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/test/harness"
)

// TestTenantDeployCluster: three nodes seed the tenants bucket from their dir once (the three seeds
// race into one revision), a deploy through one node's NATS reaches every node without a restart,
// and a rollback through another node's NATS restores it everywhere.
func TestTenantDeployCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	dir := t.TempDir()
	tenantFile(t, dir, "shop", "local/extractive", "100")
	c := harness.NewCluster(t, harness.ClusterOptions{Bin: crispyBin, TenantsDir: dir, Name: "deploytest"})
	natsAddrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		natsAddrs[i] = harness.FreeAddr(t)
		n.Args = append(n.Args, "--nats-listen", natsAddrs[i])
	}
	c.Start(t)

	hist, code := tenantsCLI(t, "history", "shop", "--nats-url", "nats://"+natsAddrs[2])
	if rows := strings.Count(strings.TrimSpace(hist), "\n"); code != 0 || rows != 1 || !strings.Contains(hist, "seed") {
		t.Fatalf("after three nodes started, shop's history (want one seed revision):\n%s", hist)
	}

	tenantFile(t, dir, "shop", "local/model-v2", "5")
	if out, code := tenantsCLI(t, "deploy", "shop", "--dir", dir, "--nats-url", "nats://"+natsAddrs[0]); code != 0 {
		t.Fatalf("deploy: exit %d\n%s", code, out)
	}
	for _, n := range c.Nodes {
		waitModel(t, n, "shop", "local/model-v2")
	}
	if out, code := tenantsCLI(t, "rollback", "shop", "--nats-url", "nats://"+natsAddrs[1]); code != 0 {
		t.Fatalf("rollback: exit %d\n%s", code, out)
	}
	for _, n := range c.Nodes {
		waitModel(t, n, "shop", "local/extractive")
	}
	for i, n := range c.Nodes {
		if !n.Running() {
			t.Errorf("node %d stopped", i)
		}
	}
}
