package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzParseTenantConfig: ParseTenantConfig never panics, returns a config xor an error, and a
// config that parses re-marshals to JSON that parses to the same config (defaults and
// normalization are idempotent).
func FuzzParseTenantConfig(f *testing.F) {
	for _, name := range []string{"mrrainbowsmoke", "rainbowsmokeofficial"} {
		data, err := os.ReadFile(filepath.Join("testdata", "original-tenants", name, TenantFileName))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	full := baseConfig()
	full["apiKeys"] = []any{"ck_plain", "SHA256:" + strings.Repeat("Ab", 32)}
	full["allowedHosts"] = []any{"A.example.com.", "[::1]", "10.0.0.1"}
	full["tokenBudget"] = map[string]any{"daily": 1, "monthly": 2}
	full["cache"] = map[string]any{"ttlSeconds": 5}
	full["public"] = true
	full["allowedModels"] = []any{}
	full["featureFlags"] = map[string]any{"modelAllowList": true, "<b>": false}
	sub(full, "rateLimit")["windowSec"] = 7
	sub(full, "rateLimit")["tenantPerMinute"] = 3
	full["quota"] = map[string]any{"documents": 1, "storedBytes": 9}
	f.Add(mustJSON(f, full))
	f.Add(mustJSON(f, baseConfig()))
	for _, s := range []string{"", "{}", "null", "[]", `{"tenantId":1}`, `{"a":1} {}`, `{"tenantId":"a","tenantId":"b"}`, "\xff",
		`{"tenantId":"a","tenantId":7,"rateLimit":{"perMinute":"x","burst":-1},"quota":{"chunks":0},"x":1}`} {
		f.Add([]byte(s))
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, _, err := ParseTenantConfig("fuzz.json", data)
		if (cfg == nil) == (err == nil) {
			t.Fatalf("config %v and error %v: want exactly one", cfg, err)
		}
		if err != nil {
			return
		}
		again, err := json.Marshal(cfg)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		cfg2, _, err := ParseTenantConfig("fuzz.json", again)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", again, err)
		}
		if diff := cmp.Diff(cfg, cfg2); diff != "" {
			t.Fatalf("re-parse differs (-first +second):\n%s", diff)
		}
		if _, err := NewIndex([]*TenantConfig{cfg}); err != nil {
			t.Fatalf("a parsed config does not index: %v", err)
		}
	})
}

// FuzzResolve: Resolve never panics, and a non-empty (trimmed) header always wins.
func FuzzResolve(f *testing.F) {
	ix := testIndex(f)
	f.Add("", "acme.example.com:8787", "")
	f.Add("acme", "beta.example.com", betaKey)
	f.Add(" ", "[2001:db8::1]:1", "")
	f.Add("", "[", acmeKey)
	f.Add("", "a:b:c", "")
	f.Add("\t\n", "ACME.EXAMPLE.COM.", "ck_x")
	f.Fuzz(func(t *testing.T, header, host, key string) {
		r := ix.Resolve(ResolveInput{TenantHeader: header, Host: host, APIKey: key})
		if h := strings.TrimSpace(header); h != "" {
			if r.Source != SourceHeader || r.TenantID != h {
				t.Fatalf("header %q: got %+v", header, r)
			}
			return
		}
		switch r.Source {
		case "":
			if r.TenantID != "" {
				t.Fatalf("no source but tenant %q", r.TenantID)
			}
		case SourceHost, SourceAPIKey:
			if _, ok := ix.ByID(r.TenantID); !ok {
				t.Fatalf("resolved unknown tenant %+v", r)
			}
		default:
			t.Fatalf("unexpected source %+v", r)
		}
	})
}
