package config

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"
)

// bind builds an Env from DefaultEnv, the given environment and command-line arguments.
func bind(t *testing.T, environ map[string]string, args ...string) Env {
	t.Helper()
	e := DefaultEnv()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	e.BindFlags(fs, func(k string) string { return environ[k] })
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	e.LoadSecrets(func(k string) string { return environ[k] })
	return e
}

func TestEnvPrecedence(t *testing.T) {
	tests := []struct {
		name    string
		environ map[string]string
		args    []string
		get     func(Env) any
		want    any
	}{
		{"default listen", nil, nil, func(e Env) any { return e.ListenAddr }, ":8787"},
		{"env beats default", map[string]string{"CRISPY_LISTEN_ADDR": ":9000"}, nil, func(e Env) any { return e.ListenAddr }, ":9000"},
		{"flag beats env", map[string]string{"CRISPY_LISTEN_ADDR": ":9000"}, []string{"--listen", ":9100"}, func(e Env) any { return e.ListenAddr }, ":9100"},
		{"original MAX_REQUEST_BODY_SIZE", map[string]string{"MAX_REQUEST_BODY_SIZE": "10240"}, nil, func(e Env) any { return e.MaxRequestBodySize }, int64(10240)},
		{"CRISPY_ name beats the original's", map[string]string{"CRISPY_MAX_BODY_SIZE": "2048", "MAX_REQUEST_BODY_SIZE": "10240"}, nil, func(e Env) any { return e.MaxRequestBodySize }, int64(2048)},
		{"flag beats both body-size variables", map[string]string{"CRISPY_MAX_BODY_SIZE": "2048", "MAX_REQUEST_BODY_SIZE": "10240"}, []string{"--max-body-size=99"}, func(e Env) any { return e.MaxRequestBodySize }, int64(99)},
		{"default body size is 1 MiB", nil, nil, func(e Env) any { return e.MaxRequestBodySize }, int64(1 << 20)},
		{"MILVUS_ADDR is a fallback", map[string]string{"MILVUS_ADDR": "milvus:19530"}, nil, func(e Env) any { return e.MilvusAddr }, "milvus:19530"},
		{"CRISPY_MILVUS_ADDR beats MILVUS_ADDR", map[string]string{"MILVUS_ADDR": "a:1", "CRISPY_MILVUS_ADDR": "b:2"}, nil, func(e Env) any { return e.MilvusAddr }, "b:2"},
		{"ENVIRONMENT", map[string]string{"ENVIRONMENT": "staging"}, nil, func(e Env) any { return e.Environment }, "staging"},
		{"MODEL_ID", map[string]string{"MODEL_ID": "@cf/x"}, nil, func(e Env) any { return e.ModelID }, "@cf/x"},
		{"FALLBACK_MODEL_ID", map[string]string{"FALLBACK_MODEL_ID": "@cf/y"}, nil, func(e Env) any { return e.FallbackModelID }, "@cf/y"},
		{"MAX_MESSAGE_LENGTH", map[string]string{"MAX_MESSAGE_LENGTH": "500"}, nil, func(e Env) any { return e.MaxMessageLength }, 500},
		{"duration from env", map[string]string{"CRISPY_SESSION_IDLE_TIMEOUT": "90s"}, nil, func(e Env) any { return e.SessionIdleTimeout }, 90 * time.Second},
		{"duration flag beats env", map[string]string{"CRISPY_SHUTDOWN_TIMEOUT": "90s"}, []string{"--shutdown-timeout=3s"}, func(e Env) any { return e.ShutdownTimeout }, 3 * time.Second},
		{"admin token from env", map[string]string{"CRISPY_ADMIN_TOKEN": "s3cret"}, nil, func(e Env) any { return e.AdminToken }, "s3cret"},
		{"admin token flag beats env", map[string]string{"CRISPY_ADMIN_TOKEN": "s3cret"}, []string{"--admin-token=other"}, func(e Env) any { return e.AdminToken }, "other"},
		{"OpenAI key read from the named variable", map[string]string{"CRISPY_OPENAI_API_KEY_ENV": "MY_KEY", "MY_KEY": "sk-1"}, nil, func(e Env) any { return e.OpenAIAPIKey }, "sk-1"},
		{"Cloudflare token read from the default variable", map[string]string{"CRISPY_CF_API_TOKEN": "cf-1"}, nil, func(e Env) any { return e.CloudflareToken }, "cf-1"},
		{"blank env value is unset", map[string]string{"CRISPY_LOG_LEVEL": "  "}, nil, func(e Env) any { return e.LogLevel }, "info"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := bind(t, tt.environ, tt.args...)
			if got := tt.get(e); got != tt.want {
				t.Errorf("got %v (%T), want %v (%T)", got, got, tt.want, tt.want)
			}
			if err := e.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

func TestEnvValidate(t *testing.T) {
	tests := []struct {
		name    string
		environ map[string]string
		args    []string
		want    []string // fragments of the error; nil means valid
	}{
		{"defaults are valid", nil, nil, nil},
		{"malformed MAX_REQUEST_BODY_SIZE", map[string]string{"MAX_REQUEST_BODY_SIZE": "abc"}, nil, []string{`MAX_REQUEST_BODY_SIZE: must be an integer number of bytes (got "abc")`}},
		{"malformed MAX_MESSAGE_LENGTH", map[string]string{"MAX_MESSAGE_LENGTH": "lots"}, nil, []string{`MAX_MESSAGE_LENGTH: must be an integer`}},
		{"malformed duration", map[string]string{"CRISPY_SHUTDOWN_TIMEOUT": "20"}, nil, []string{`CRISPY_SHUTDOWN_TIMEOUT: must be a duration`}},
		{"a flag overrides a malformed env value", map[string]string{"MAX_REQUEST_BODY_SIZE": "abc"}, []string{"--max-body-size=100"}, nil},
		{"zero body size", map[string]string{"MAX_REQUEST_BODY_SIZE": "0"}, nil, []string{"--max-body-size: must be a positive number of bytes (got 0)"}},
		{"negative body size", nil, []string{"--max-body-size=-1"}, []string{"--max-body-size: must be a positive"}},
		{"message length 0", map[string]string{"MAX_MESSAGE_LENGTH": "0"}, nil, []string{"--max-message-length: must be between 1 and 10000 (got 0)"}},
		{"message length above the contract", nil, []string{"--max-message-length=10001"}, []string{"(got 10001)"}},
		{"message length at the contract's limit", nil, []string{"--max-message-length=10000"}, nil},
		{"unknown log level", map[string]string{"CRISPY_LOG_LEVEL": "verbose"}, nil, []string{`--log-level: must be one of debug, info, warn, error (got "verbose")`}},
		{"unknown log format", nil, []string{"--log-format=xml"}, []string{`--log-format`}},
		{"zero timeout", nil, []string{"--session-idle-timeout=0s"}, []string{"--session-idle-timeout: must be positive"}},
		{"negative budget lease", nil, []string{"--budget-lease-calls=-1"}, []string{"--budget-lease-calls: must be 0 to 4096 (got -1)"}},
		{"huge budget lease", map[string]string{"CRISPY_BUDGET_LEASE_CALLS": "100000"}, nil, []string{"--budget-lease-calls: must be 0 to 4096 (got 100000)"}},
		{"negative gc headroom", nil, []string{"--gc-headroom=-1"}, []string{"--gc-headroom: must be 0 or more bytes (got -1)"}},
		{"gc headroom off", map[string]string{"CRISPY_GC_HEADROOM": "0"}, nil, nil},
		{"bad listen address", nil, []string{"--listen=8787"}, []string{"--listen: must be host:port"}},
		{"trusted proxies", map[string]string{"CRISPY_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.7,::1"}, nil, nil},
		{"malformed trusted proxy", nil, []string{"--trusted-proxies=10.0.0.0/8,proxy.local"}, []string{`--trusted-proxies: "proxy.local" is not an IP or CIDR prefix`}},
		{"several errors reported together", map[string]string{"MAX_REQUEST_BODY_SIZE": "abc", "CRISPY_LOG_LEVEL": "loud"}, nil, []string{"MAX_REQUEST_BODY_SIZE", "--log-level"}},
		// Cluster settings are settings like any other (they were read apart, and a malformed port
		// was silently 0).
		{"malformed CRISPY_CLUSTER_PORT", map[string]string{"CRISPY_CLUSTER_PORT": "70o0"}, nil, []string{`CRISPY_CLUSTER_PORT: must be an integer (got "70o0")`}},
		{"cluster port out of range", nil, []string{"--cluster-port=70000"}, []string{"--cluster-port: 0–65535 (got 70000)"}},
		{"malformed CRISPY_MEMBER_TTL", map[string]string{"CRISPY_MEMBER_TTL": "3"}, nil, []string{`CRISPY_MEMBER_TTL: must be a duration`}},
		{"member TTL below 1s", nil, []string{"--member-ttl=500ms"}, []string{"--member-ttl: at least 1s"}},
		{"election timeout below 400ms", nil, []string{"--nats-election-timeout=200ms"}, []string{"--nats-election-timeout: 0 or at least 400ms (got 200ms)"}},
		{"negative election timeout", map[string]string{"CRISPY_NATS_ELECTION_TIMEOUT": "-1s"}, nil, []string{"--nats-election-timeout: 0 or at least 400ms"}},
		{"election timeout 0 keeps nats-server's", nil, []string{"--nats-election-timeout=0"}, nil},
		{"election timeout from the environment", map[string]string{"CRISPY_NATS_ELECTION_TIMEOUT": "2s"}, nil, nil},
		{"routes without a cluster", map[string]string{"CRISPY_NATS_ROUTES": "nats://a:6222"}, nil, []string{"need --cluster NAME"}},
		{"cluster without NATS", map[string]string{"CRISPY_CLUSTER": "c"}, nil, []string{"--cluster needs --nats-url or --nats-cluster-listen"}},
		{"a clustered node", map[string]string{"CRISPY_CLUSTER": "c", "CRISPY_NATS_CLUSTER_LISTEN": "127.0.0.1:6222", "CRISPY_CLUSTER_PORT": "7000"}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := bind(t, tt.environ, tt.args...)
			err := e.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate: unexpected error %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate: no error, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestEnvWarnsWhenTwoVariablesDisagree(t *testing.T) {
	e := bind(t, map[string]string{"CRISPY_MILVUS_ADDR": "a:1", "MILVUS_ADDR": "b:2"})
	w := e.Warnings()
	if len(w) != 1 || !strings.Contains(w[0], "CRISPY_MILVUS_ADDR and MILVUS_ADDR are both set") {
		t.Fatalf("warnings = %q", w)
	}
	if e := bind(t, map[string]string{"CRISPY_MILVUS_ADDR": "a:1", "MILVUS_ADDR": "a:1"}); len(e.Warnings()) != 0 {
		t.Fatalf("equal values should not warn: %q", e.Warnings())
	}
}

func TestEnvRedactedHasNoSecrets(t *testing.T) {
	environ := map[string]string{
		"CRISPY_ADMIN_TOKEN":     "admin-secret",
		"CRISPY_OPENAI_API_KEY":  "sk-secret",
		"CRISPY_CF_API_TOKEN":    "cf-secret",
		"CRISPY_NATS_URL":        "nats://tok-secret@n1:4222,nats://user:pw-secret@n2:4222",
		"CRISPY_OPENAI_BASE_URL": "https://u:base-secret@example.com/v1",
	}
	e := bind(t, environ)
	red := e.Redacted()
	for k, v := range red {
		s, _ := v.(string)
		for _, secret := range []string{"admin-secret", "sk-secret", "cf-secret", "tok-secret", "pw-secret", "base-secret"} {
			if strings.Contains(s, secret) {
				t.Errorf("Redacted()[%q] = %q leaks %q", k, s, secret)
			}
		}
	}
	if red["admin-token-set"] != true || red["openai-api-key-set"] != true || red["cf-api-token-set"] != true {
		t.Errorf("Redacted should say which secrets are set: %v", red)
	}
	if got := red["nats-url"]; got != "nats://redacted@n1:4222,nats://redacted@n2:4222" {
		t.Errorf("nats-url = %q", got)
	}
}

func TestEnvSecretNotInHelp(t *testing.T) {
	e := DefaultEnv()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	e.BindFlags(fs, func(k string) string {
		if k == "CRISPY_ADMIN_TOKEN" {
			return "admin-secret"
		}
		return ""
	})
	if strings.Contains(fs.FlagUsages(), "admin-secret") {
		t.Fatal("--help output shows the admin token")
	}
	if e.AdminToken != "admin-secret" {
		t.Fatalf("AdminToken = %q", e.AdminToken)
	}
}

func TestEnvOneFlagPerSetting(t *testing.T) {
	e := DefaultEnv()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	e.BindFlags(fs, func(string) string { return "" })
	for _, name := range []string{
		"listen", "admin-addr", "admin-token", "data-dir", "tenants-dir", "log-level", "log-format",
		"node-name", "nats-url", "milvus-addr", "model-id", "fallback-model-id", "openai-base-url",
		"openai-api-key-env", "openai-models", "max-body-size", "max-message-length",
		"session-idle-timeout", "shutdown-timeout", "environment", "cf-api-token-env", "trusted-proxies",
	} {
		if fs.Lookup(name) == nil {
			t.Errorf("flag --%s not registered", name)
		}
	}
}

func TestParseTrustedProxies(t *testing.T) {
	got, err := ParseTrustedProxies(" 10.0.0.0/8 ,192.0.2.7,, ::1, ::ffff:198.51.100.0/120, 10.1.2.3/8")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/8", "192.0.2.7/32", "::1/128", "198.51.100.0/24", "10.0.0.0/8"}
	var gotS []string
	for _, p := range got {
		gotS = append(gotS, p.String())
	}
	if diff := cmp.Diff(want, gotS); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, bad := range []string{"10.0.0.0/33", "fe80::1%eth0", "localhost"} {
		if _, err := ParseTrustedProxies(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
