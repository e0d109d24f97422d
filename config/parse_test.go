package config

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const testFile = "tenants/acme/tenant.config.json"

// baseConfig is a valid config with every required field; cases mutate a fresh copy.
func baseConfig() map[string]any {
	return map[string]any{
		"tenantId":           "acme",
		"accountId":          "acct-1",
		"aiGatewayId":        "gw",
		"aiModels":           map[string]any{"chat": "@cf/chat", "embeddings": "@cf/embed"},
		"vectorizeNamespace": "acme",
		"rateLimit":          map[string]any{"perMinute": 60, "burst": 20},
		"featureFlags":       map[string]any{},
		"allowedHosts":       []any{"acme.example.com"},
		"apiKeys":            []any{},
	}
}

func sub(m map[string]any, key string) map[string]any { return m[key].(map[string]any) }

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseTenantConfigRejects(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(m map[string]any) // applied to baseConfig
		raw    string                 // used instead of baseConfig when set
		want   []string               // fragments, each expected in the error
	}{
		// Documents.
		{name: "syntax error", raw: "{\n  \"tenantId\": ,\n}", want: []string{testFile + ": invalid JSON: line 2, column"}},
		{name: "empty file", raw: "", want: []string{testFile + ": invalid JSON: empty document"}},
		{name: "not an object", raw: `[]`, want: []string{testFile + ": must be a JSON object (got array)"}},
		{name: "trailing data", raw: `{"tenantId":"a"} {}`, want: []string{testFile + ": unexpected data after the JSON object"}},
		{name: "deep nesting", raw: `{"featureFlags":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, want: []string{testFile + ": invalid JSON: nested deeper than 32 levels"}},
		// Strictness.
		{name: "duplicate field", raw: `{"tenantId":"a","tenantId":"b"}`, want: []string{testFile + ": tenantId: duplicate field"}},
		{name: "duplicate nested field", raw: `{"tokenBudget":{"daily":-5},"tokenBudget":{"monthly":5}}`, want: []string{"tokenBudget: duplicate field"}},
		{name: "unknown top-level field", mutate: func(m map[string]any) { m["tenantID"] = "x" }, want: []string{testFile + ": tenantID: unknown field"}},
		{name: "unknown nested field", mutate: func(m map[string]any) { sub(m, "rateLimit")["perHour"] = 1 }, want: []string{"rateLimit.perHour: unknown field"}},
		// Required fields.
		{name: "missing tenantId", mutate: func(m map[string]any) { delete(m, "tenantId") }, want: []string{testFile + ": tenantId: required field is missing"}},
		{name: "missing aiModels.embeddings", mutate: func(m map[string]any) { delete(sub(m, "aiModels"), "embeddings") }, want: []string{"aiModels.embeddings: required field is missing"}},
		{name: "missing rateLimit.burst", mutate: func(m map[string]any) { delete(sub(m, "rateLimit"), "burst") }, want: []string{"rateLimit.burst: required field is missing"}},
		{name: "missing featureFlags", mutate: func(m map[string]any) { delete(m, "featureFlags") }, want: []string{"featureFlags: required field is missing"}},
		{name: "missing allowedHosts", mutate: func(m map[string]any) { delete(m, "allowedHosts") }, want: []string{"allowedHosts: required field is missing"}},
		{name: "missing apiKeys", mutate: func(m map[string]any) { delete(m, "apiKeys") }, want: []string{"apiKeys: required field is missing"}},
		{name: "null apiKeys", mutate: func(m map[string]any) { m["apiKeys"] = nil }, want: []string{"apiKeys: must be an array (got null)"}},
		{name: "empty accountId", mutate: func(m map[string]any) { m["accountId"] = " " }, want: []string{"accountId: must be a non-empty string"}},
		{name: "empty aiGatewayId", mutate: func(m map[string]any) { m["aiGatewayId"] = "" }, want: []string{"aiGatewayId: must be a non-empty string"}},
		{name: "empty chat model", mutate: func(m map[string]any) { sub(m, "aiModels")["chat"] = "" }, want: []string{"aiModels.chat: must be a non-empty string"}},
		{name: "empty fallbackChat when present", mutate: func(m map[string]any) { sub(m, "aiModels")["fallbackChat"] = "" }, want: []string{"aiModels.fallbackChat: must be a non-empty string"}},
		// Types.
		{name: "number as string", mutate: func(m map[string]any) { sub(m, "rateLimit")["perMinute"] = "60" }, want: []string{`rateLimit.perMinute: must be an integer (got string "60")`}},
		{name: "fractional number", mutate: func(m map[string]any) { sub(m, "rateLimit")["burst"] = 1.5 }, want: []string{"rateLimit.burst: must be an integer within 64 bits (got 1.5)"}},
		{name: "string as number", mutate: func(m map[string]any) { m["tenantId"] = 7 }, want: []string{"tenantId: must be a string (got number 7)"}},
		{name: "flag not a boolean", mutate: func(m map[string]any) { m["featureFlags"] = map[string]any{"tools_enabled": "yes"} }, want: []string{`featureFlags.tools_enabled: must be a boolean (got string "yes")`}},
		{name: "host not a string", mutate: func(m map[string]any) { m["allowedHosts"] = []any{"a.com", 3} }, want: []string{"allowedHosts[1]: must be a string (got number 3)"}},
		{name: "aiModels not an object", mutate: func(m map[string]any) { m["aiModels"] = "@cf/chat" }, want: []string{"aiModels: must be an object (got string"}},
		{name: "public not a boolean", mutate: func(m map[string]any) { m["public"] = "true" }, want: []string{`public: must be a boolean (got string "true")`}},
		// Tenant ID.
		{name: "upper-case tenantId", mutate: func(m map[string]any) { m["tenantId"] = "Acme" }, want: []string{`tenantId: must match ^[a-z0-9-]{1,63}$ (got "Acme"): tenant IDs are used in NATS subjects, KV keys and file paths; the original allowed more`}},
		{name: "tenantId with a dot", mutate: func(m map[string]any) { m["tenantId"] = "acme.prod" }, want: []string{"tenantId: must match"}},
		{name: "tenantId too long", mutate: func(m map[string]any) { m["tenantId"] = strings.Repeat("a", 64) }, want: []string{"tenantId: must match"}},
		{name: "empty tenantId", mutate: func(m map[string]any) { m["tenantId"] = "" }, want: []string{"tenantId: must not be empty"}},
		// Limits.
		{name: "zero perMinute", mutate: func(m map[string]any) { sub(m, "rateLimit")["perMinute"] = 0 }, want: []string{testFile + ": rateLimit.perMinute: must be a positive integer (got 0)"}},
		{name: "negative burst", mutate: func(m map[string]any) { sub(m, "rateLimit")["burst"] = -1 }, want: []string{"rateLimit.burst: must be a positive integer (got -1)"}},
		{name: "explicit zero windowSec is not defaulted", mutate: func(m map[string]any) { sub(m, "rateLimit")["windowSec"] = 0 }, want: []string{"rateLimit.windowSec: must be a positive integer (got 0)"}},
		{name: "zero burstWindowSec", mutate: func(m map[string]any) { sub(m, "rateLimit")["burstWindowSec"] = 0 }, want: []string{"rateLimit.burstWindowSec: must be a positive integer (got 0)"}},
		{name: "zero tenant-wide ceiling", mutate: func(m map[string]any) { sub(m, "rateLimit")["tenantPerMinute"] = 0 }, want: []string{"rateLimit.tenantPerMinute: must be a positive integer (got 0)"}},
		{name: "negative chunk quota", mutate: func(m map[string]any) { m["quota"] = map[string]any{"chunks": -5} }, want: []string{"quota.chunks: must be a positive integer (got -5)"}},
		{name: "burst window longer than window", mutate: func(m map[string]any) { sub(m, "rateLimit")["burstWindowSec"] = 61 }, want: []string{"rateLimit.burstWindowSec: must not exceed rateLimit.windowSec (got 61 > 60)"}},
		{name: "zero daily budget", mutate: func(m map[string]any) { m["tokenBudget"] = map[string]any{"daily": 0} }, want: []string{"tokenBudget.daily: must be a positive integer (got 0)"}},
		{name: "negative monthly budget", mutate: func(m map[string]any) { m["tokenBudget"] = map[string]any{"monthly": -5} }, want: []string{"tokenBudget.monthly: must be a positive integer (got -5)"}},
		{name: "zero retention", mutate: func(m map[string]any) { m["sessionRetentionDays"] = 0 }, want: []string{"sessionRetentionDays: must be a positive integer (got 0)"}},
		{name: "zero message cap", mutate: func(m map[string]any) { m["maxMessagesPerSession"] = 0 }, want: []string{"maxMessagesPerSession: must be a positive integer (got 0)"}},
		{name: "zero cache ttl", mutate: func(m map[string]any) { m["cache"] = map[string]any{"ttlSeconds": 0} }, want: []string{"cache.ttlSeconds: must be a positive integer (got 0)"}},
		{name: "cache without ttl", mutate: func(m map[string]any) { m["cache"] = map[string]any{} }, want: []string{"cache.ttlSeconds: required field is missing"}},
		// Namespace.
		{name: "namespace with a slash", mutate: func(m map[string]any) { m["vectorizeNamespace"] = "a/b" }, want: []string{`vectorizeNamespace: must be 1-64 letters, digits, '-' or '_' (got "a/b")`}},
		{name: "empty namespace", mutate: func(m map[string]any) { m["vectorizeNamespace"] = "" }, want: []string{"vectorizeNamespace: must be 1-64"}},
		// Hosts.
		{name: "host with scheme", mutate: func(m map[string]any) { m["allowedHosts"] = []any{"https://acme.com"} }, want: []string{`allowedHosts[0]: must be a host name without scheme (got "https://acme.com")`}},
		{name: "host with path", mutate: func(m map[string]any) { m["allowedHosts"] = []any{"acme.com/x"} }, want: []string{"allowedHosts[0]: must be a host name without path"}},
		{name: "host with port", mutate: func(m map[string]any) { m["allowedHosts"] = []any{"acme.com:8787"} }, want: []string{"allowedHosts[0]: must be a host name without port"}},
		{name: "empty host", mutate: func(m map[string]any) { m["allowedHosts"] = []any{"ok.com", ""} }, want: []string{"allowedHosts[1]: must not be empty"}},
		{name: "wildcard host", mutate: func(m map[string]any) { m["allowedHosts"] = []any{"*.acme.com"} }, want: []string{"allowedHosts[0]: must be an exact host name"}},
		{name: "host with spaces", mutate: func(m map[string]any) { m["allowedHosts"] = []any{"acme com"} }, want: []string{"allowedHosts[0]: must be a valid host name"}},
		// API keys.
		{name: "short digest", mutate: func(m map[string]any) { m["apiKeys"] = []any{"sha256:abcd"} }, want: []string{`apiKeys[0]: must be "sha256:" followed by 64 hex digits`}},
		{name: "non-hex digest", mutate: func(m map[string]any) { m["apiKeys"] = []any{"sha256:" + strings.Repeat("zz", 32)} }, want: []string{"apiKeys[0]: must be \"sha256:\""}},
		{name: "empty key", mutate: func(m map[string]any) { m["apiKeys"] = []any{""} }, want: []string{"apiKeys[0]: must not be empty"}},
		{name: "key with spaces", mutate: func(m map[string]any) { m["apiKeys"] = []any{" ck_x "} }, want: []string{"apiKeys[0]: plaintext key must not have leading or trailing spaces"}},
		{name: "duplicate key, once plaintext once hashed", mutate: func(m map[string]any) { m["apiKeys"] = []any{"ck_dup", HashAPIKey("ck_dup")} }, want: []string{"apiKeys[1]: duplicates apiKeys[0]"}},
		// Several problems at once.
		{name: "all errors reported", mutate: func(m map[string]any) {
			m["tenantId"] = "BAD"
			sub(m, "rateLimit")["perMinute"] = 0
			m["allowedHosts"] = []any{"http://x"}
			m["extra"] = true
		}, want: []string{"extra: unknown field"}}, // type/unknown errors stop before semantic checks
		{name: "all semantic errors reported", mutate: func(m map[string]any) {
			m["tenantId"] = "BAD"
			sub(m, "rateLimit")["perMinute"] = 0
			m["allowedHosts"] = []any{"http://x"}
		}, want: []string{"tenantId: must match", "rateLimit.perMinute: must be a positive integer (got 0)", "allowedHosts[0]: must be a host name without scheme"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := []byte(tt.raw)
			if tt.mutate != nil {
				m := baseConfig()
				tt.mutate(m)
				data = mustJSON(t, m)
			}
			cfg, _, err := ParseTenantConfig(testFile, data)
			if err == nil {
				t.Fatalf("ParseTenantConfig accepted %s: %+v", data, cfg)
			}
			if cfg != nil {
				t.Errorf("config returned alongside error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n  %v\ndoes not contain\n  %s", err, w)
				}
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.File != testFile {
				t.Errorf("error is not a *FieldError naming the file: %#v", err)
			}
		})
	}
}

func TestParseTenantConfigKeysNeverInMessages(t *testing.T) {
	const secret = "ck_super_secret_value"
	m := baseConfig()
	m["apiKeys"] = []any{secret}
	_, warns, err := ParseTenantConfig(testFile, mustJSON(t, m))
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 1 || !strings.Contains(warns[0], `tenant "acme" has a plaintext API key`) || !strings.Contains(warns[0], "apiKeys[0]") {
		t.Fatalf("warnings = %q", warns)
	}
	if strings.Contains(warns[0], secret) {
		t.Fatal("warning contains the key")
	}
	// A malformed digest may be a mistyped key: not echoed either.
	m["apiKeys"] = []any{"sha256:" + secret}
	_, _, err = ParseTenantConfig(testFile, mustJSON(t, m))
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("err = %v", err)
	}
}

func TestParseTenantConfigDefaultsAndNormalization(t *testing.T) {
	digest := "sha256:" + strings.Repeat("AB", 32)
	tests := []struct {
		name   string
		mutate func(m map[string]any)
		check  func(t *testing.T, c *TenantConfig)
	}{
		{"defaults", func(map[string]any) {}, func(t *testing.T, c *TenantConfig) {
			want := RateLimit{PerMinute: 60, Burst: 20, WindowSec: 60, BurstWindowSec: 10, TenantPerMinute: 600, TenantBurst: 200}
			if diff := cmp.Diff(want, c.RateLimit); diff != "" {
				t.Errorf("rate limit (-want +got):\n%s", diff)
			}
			wantQuota := &Quota{Documents: DefaultQuotaDocuments, Chunks: DefaultQuotaChunks, StoredBytes: DefaultQuotaStoredBytes}
			if diff := cmp.Diff(wantQuota, c.Quota); diff != "" {
				t.Errorf("quota (-want +got):\n%s", diff)
			}
			if c.SessionRetentionDays != 30 || c.MaxMessagesPerSession != 1000 {
				t.Errorf("retention %d, cap %d", c.SessionRetentionDays, c.MaxMessagesPerSession)
			}
			if c.TokenBudget != nil || c.Cache != nil || c.Public || c.AllowedModels != nil {
				t.Errorf("optional fields set: %+v", c)
			}
		}},
		{"tenant-wide ceiling set", func(m map[string]any) {
			sub(m, "rateLimit")["tenantPerMinute"] = 100
			sub(m, "rateLimit")["tenantBurst"] = 30
		}, func(t *testing.T, c *TenantConfig) {
			if c.RateLimit.TenantPerMinute != 100 || c.RateLimit.TenantBurst != 30 {
				t.Errorf("got %+v", c.RateLimit)
			}
		}},
		{"quota partly set", func(m map[string]any) { m["quota"] = map[string]any{"chunks": 50} }, func(t *testing.T, c *TenantConfig) {
			want := &Quota{Documents: DefaultQuotaDocuments, Chunks: 50, StoredBytes: DefaultQuotaStoredBytes}
			if diff := cmp.Diff(want, c.Quota); diff != "" {
				t.Errorf("quota (-want +got):\n%s", diff)
			}
		}},
		{"burst window from window", func(m map[string]any) { sub(m, "rateLimit")["windowSec"] = 120 }, func(t *testing.T, c *TenantConfig) {
			if c.RateLimit.WindowSec != 120 || c.RateLimit.BurstWindowSec != 20 {
				t.Errorf("got %+v", c.RateLimit)
			}
		}},
		{"burst window at least 1", func(m map[string]any) { sub(m, "rateLimit")["windowSec"] = 5 }, func(t *testing.T, c *TenantConfig) {
			if c.RateLimit.BurstWindowSec != 1 {
				t.Errorf("got %+v", c.RateLimit)
			}
		}},
		{"null optional fields are absent", func(m map[string]any) {
			m["tokenBudget"] = nil
			m["sessionRetentionDays"] = nil
			sub(m, "rateLimit")["windowSec"] = nil
		}, func(t *testing.T, c *TenantConfig) {
			if c.TokenBudget != nil || c.SessionRetentionDays != 30 || c.RateLimit.WindowSec != 60 {
				t.Errorf("got %+v", c)
			}
		}},
		{"hosts lower-cased, deduplicated, IPv6 canonical", func(m map[string]any) {
			m["allowedHosts"] = []any{"Acme.Example.COM", "acme.example.com.", "[0:0::1]", "10.0.0.1"}
		}, func(t *testing.T, c *TenantConfig) {
			if diff := cmp.Diff([]string{"acme.example.com", "::1", "10.0.0.1"}, c.AllowedHosts); diff != "" {
				t.Errorf("hosts (-want +got):\n%s", diff)
			}
		}},
		{"digest lower-cased, plaintext hashed", func(m map[string]any) { m["apiKeys"] = []any{digest, "ck_plain"} }, func(t *testing.T, c *TenantConfig) {
			if diff := cmp.Diff([]string{strings.ToLower(digest), HashAPIKey("ck_plain")}, c.APIKeys); diff != "" {
				t.Errorf("keys (-want +got):\n%s", diff)
			}
		}},
		{"empty allowedModels is absent", func(m map[string]any) { m["allowedModels"] = []any{} }, func(t *testing.T, c *TenantConfig) {
			if c.AllowedModels != nil {
				t.Errorf("got %#v", c.AllowedModels)
			}
		}},
		{"ours: public, fallback, tts, cache", func(m map[string]any) {
			m["public"] = true
			sub(m, "aiModels")["fallbackChat"] = "@cf/small"
			sub(m, "aiModels")["tts"] = "espeak-ng"
			m["cache"] = map[string]any{"ttlSeconds": 60}
		}, func(t *testing.T, c *TenantConfig) {
			if !c.Public || c.AIModels.FallbackChat != "@cf/small" || c.AIModels.TTS != "espeak-ng" || c.Cache.TTLSeconds != 60 {
				t.Errorf("got %+v", c)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := baseConfig()
			tt.mutate(m)
			c, _, err := ParseTenantConfig(testFile, mustJSON(t, m))
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

func TestParseTenantConfigWarnings(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(m map[string]any)
		want   string
	}{
		{"allow-list with no models", func(m map[string]any) { m["featureFlags"] = map[string]any{"modelAllowList": true} }, "featureFlags.modelAllowList: tenant \"acme\" enables the model allow-list with no allowedModels"},
		{"daily above monthly", func(m map[string]any) { m["tokenBudget"] = map[string]any{"daily": 10, "monthly": 5} }, "tokenBudget.daily: tenant \"acme\" has a daily budget (10) above its monthly budget (5)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := baseConfig()
			tt.mutate(m)
			_, warns, err := ParseTenantConfig(testFile, mustJSON(t, m))
			if err != nil {
				t.Fatal(err)
			}
			if len(warns) != 1 || !strings.HasPrefix(warns[0], testFile+": "+tt.want) {
				t.Errorf("warnings = %q", warns)
			}
		})
	}
}

// The original's mrrainbowsmoke and rainbowsmokeofficial configs must load unchanged.
func TestOriginalConfigsLoadUnchanged(t *testing.T) {
	for _, name := range []string{"mrrainbowsmoke", "rainbowsmokeofficial"} {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join("testdata", "original-tenants", name, TenantFileName)
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			c, warns, err := ParseTenantConfig(file, data)
			if err != nil {
				t.Fatal(err)
			}
			if len(warns) != 0 {
				t.Errorf("warnings: %q", warns)
			}
			if c.TenantID != name || c.VectorizeNamespace != name || c.RateLimit.PerMinute != 60 || c.RateLimit.Burst != 20 {
				t.Errorf("got %+v", c)
			}
			if diff := cmp.Diff([]string{name + ".local"}, c.AllowedHosts); diff != "" {
				t.Errorf("hosts: %s", diff)
			}
		})
	}
	c, _, err := LoadTenantsDir(filepath.Join("testdata", "original-tenants"))
	if err != nil {
		t.Fatal(err)
	}
	official := c[1]
	if official.TenantID != "rainbowsmokeofficial" || !official.Flag("modelAllowList") ||
		official.TokenBudget.Daily != 10000 || official.TokenBudget.Monthly != 200000 ||
		!cmp.Equal(official.AllowedModels, []string{"@cf/meta/llama-3.1-8b-instruct-fast"}) {
		t.Errorf("rainbowsmokeofficial = %+v", official)
	}
}

func TestValidTenantID(t *testing.T) {
	for id, want := range map[string]bool{
		"acme": true, "a-1": true, strings.Repeat("a", 63): true,
		"": false, "Acme": false, "a_b": false, "a.b": false, "a:b": false, "a b": false, strings.Repeat("a", 64): false, "acme\n": false,
	} {
		if got := ValidTenantID(id); got != want {
			t.Errorf("ValidTenantID(%q) = %v, want %v", id, got, want)
		}
	}
}
