package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestAllowedOrigins(t *testing.T) {
	cases := []struct {
		name    string
		in      []any
		want    []string
		wantErr string
	}{
		{"normalized", []any{"HTTPS://App.Example.com:443", "http://localhost:3000", "https://app.example.com/"}, []string{"https://app.example.com", "http://localhost:3000"}, ""},
		{"wildcard", []any{"*"}, []string{"*"}, ""},
		{"wildcard not alone", []any{"*", "https://a.example"}, nil, `allowedOrigins[0]: "*" must be the only entry`},
		{"path", []any{"https://a.example/app"}, nil, "allowedOrigins[0]: must be an origin"},
		{"scheme", []any{"ftp://a.example"}, nil, "allowedOrigins[0]: must be an origin"},
		{"null origin", []any{"null"}, nil, "allowedOrigins[0]: must be an origin"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := baseConfig()
			m["allowedOrigins"] = tc.in
			cfg, _, err := ParseTenantConfig(testFile, mustJSON(t, m))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, cfg.AllowedOrigins); diff != "" {
				t.Error(diff)
			}
		})
	}
	cfg := &TenantConfig{AllowedOrigins: []string{"https://app.example.com"}}
	checks := []struct {
		origin            string
		allowed, wildcard bool
	}{
		{"https://app.example.com", true, false},
		{"https://APP.example.com:443", true, false},
		{"https://evil.example.com", false, false},
		{"null", false, false},
		{"", false, false},
	}
	for _, c := range checks {
		if a, w := cfg.AllowsOrigin(c.origin); a != c.allowed || w != c.wildcard {
			t.Errorf("AllowsOrigin(%q) = %v, %v", c.origin, a, w)
		}
	}
	if a, w := (&TenantConfig{AllowedOrigins: []string{"*"}}).AllowsOrigin("https://x.example"); !a || !w {
		t.Error("wildcard does not allow")
	}
}
