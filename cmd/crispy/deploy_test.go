package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/crispy-enigma/crispy/cluster/natsserver"
	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/store"
)

// deployEnv is a node's NATS as the CLI sees it: an embedded server with a client port, the
// tenants bucket and the ledger a node creates, and a tenants dir.
type deployEnv struct {
	url string
	dir string
	ts  *store.TenantStore
	js  jetstream.JetStream
}

func newDeployEnv(t *testing.T) *deployEnv {
	t.Helper()
	ns, err := natsserver.Start(natsserver.Options{StoreDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	nc, err := ns.Connect("deploy-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ts, err := store.OpenTenantStore(ctx, js, store.TenantStoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.OpenLedger(ctx, js, store.LedgerOptions{}); err != nil {
		t.Fatal(err)
	}
	return &deployEnv{url: ns.ClientURL(), dir: t.TempDir(), ts: ts, js: js}
}

// writeTenant writes <dir>/<id>/tenant.config.json.
func (e *deployEnv) writeTenant(t *testing.T, id string, perMinute string, host string, keys string) {
	t.Helper()
	data := `{"tenantId":"` + id + `","accountId":"a","aiGatewayId":"g",
"aiModels":{"chat":"local/extractive","embeddings":"local/hash-embed"},"vectorizeNamespace":"` + id + `",
"rateLimit":{"perMinute":` + perMinute + `,"burst":5},"featureFlags":{},"allowedHosts":["` + host + `"],"apiKeys":[` + keys + `]}`
	if err := os.MkdirAll(filepath.Join(e.dir, id), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.dir, id, config.TenantFileName), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// run runs `crispy tenants <args> --dir <dir> --nats-url <url>` in-process and returns stdout,
// stderr and the exit code main would use.
func (e *deployEnv) run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	args = append([]string{"tenants"}, args...)
	if args[1] != "history" && args[1] != "rollback" {
		args = append(args, "--dir", e.dir)
	}
	if args[1] != "new" {
		args = append(args, "--nats-url", e.url)
	}
	var stdout, stderr bytes.Buffer
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	err := root.ExecuteContext(context.Background())
	code := 0
	if err != nil {
		code = 1
		var coded interface{ ExitCode() int }
		if errors.As(err, &coded) {
			code = coded.ExitCode()
		}
		stderr.WriteString(err.Error())
	}
	return stdout.String(), stderr.String(), code
}

func keyList(keys ...string) string {
	var q []string
	for _, k := range keys {
		q = append(q, `"`+config.HashAPIKey(k)+`"`)
	}
	return strings.Join(q, ",")
}

func TestTenantsDiffExitCodesAndOutput(t *testing.T) {
	e := newDeployEnv(t)
	e.writeTenant(t, "acme", "60", "acme.test", keyList("ck_one"))
	e.writeTenant(t, "globex", "60", "globex.test", "")

	// Nothing deployed: drift (exit 1), each tenant "not deployed".
	out, _, code := e.run(t, "diff", "--all")
	if code != 1 || !strings.Contains(out, "acme: not deployed") || !strings.Contains(out, "globex: not deployed") {
		t.Fatalf("diff before deploy: exit %d\n%s", code, out)
	}
	if out, errOut, code := e.run(t, "deploy", "--all"); code != 0 || !strings.Contains(out, "acme: deployed revision") {
		t.Fatalf("deploy --all: exit %d\n%s%s", code, out, errOut)
	}
	out, _, code = e.run(t, "diff", "--all")
	if code != 0 || !strings.Contains(out, "acme: no drift") || !strings.Contains(out, "globex: no drift") {
		t.Fatalf("diff after deploy: exit %d\n%s", code, out)
	}

	// Local edits: a rate limit, a host and a rotated key show as field paths, keys as digests only.
	e.writeTenant(t, "acme", "10", "www.acme.test", keyList("ck_two"))
	out, _, code = e.run(t, "diff", "acme")
	if code != 1 {
		t.Fatalf("diff with drift: exit %d, want 1\n%s", code, out)
	}
	for _, want := range []string{
		"acme: drift (deployed revision 1",
		"  allowedHosts: [\"acme.test\"] → [\"www.acme.test\"]",
		"  apiKeys: + sha256:" + config.HashAPIKey("ck_two")[7:19] + "…",
		"  apiKeys: - sha256:" + config.HashAPIKey("ck_one")[7:19] + "…",
		"  rateLimit.perMinute: 60 → 10",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("diff output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "ck_two") || strings.Contains(out, config.HashAPIKey("ck_two")) {
		t.Errorf("diff shows a key or a whole digest:\n%s", out)
	}
	// Only the named tenant is compared.
	if strings.Contains(out, "globex") {
		t.Errorf("diff acme reported globex:\n%s", out)
	}

	// A deployed tenant missing from the dir is drift for --all.
	if err := os.RemoveAll(filepath.Join(e.dir, "globex")); err != nil {
		t.Fatal(err)
	}
	out, _, _ = e.run(t, "diff", "--all")
	if !strings.Contains(out, "globex: deployed (revision 2") {
		t.Errorf("diff --all does not report the deployed-only tenant:\n%s", out)
	}

	// Errors exit 2: an invalid local file, a missing tenant folder, no NATS, bad arguments.
	if err := os.WriteFile(filepath.Join(e.dir, "acme", config.TenantFileName), []byte(`{"tenantId":"acme"`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"diff", "acme"}, {"diff", "nosuch"}, {"diff"}, {"diff", "--all", "acme"}} {
		if _, errOut, code := e.run(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, errOut)
		}
	}
	e.url = "nats://127.0.0.1:1"
	e.writeTenant(t, "acme", "10", "www.acme.test", "")
	if _, errOut, code := e.run(t, "diff", "acme"); code != 2 || !strings.Contains(errOut, "--nats-listen") {
		t.Errorf("diff without NATS: exit %d, want 2 and a hint (%s)", code, errOut)
	}
}

func TestTenantsDeployRefusesBeforeWriting(t *testing.T) {
	ctx := context.Background()
	e := newDeployEnv(t)
	e.writeTenant(t, "acme", "60", "acme.test", keyList("ck_one"))
	if _, errOut, code := e.run(t, "deploy", "acme"); code != 0 {
		t.Fatalf("deploy: exit %d %s", code, errOut)
	}
	tests := []struct {
		name  string
		write func()
		args  []string
		want  string
	}{
		{"invalid config", func() { e.writeTenant(t, "bad", "0", "bad.test", "") }, []string{"deploy", "bad"}, "rateLimit.perMinute"},
		{"host deployed by another tenant", func() { e.writeTenant(t, "thief", "5", "acme.test", "") }, []string{"deploy", "thief"}, `host "acme.test" is claimed by tenants`},
		{"key deployed by another tenant", func() { e.writeTenant(t, "thief", "5", "thief.test", keyList("ck_one")) }, []string{"deploy", "thief"}, "is claimed by tenants"},
		{"folder name differs from tenantId", func() {
			e.writeTenant(t, "other", "5", "other.test", "")
			_ = os.Rename(filepath.Join(e.dir, "other"), filepath.Join(e.dir, "renamed"))
		}, []string{"deploy", "renamed"}, "must equal its folder name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.write()
			_, errOut, code := e.run(t, tt.args...)
			if code == 0 || !strings.Contains(errOut, "nothing was written") || !strings.Contains(errOut, tt.want) {
				t.Fatalf("exit %d, stderr:\n%s\nwant a refusal naming %q", code, errOut, tt.want)
			}
			live, err := e.ts.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(live) != 1 || live[0].TenantID != "acme" || live[0].Revision != 1 {
				t.Fatalf("a refused deploy wrote to the bucket: %+v", live)
			}
		})
	}
}

func TestTenantsDeployRollbackHistoryAndAudit(t *testing.T) {
	ctx := context.Background()
	e := newDeployEnv(t)
	e.writeTenant(t, "acme", "60", "acme.test", "")
	e.run(t, "deploy", "acme")
	// Redeploying the same config writes nothing.
	if out, _, _ := e.run(t, "deploy", "acme"); !strings.Contains(out, "acme: unchanged (revision 1") {
		t.Fatalf("redeploy: %s", out)
	}
	e.writeTenant(t, "acme", "10", "acme.test", "")
	e.run(t, "deploy", "acme")

	out, errOut, code := e.run(t, "rollback", "acme")
	if code != 0 || !strings.Contains(out, "acme: rolled back to revision 1 as revision 3") {
		t.Fatalf("rollback: exit %d\n%s%s", code, out, errOut)
	}
	cur, err := e.ts.Get(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if cfg, _ := cur.Config(); cfg == nil || cfg.RateLimit.PerMinute != 60 {
		t.Fatalf("after rollback the deployed config is %s", cur.Value)
	}
	// --to names any kept revision; one that is not kept is refused.
	if out, errOut, code := e.run(t, "rollback", "acme", "--to", "2"); code != 0 || !strings.Contains(out, "revision 2 as revision 4") {
		t.Fatalf("rollback --to 2: exit %d %s%s", code, out, errOut)
	}
	if _, errOut, code := e.run(t, "rollback", "acme", "--to", "99"); code == 0 || !strings.Contains(errOut, "not kept") {
		t.Fatalf("rollback --to 99: exit %d %s", code, errOut)
	}

	out, _, code = e.run(t, "history", "acme")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 5 || !strings.HasPrefix(lines[0], "REVISION") {
		t.Fatalf("history: exit %d\n%s", code, out)
	}
	if !strings.Contains(lines[3], "rollback to 1") || !strings.Contains(lines[4], "rollback to 2") || !strings.Contains(lines[4], "(current)") {
		t.Errorf("history rows:\n%s", out)
	}
	if d := cur.ShortDigest(); !strings.Contains(lines[1], d) || !strings.Contains(lines[3], d) {
		t.Errorf("revisions 1 and 3 should show digest %s:\n%s", d, out)
	}

	// Two deploys and two rollbacks are on the ledger as audit events.
	st, err := e.js.Stream(ctx, store.LedgerStream)
	if err != nil {
		t.Fatal(err)
	}
	for _, subj := range []string{"ledger.acme." + store.KindTenantDeployed, "ledger.acme." + store.KindTenantRolledBack} {
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(subj))
		if err != nil {
			t.Fatal(err)
		}
		if n := info.State.Subjects[subj]; n != 2 {
			t.Errorf("%s: %d events, want 2", subj, n)
		}
	}
}

func TestTenantsNewScaffoldsAValidConfigOnce(t *testing.T) {
	e := newDeployEnv(t)
	out, errOut, code := e.run(t, "new", "fresh-co")
	if code != 0 {
		t.Fatalf("new: exit %d %s", code, errOut)
	}
	key := ""
	for _, l := range strings.Split(out, "\n") {
		if s := strings.TrimSpace(l); strings.HasPrefix(s, config.APIKeyPrefix) {
			key = s
		}
	}
	file := filepath.Join(e.dir, "fresh-co", config.TenantFileName)
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _, err := config.ParseTenantConfig(file, data)
	if err != nil {
		t.Fatalf("scaffold does not validate: %v", err)
	}
	if key == "" || len(cfg.APIKeys) != 1 || cfg.APIKeys[0] != config.HashAPIKey(key) || strings.Contains(string(data), key) {
		t.Fatalf("the printed key must match the stored digest and not be stored itself:\n%s\n%s", out, data)
	}
	if _, errOut, code := e.run(t, "new", "fresh-co"); code == 0 || !strings.Contains(errOut, "not overwriting") {
		t.Fatalf("second new: exit %d %s", code, errOut)
	}
	after, _ := os.ReadFile(file)
	if !bytes.Equal(after, data) {
		t.Fatal("second new changed the file")
	}
}
