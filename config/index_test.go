package config

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Keys of the test tenants (plaintext here; configs hold their digests).
const (
	acmeKey  = "ck_acme_key_1"
	acmeKey2 = "ck_acme_key_2"
	betaKey  = "ck_beta_key"
)

// tenant builds a parsed config, as the server would load it.
func tenant(t testing.TB, id string, mutate func(m map[string]any)) *TenantConfig {
	t.Helper()
	m := baseConfig()
	m["tenantId"] = id
	m["vectorizeNamespace"] = id
	m["allowedHosts"] = []any{id + ".example.com"}
	if mutate != nil {
		mutate(m)
	}
	c, _, err := ParseTenantConfig(id+"/"+TenantFileName, mustJSON(t, m))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// testIndex: acme (two keys, hosts acme.example.com and [2001:db8::1]), beta (one key),
// open (public, no keys), closed (no keys, not public).
func testIndex(t testing.TB) *Index {
	t.Helper()
	ix, err := NewIndex([]*TenantConfig{
		tenant(t, "acme", func(m map[string]any) {
			m["apiKeys"] = []any{HashAPIKey(acmeKey), HashAPIKey(acmeKey2)}
			m["allowedHosts"] = []any{"acme.example.com", "[2001:db8::1]"}
		}),
		tenant(t, "beta", func(m map[string]any) { m["apiKeys"] = []any{HashAPIKey(betaKey)} }),
		tenant(t, "open", func(m map[string]any) { m["public"] = true }),
		tenant(t, "closed", nil),
	})
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func TestResolve(t *testing.T) {
	ix := testIndex(t)
	tests := []struct {
		name string
		in   ResolveInput
		want Resolution
	}{
		{"header", ResolveInput{TenantHeader: "acme"}, Resolution{"acme", SourceHeader}},
		{"header trimmed", ResolveInput{TenantHeader: "  beta\t"}, Resolution{"beta", SourceHeader}},
		{"header beats host", ResolveInput{TenantHeader: "beta", Host: "acme.example.com"}, Resolution{"beta", SourceHeader}},
		{"header beats API key", ResolveInput{TenantHeader: "beta", APIKey: acmeKey}, Resolution{"beta", SourceHeader}},
		// docs/api.md "Tenant resolution": a bogus header beats a valid host and gives 404.
		{"bogus header beats a valid host", ResolveInput{TenantHeader: "nope", Host: "acme.example.com"}, Resolution{"nope", SourceHeader}},
		{"blank header is absent", ResolveInput{TenantHeader: "   ", Host: "acme.example.com"}, Resolution{"acme", SourceHost}},
		{"host", ResolveInput{Host: "acme.example.com"}, Resolution{"acme", SourceHost}},
		{"host port ignored", ResolveInput{Host: "acme.example.com:8787"}, Resolution{"acme", SourceHost}},
		{"host case-insensitive", ResolveInput{Host: "ACME.Example.com:443"}, Resolution{"acme", SourceHost}},
		{"host trailing dot", ResolveInput{Host: "acme.example.com."}, Resolution{"acme", SourceHost}},
		{"IPv6 host with port", ResolveInput{Host: "[2001:db8::1]:8787"}, Resolution{"acme", SourceHost}},
		{"IPv6 host without port", ResolveInput{Host: "[2001:DB8:0::1]"}, Resolution{"acme", SourceHost}},
		{"bare IPv6 host", ResolveInput{Host: "2001:db8::1"}, Resolution{"acme", SourceHost}},
		{"host beats API key", ResolveInput{Host: "beta.example.com", APIKey: acmeKey}, Resolution{"beta", SourceHost}},
		{"unknown host falls through to API key", ResolveInput{Host: "other.com", APIKey: acmeKey2}, Resolution{"acme", SourceAPIKey}},
		{"API key", ResolveInput{APIKey: betaKey}, Resolution{"beta", SourceAPIKey}},
		// Null cases: nothing resolves → 400 tenant_required.
		{"nothing", ResolveInput{}, Resolution{}},
		{"unknown host", ResolveInput{Host: "other.com"}, Resolution{}},
		{"subdomain is not an exact match", ResolveInput{Host: "x.acme.example.com"}, Resolution{}},
		{"unknown API key", ResolveInput{APIKey: "ck_unknown"}, Resolution{}},
		{"API key digest is not a key", ResolveInput{APIKey: HashAPIKey(acmeKey)}, Resolution{}},
		{"malformed IPv6 host", ResolveInput{Host: "[2001:db8::1"}, Resolution{}},
		{"port only", ResolveInput{Host: ":8787"}, Resolution{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, ix.Resolve(tt.in)); diff != "" {
				t.Errorf("Resolve(%+v) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestAPIKeyFromHeaders(t *testing.T) {
	tests := []struct{ xAPIKey, auth, want string }{
		{"k1", "", "k1"},
		{" k1 ", "Bearer k2", "k1"},
		{"", "Bearer k2", "k2"},
		{"", "bearer k2", "k2"},
		{"", "BEARER   k2 ", "k2"},
		{"", "Basic dXNlcjpwYXNz", ""},
		{"", "Bearer", ""},
		{"", "Bearerk2", ""},
		{"", "", ""},
	}
	for _, tt := range tests {
		if got := APIKeyFromHeaders(tt.xAPIKey, tt.auth); got != tt.want {
			t.Errorf("APIKeyFromHeaders(%q, %q) = %q, want %q", tt.xAPIKey, tt.auth, got, tt.want)
		}
	}
}

func TestAuthenticate(t *testing.T) {
	ix := testIndex(t)
	id := func(key string) string {
		sum := sha256.Sum256([]byte(key))
		return hex.EncodeToString(sum[:])[:12]
	}
	tests := []struct {
		name, tenant, key string
		want              Auth
	}{
		{"own key", "acme", acmeKey, Auth{Result: AuthOK, KeyID: id(acmeKey)}},
		{"own second key", "acme", acmeKey2, Auth{Result: AuthOK, KeyID: id(acmeKey2)}},
		{"missing key", "acme", "", Auth{Result: AuthUnauthorized, Reason: "missing API key"}},
		{"wrong key", "acme", "ck_wrong", Auth{Result: AuthUnauthorized, Reason: "invalid API key"}},
		{"the digest itself is not a key", "acme", HashAPIKey(acmeKey), Auth{Result: AuthUnauthorized, Reason: "invalid API key"}},
		{"another tenant's valid key", "acme", betaKey, Auth{Result: AuthForbidden, KeyID: id(betaKey), Reason: "API key belongs to another tenant"}},
		{"public tenant, no key", "open", "", Auth{Result: AuthOK}},
		{"public tenant, any key", "open", "ck_whatever", Auth{Result: AuthOK}},
		// A public tenant takes any caller, but not one holding another tenant's key (it meant that tenant).
		{"public tenant, another tenant's key", "open", acmeKey, Auth{Result: AuthForbidden, KeyID: id(acmeKey), Reason: "API key belongs to another tenant"}},
		{"closed tenant", "closed", "", Auth{Result: AuthUnauthorized, Reason: "tenant has no apiKeys and is not public"}},
		{"closed tenant with another tenant's key", "closed", acmeKey, Auth{Result: AuthUnauthorized, Reason: "tenant has no apiKeys and is not public"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, ok := ix.ByID(tt.tenant)
			if !ok {
				t.Fatalf("no tenant %q", tt.tenant)
			}
			if diff := cmp.Diff(tt.want, ix.Authenticate(cfg, tt.key)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	t.Run("config from outside the index uses its own keys", func(t *testing.T) {
		other := tenant(t, "acme", func(m map[string]any) { m["apiKeys"] = []any{HashAPIKey("ck_new")} })
		if got := ix.Authenticate(other, "ck_new"); got.Result != AuthOK {
			t.Errorf("got %+v", got)
		}
		if got := ix.Authenticate(other, acmeKey); got.Result != AuthUnauthorized {
			t.Errorf("old key: got %+v", got)
		}
	})
	if AuthResult(0) != AuthUnauthorized {
		t.Error("the zero AuthResult must deny")
	}
}

func TestIndexLookupsAndWarnings(t *testing.T) {
	ix := testIndex(t)
	if ix.Len() != 4 {
		t.Errorf("Len = %d", ix.Len())
	}
	var ids []string
	for _, c := range ix.All() {
		ids = append(ids, c.TenantID)
	}
	if diff := cmp.Diff([]string{"acme", "beta", "closed", "open"}, ids); diff != "" {
		t.Errorf("All (-want +got):\n%s", diff)
	}
	if _, ok := ix.ByID("nope"); ok {
		t.Error("ByID(nope) found a tenant")
	}
	want := []string{`tenant "closed" has no apiKeys and is not public: every request gets 401`}
	if diff := cmp.Diff(want, ix.Warnings()); diff != "" {
		t.Errorf("Warnings (-want +got):\n%s", diff)
	}
}

func TestNewIndexConflicts(t *testing.T) {
	tests := []struct {
		name string
		cfgs func(t *testing.T) []*TenantConfig
		want []string
	}{
		{"host claimed twice", func(t *testing.T) []*TenantConfig {
			return []*TenantConfig{
				tenant(t, "a", func(m map[string]any) { m["allowedHosts"] = []any{"shared.com"} }),
				tenant(t, "b", func(m map[string]any) { m["allowedHosts"] = []any{"Shared.COM"} }),
			}
		}, []string{`host "shared.com" is claimed by tenants "a" and "b"`}},
		{"API key claimed twice", func(t *testing.T) []*TenantConfig {
			return []*TenantConfig{
				tenant(t, "a", func(m map[string]any) { m["apiKeys"] = []any{HashAPIKey("ck_shared")} }),
				tenant(t, "b", func(m map[string]any) { m["apiKeys"] = []any{"ck_shared"} }),
			}
		}, []string{`is claimed by tenants "a" and "b"`, "API key " + HashAPIKey("ck_shared")[7:19]}},
		{"tenant twice", func(t *testing.T) []*TenantConfig {
			return []*TenantConfig{tenant(t, "a", nil), tenant(t, "a", nil)}
		}, []string{`tenant "a" is configured twice`}},
		{"all conflicts reported", func(t *testing.T) []*TenantConfig {
			return []*TenantConfig{
				tenant(t, "a", func(m map[string]any) { m["apiKeys"] = []any{"ck_shared"}; m["allowedHosts"] = []any{"x.com"} }),
				tenant(t, "b", func(m map[string]any) { m["apiKeys"] = []any{"ck_shared"}; m["allowedHosts"] = []any{"x.com"} }),
			}
		}, []string{`host "x.com"`, "API key"}},
		{"unhashed key built by hand", func(t *testing.T) []*TenantConfig {
			c := tenant(t, "a", nil)
			c.APIKeys = []string{"ck_plain"}
			return []*TenantConfig{c}
		}, []string{`tenant "a": apiKeys[0] is not a "sha256:" digest`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ix, err := NewIndex(tt.cfgs(t))
			if err == nil {
				t.Fatalf("NewIndex accepted: %d tenants", ix.Len())
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	t.Run("a tenant may list a host twice", func(t *testing.T) {
		c := tenant(t, "a", nil)
		c.AllowedHosts = []string{"a.com", "A.com"}
		if _, err := NewIndex([]*TenantConfig{c}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestNewAPIKey(t *testing.T) {
	key, digest, err := NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(key, "ck_") || len(key) != 3+43 {
		t.Errorf("key %q: want ck_ + 43 base64url characters", key)
	}
	if digest != HashAPIKey(key) {
		t.Errorf("digest %q != HashAPIKey(key)", digest)
	}
	key2, _, _ := NewAPIKey()
	if key == key2 {
		t.Error("two keys are equal")
	}
	// The digest loads as a stored key, and the key authenticates.
	c := tenant(t, "a", func(m map[string]any) { m["apiKeys"] = []any{digest} })
	ix, err := NewIndex([]*TenantConfig{c})
	if err != nil {
		t.Fatal(err)
	}
	if got := ix.Authenticate(c, key); got.Result != AuthOK {
		t.Errorf("Authenticate = %+v", got)
	}
}

func TestHashAPIKey(t *testing.T) {
	// echo -n ck_example_local_dev_key | sha256sum
	const want = "sha256:f35406e0bf2a7e7847a6a207f34757038c4482300557614c2f6118c0d8c9d3ab"
	if got := HashAPIKey("ck_example_local_dev_key"); got != want {
		t.Errorf("HashAPIKey = %q, want %q", got, want)
	}
}

func BenchmarkResolve(b *testing.B) {
	ix := testIndex(b)
	cases := []struct {
		name string
		in   ResolveInput
	}{
		{"header", ResolveInput{TenantHeader: "acme", Host: "acme.example.com"}},
		{"host", ResolveInput{Host: "acme.example.com:8787"}},
		{"host-uppercase", ResolveInput{Host: "ACME.example.com:8787"}},
		{"apiKey", ResolveInput{Host: "api.example.net", APIKey: betaKey}},
		{"none", ResolveInput{Host: "api.example.net", APIKey: "ck_unknown"}},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if r := ix.Resolve(bc.in); r.Source == "x" {
					b.Fatal(r)
				}
			}
		})
	}
}

func BenchmarkAuthenticate(b *testing.B) {
	ix := testIndex(b)
	cfg, _ := ix.ByID("acme")
	b.ReportAllocs()
	for b.Loop() {
		if a := ix.Authenticate(cfg, acmeKey2); a.Result != AuthOK {
			b.Fatal(a)
		}
	}
}
