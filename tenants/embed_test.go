package tenants_test

import (
	"testing"

	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/tenants"
)

// The shipped configs load, index without conflicts, and behave as tenants/README.md says.
func TestDefaults(t *testing.T) {
	cfgs, warns, err := config.LoadTenants(tenants.Defaults())
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 0 {
		t.Errorf("warnings: %q", warns)
	}
	ix, err := config.NewIndex(cfgs)
	if err != nil {
		t.Fatal(err)
	}
	if w := ix.Warnings(); len(w) != 0 {
		t.Errorf("index warnings: %q", w)
	}

	rainbow, ok := ix.ByID("mrrainbowsmoke")
	if !ok {
		t.Fatal("mrrainbowsmoke missing")
	}
	if !rainbow.Public || !rainbow.Flag("tools_enabled") || !rainbow.Flag("tts_enabled") {
		t.Errorf("mrrainbowsmoke = %+v", rainbow)
	}
	if got := ix.Authenticate(rainbow, ""); got.Result != config.AuthOK {
		t.Errorf("mrrainbowsmoke without a key: %+v", got)
	}

	const devKey = "ck_example_local_dev_key" // documented in tenants/README.md
	example, ok := ix.ByID("example")
	if !ok {
		t.Fatal("example missing")
	}
	if example.Public || example.Flag("modelAllowList") || example.TokenBudget == nil || example.Cache == nil {
		t.Errorf("example = %+v", example)
	}
	tests := []struct {
		name string
		in   config.ResolveInput
		want config.Resolution
	}{
		{"example by host", config.ResolveInput{Host: "example.local:8787"}, config.Resolution{TenantID: "example", Source: config.SourceHost}},
		{"example by key", config.ResolveInput{APIKey: devKey}, config.Resolution{TenantID: "example", Source: config.SourceAPIKey}},
		{"mrrainbowsmoke by host", config.ResolveInput{Host: "mrrainbowsmoke.local"}, config.Resolution{TenantID: "mrrainbowsmoke", Source: config.SourceHost}},
	}
	for _, tt := range tests {
		if got := ix.Resolve(tt.in); got != tt.want {
			t.Errorf("%s: got %+v, want %+v", tt.name, got, tt.want)
		}
	}
	if got := ix.Authenticate(example, devKey); got.Result != config.AuthOK {
		t.Errorf("example with the dev key: %+v", got)
	}
	if got := ix.Authenticate(example, ""); got.Result != config.AuthUnauthorized {
		t.Errorf("example without a key: %+v", got)
	}
}
