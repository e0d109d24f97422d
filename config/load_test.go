package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
)

func configFile(t *testing.T, id string, mutate func(m map[string]any)) *fstest.MapFile {
	t.Helper()
	m := baseConfig()
	m["tenantId"] = id
	m["vectorizeNamespace"] = id
	m["allowedHosts"] = []any{id + ".example.com"}
	if mutate != nil {
		mutate(m)
	}
	return &fstest.MapFile{Data: mustJSON(t, m)}
}

func TestLoadTenants(t *testing.T) {
	fsys := fstest.MapFS{
		"b/tenant.config.json":    configFile(t, "b", func(m map[string]any) { m["apiKeys"] = []any{"ck_plain"} }),
		"a/tenant.config.json":    configFile(t, "a", nil),
		".git/tenant.config.json": {Data: []byte("not json")}, // hidden folders skipped
		"README.md":               {Data: []byte("# tenants")},
		"a/notes.txt":             {Data: []byte("ignored")},
	}
	cfgs, warns, err := LoadTenants(fsys)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range cfgs {
		ids = append(ids, c.TenantID)
	}
	if diff := cmp.Diff([]string{"a", "b"}, ids); diff != "" {
		t.Errorf("ids (-want +got):\n%s", diff)
	}
	if len(warns) != 1 || !strings.HasPrefix(warns[0], "b/tenant.config.json: apiKeys[0]: tenant \"b\" has a plaintext API key") {
		t.Errorf("warnings = %q", warns)
	}
}

func TestLoadTenantsErrors(t *testing.T) {
	tests := []struct {
		name string
		fsys fstest.MapFS
		want []string
	}{
		{"folder name differs from tenantId", fstest.MapFS{
			"acme/tenant.config.json": configFile(t, "other", nil),
		}, []string{`acme/tenant.config.json: tenantId: must equal its folder name "acme" (got "other")`}},
		{"folder without config", fstest.MapFS{
			"a/tenant.config.json": configFile(t, "a", nil),
			"b/other.json":         {Data: []byte("{}")},
		}, []string{"b/tenant.config.json: open b/tenant.config.json: file does not exist"}},
		{"no tenants", fstest.MapFS{"README.md": {Data: []byte("x")}}, []string{".: no <tenant>/tenant.config.json found"}},
		{"every file's errors", fstest.MapFS{
			"a/tenant.config.json": configFile(t, "a", func(m map[string]any) { sub(m, "rateLimit")["burst"] = 0 }),
			"b/tenant.config.json": {Data: []byte("{")},
		}, []string{"a/tenant.config.json: rateLimit.burst: must be a positive integer (got 0)", "b/tenant.config.json: invalid JSON"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfgs, _, err := LoadTenants(tt.fsys)
			if err == nil {
				t.Fatalf("loaded %d tenants, want an error", len(cfgs))
			}
			if cfgs != nil {
				t.Error("loading is all-or-nothing, but configs were returned")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func writeTenant(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name, TenantFileName), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLoadTenantsDirMissing(t *testing.T) {
	_, _, err := LoadTenantsDir(filepath.Join(t.TempDir(), "nope"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want fs.ErrNotExist (the caller falls back to the embedded defaults)", err)
	}
}

func TestValidateDir(t *testing.T) {
	dir := t.TempDir()
	writeTenant(t, dir, "a", configFile(t, "a", func(m map[string]any) { m["allowedHosts"] = []any{"shared.com"} }).Data)
	writeTenant(t, dir, "b", configFile(t, "b", func(m map[string]any) { m["allowedHosts"] = []any{"shared.com"} }).Data)
	writeTenant(t, dir, "c", configFile(t, "c", func(m map[string]any) {
		m["tenantId"] = "C"
		sub(m, "rateLimit")["perMinute"] = -1
	}).Data)

	errs := ValidateDir(dir)
	var got []string
	for _, err := range errs {
		got = append(got, err.Error())
	}
	cFile := filepath.Join(dir, "c", TenantFileName)
	want := []string{
		cFile + `: tenantId: must match ^[a-z0-9-]{1,63}$ (got "C"): tenant IDs are used in NATS subjects, KV keys and file paths; the original allowed more`,
		cFile + ": rateLimit.perMinute: must be a positive integer (got -1)",
		`host "shared.com" is claimed by tenants "a" and "b"`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ValidateDir (-want +got):\n%s", diff)
	}

	if errs := ValidateDir(filepath.Join("testdata", "original-tenants")); len(errs) != 0 {
		t.Errorf("original tenants: %v", errs)
	}
	if errs := ValidateDir(filepath.Join(dir, "missing")); len(errs) != 1 {
		t.Errorf("missing dir: %v", errs)
	}
}

// TestValidateDirReportsEveryErrorAtOnce: "tenants validate" reported errors in waves: a
// duplicate field hid the unknown fields and wrong types, those hid the semantic rules, and a
// file with any error was left out of the folder-name rule and the conflict checks. One run now
// reports them all.
func TestValidateDirReportsEveryErrorAtOnce(t *testing.T) {
	dir := t.TempDir()
	writeTenant(t, dir, "a", configFile(t, "a", func(m map[string]any) { m["allowedHosts"] = []any{"shared.com"} }).Data)
	b := string(configFile(t, "b", func(m map[string]any) {
		m["allowedHosts"] = []any{"shared.com"}
		m["colour"] = "blue"                          // unknown field
		sub(m, "rateLimit")["perMinute"] = "60"       // wrong type
		sub(m, "rateLimit")["burst"] = -1             // semantic
		m["tokenBudget"] = map[string]any{"daily": 0} // semantic
	}).Data)
	b = strings.Replace(b, `"accountId":`, `"accountId":"dup","accountId":`, 1) // duplicate field
	writeTenant(t, dir, "b", []byte(b))
	writeTenant(t, dir, "c", configFile(t, "not-c", func(m map[string]any) { m["vectorizeNamespace"] = "bad ns" }).Data)

	var got []string
	for _, err := range ValidateDir(dir) {
		got = append(got, err.Error())
	}
	bFile, cFile := filepath.Join(dir, "b", TenantFileName), filepath.Join(dir, "c", TenantFileName)
	want := []string{
		bFile + ": accountId: duplicate field",
		bFile + ": colour: unknown field (tenant configs are decoded strictly; see README.md, Tenant config)",
		bFile + `: rateLimit.perMinute: must be an integer (got string "60")`,
		bFile + ": rateLimit.burst: must be a positive integer (got -1)",
		bFile + ": tokenBudget.daily: must be a positive integer (got 0)",
		cFile + `: vectorizeNamespace: must be 1-64 letters, digits, '-' or '_' (got "bad ns"): it names the tenant's vector partition`,
		cFile + `: tenantId: must equal its folder name "c" (got "not-c")`,
		`host "shared.com" is claimed by tenants "a" and "b"`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ValidateDir (-want +got):\n%s", diff)
	}
}
