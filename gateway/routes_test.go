package gateway

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/gateway/minilm"
)

func TestParseRoutes(t *testing.T) {
	tests := []struct {
		name    string
		json    string
		wantErr []string // substrings of the error; nil means valid
		check   func(t *testing.T, rt Routes)
	}{
		{name: "full table", json: `{
			"providers": [
				{"name": "vllm", "baseUrl": "http://10.0.0.5:8000/v1", "apiKeyEnv": "VLLM_KEY",
				 "models": ["llama-3.1-8b", "qwen*"], "pricePer1KIn": 0.0001, "pricePer1KOut": 0.0003,
				 "timeoutMs": 60000, "embeddings": ["bge-m3", "e5-*"], "embeddingDimensions": {"bge-m3": 1024},
				 "embeddingBatchSize": 16}
			],
			"cloudflare": {"apiTokenEnv": "CF_TOKEN", "accountId": "acc"}}`,
			check: func(t *testing.T, rt Routes) {
				want := Routes{Providers: []RouteProvider{{Name: "vllm", BaseURL: "http://10.0.0.5:8000/v1",
					APIKeyEnv: "VLLM_KEY", Models: []string{"llama-3.1-8b", "qwen*"}, PricePer1KIn: 0.0001,
					PricePer1KOut: 0.0003, TimeoutMs: 60000, Embeddings: []string{"bge-m3", "e5-*"},
					EmbeddingDimensions: map[string]int{"bge-m3": 1024}, EmbeddingBatchSize: 16}},
					Cloudflare: &RouteCloudflare{APITokenEnv: "CF_TOKEN", AccountID: "acc"}}
				if d := cmp.Diff(want, rt); d != "" {
					t.Errorf("parsed table (-want +got):\n%s", d)
				}
			}},
		{name: "empty object is an empty table", json: `{}`},
		{name: "unknown top-level field", json: `{"provider": []}`, wantErr: []string{"provider: unknown field"}},
		{name: "unknown provider field names its path", json: `{"providers":[{"name":"a","baseUrl":"http://a","models":["m"]},
			{"name":"b","baseUrl":"http://b","models":["m"],"timeout":5}]}`,
			wantErr: []string{"providers[1].timeout: unknown field"}},
		{name: "unknown cloudflare field", json: `{"cloudflare":{"apiTokenEnv":"X","token":"secret"}}`,
			wantErr: []string{"cloudflare.token: unknown field"}},
		{name: "wrong type names its path", json: `{"providers":[{"name":"a","baseUrl":"http://a","models":"m"}]}`,
			wantErr: []string{"providers[0].models: must be an array, not a JSON string"}},
		{name: "fractional timeout", json: `{"providers":[{"name":"a","baseUrl":"http://a","models":["m"],"timeoutMs":1.5}]}`,
			wantErr: []string{"providers[0].timeoutMs"}},
		{name: "syntax error names line and column", json: "{\n  \"providers\": [\n    {\"name\": }\n  ]\n}",
			wantErr: []string{"invalid JSON at line 3"}},
		{name: "top level not an object", json: `[]`, wantErr: []string{"top level"}},
		{name: "trailing data", json: `{} {}`, wantErr: []string{"invalid JSON"}},
		{name: "missing name and bad URL, all reported", json: `{"providers":[{"baseUrl":"ftp://x","models":["m"]}]}`,
			wantErr: []string{"providers[0].name: required", "providers[0].baseUrl: must be an http(s) URL"}},
		{name: "duplicate names", json: `{"providers":[{"name":"a","baseUrl":"http://a","models":["m"]},{"name":"a","baseUrl":"http://b","models":["n"]}]}`,
			wantErr: []string{`providers[1].name: "a" is also providers[0]'s name`}},
		{name: "serves nothing", json: `{"providers":[{"name":"a","baseUrl":"http://a"}]}`,
			wantErr: []string{"serves nothing"}},
		{name: "star inside a pattern", json: `{"providers":[{"name":"a","baseUrl":"http://a","models":["gpt*4"]}]}`,
			wantErr: []string{"providers[0].models[0]: '*' may only end a prefix"}},
		{name: "empty pattern", json: `{"providers":[{"name":"a","baseUrl":"http://a","models":[""]}]}`,
			wantErr: []string{"providers[0].models[0]"}},
		{name: "negative numbers", json: `{"providers":[{"name":"a","baseUrl":"http://a","models":["m"],"pricePer1KIn":-1,"timeoutMs":-5,"embeddingBatchSize":-1}]}`,
			wantErr: []string{"prices must not be negative", "timeoutMs: must not be negative", "embeddingBatchSize"}},
		{name: "dimension of an unlisted embedding model", json: `{"providers":[{"name":"a","baseUrl":"http://a","embeddings":["e"],"embeddingDimensions":{"f":3,"e":0}}]}`,
			wantErr: []string{`embeddingDimensions["f"]: not listed`, `embeddingDimensions["e"]: must be positive`}},
		{name: "cloudflare without token variable", json: `{"cloudflare":{}}`, wantErr: []string{"cloudflare.apiTokenEnv: required"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt, err := ParseRoutes("routes.json", []byte(tt.json))
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("ParseRoutes: %v", err)
				}
				if tt.check != nil {
					tt.check(t, rt)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseRoutes accepted %s", tt.json)
			}
			if !strings.HasPrefix(err.Error(), "routes file routes.json: ") {
				t.Errorf("error %q does not name the file", err)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func FuzzParseRoutes(f *testing.F) {
	f.Add([]byte(`{"providers":[{"name":"a","baseUrl":"http://a","models":["m","p*"],"embeddings":["e"]}],"cloudflare":{"apiTokenEnv":"X"}}`))
	f.Add([]byte(`{"providers":[{"name":1}]}`))
	f.Add([]byte(`{"providers":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		rt, err := ParseRoutes("f.json", data)
		if err != nil {
			return
		}
		// Whatever it accepts builds a router without panicking.
		pcs, _ := rt.ProviderConfigs(env(nil))
		NewRouter(RouterOptions{Providers: pcs, Getenv: env(nil)})
	})
}

// writeRoutes writes a routes file into a temp dir and returns its path.
func writeRoutes(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "routes.json")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadRouterOptionsRoutesAndMerge(t *testing.T) {
	file := writeRoutes(t, `{"providers":[
		{"name":"vllm","baseUrl":"http://vllm.invalid/v1","apiKeyEnv":"VLLM_KEY","models":["llama-3.1-8b","qwen*","shared"],
		 "pricePer1KIn":0.001,"pricePer1KOut":0.002,"timeoutMs":1500,"embeddings":["bge-m3"]},
		{"name":"nokey","baseUrl":"http://nokey.invalid","apiKeyEnv":"EMPTY_KEY","models":["mistral*"]}],
		"cloudflare":{"apiTokenEnv":"FILE_CF","accountId":"acc-1"}}`)
	e := config.Env{RoutesFile: file, OpenAIBaseURL: "http://flags.invalid/v1", OpenAIModels: "shared,qwen-special,*",
		OpenAIEmbeddingModels: "bge-m3,nomic*", CloudflareToken: "flag-cf", CloudflareTokenEnv: "CRISPY_CF_API_TOKEN",
		ModelCallTimeout: 90 * time.Second}
	getenv := env(map[string]string{"VLLM_KEY": "sk-vllm-secret", "FILE_CF": "file-cf"})
	opts, warnings, err := LoadRouterOptions(e, getenv)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, p := range opts.Providers {
		names = append(names, p.Name)
	}
	if d := cmp.Diff([]string{"vllm", "nokey", EnvProviderName}, names); d != "" {
		t.Errorf("provider order (file first, flags last) (-want +got):\n%s", d)
	}
	if opts.Providers[0].APIKey != "sk-vllm-secret" || opts.Providers[0].Timeout != 1500*time.Millisecond {
		t.Errorf("vllm provider: key read %v, timeout %s", opts.Providers[0].APIKey != "", opts.Providers[0].Timeout)
	}
	if opts.CloudflareToken != "file-cf" || opts.CloudflareAccountID != "acc-1" || opts.CallTimeout != 90*time.Second {
		t.Errorf("cloudflare token from file %v, account %q, call timeout %s", opts.CloudflareToken == "file-cf", opts.CloudflareAccountID, opts.CallTimeout)
	}
	all := strings.Join(warnings, "\n")
	for _, w := range []string{`"nokey": its key variable EMPTY_KEY is empty`, `model "shared"`, "the routes file wins",
		`embedding model "bge-m3"`, "FILE_CF (routes file) and CRISPY_CF_API_TOKEN"} {
		if !strings.Contains(all, w) {
			t.Errorf("warnings lack %q:\n%s", w, all)
		}
	}
	if strings.Contains(all, "sk-vllm-secret") || strings.Contains(all, "file-cf") || strings.Contains(all, "flag-cf") {
		t.Errorf("a warning leaks a secret:\n%s", all)
	}

	r := NewRouter(opts)
	routes := []struct {
		model, want string
		timeout     time.Duration
		why         string
	}{
		{"shared", "vllm", 1500 * time.Millisecond, "listed by both: the file wins"},
		{"llama-3.1-8b", "vllm", 1500 * time.Millisecond, ""},
		{"qwen2", "vllm", 1500 * time.Millisecond, "file prefix qwen* beats the flags' catch-all"},
		{"qwen-special", EnvProviderName, 90 * time.Second, "the flags' exact ID beats the file's prefix"},
		{"mistral-7b", "nokey", 90 * time.Second, "no timeoutMs: the router's call timeout"},
		{"gpt-4o", EnvProviderName, 90 * time.Second, "catch-all"},
		{"@cf/meta/llama-3.1-8b-instruct", CloudflareProviderName, 90 * time.Second, "token from the file"},
	}
	for _, rt := range routes {
		info, err := r.Describe(rt.model)
		if err != nil || info.Provider != rt.want || info.CallTimeout != rt.timeout {
			t.Errorf("Describe(%q) = %+v, %v; want provider %s timeout %s (%s)", rt.model, info, err, rt.want, rt.timeout, rt.why)
		}
	}
	if m, _, err := r.route("qwen2"); err == nil {
		if oc := m.(*OpenAICompatible); oc.apiKey != "sk-vllm-secret" {
			t.Error("the vllm provider does not carry its key")
		}
	}
}

func TestLoadRouterOptionsErrors(t *testing.T) {
	tests := []struct {
		name string
		env  config.Env
		want string
	}{
		{"missing file", config.Env{RoutesFile: filepath.Join(t.TempDir(), "nope.json")}, "routes file"},
		{"invalid file names the file", config.Env{RoutesFile: writeRoutes(t, `{"providers":[{"nam":"a"}]}`)}, "routes.json: providers[0].nam: unknown field"},
		{"name clash with the flags' provider", config.Env{OpenAIBaseURL: "http://x/v1",
			RoutesFile: writeRoutes(t, `{"providers":[{"name":"openai","baseUrl":"http://a","models":["m"]}]}`)}, `"openai" is taken`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := LoadRouterOptions(tt.env, env(nil))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
	if _, _, err := LoadRouterOptions(config.Env{}, env(nil)); err != nil {
		t.Errorf("no routes file: %v", err)
	}
}

func TestRouterEmbedderRouting(t *testing.T) {
	r := NewRouter(RouterOptions{
		Providers: []ProviderConfig{
			{Name: "a", BaseURL: "http://a.invalid/v1", Models: []string{"*"}, Embeddings: []string{"bge-m3", "e5-*", "@cf/custom"},
				EmbeddingDimensions: map[string]int{"bge-m3": 1024}},
			{Name: "b", BaseURL: "http://b.invalid", Embeddings: []string{"e5-large*", "*"}},
		},
		CloudflareTokenEnv: "CF", CloudflareAccountID: "node-acc", Getenv: env(map[string]string{"CF": "tok"}),
	})
	noCF := NewRouter(RouterOptions{Getenv: env(nil)})
	tests := []struct {
		name, model string
		router      *Router
		meta        RequestMeta
		endpoint    string // "" for the built-in; "-" for not served
		dim         int
	}{
		{"built-in hash embedder", HashEmbedID, r, RequestMeta{}, "", DefaultHashEmbedDimension},
		{"built-in without providers", HashEmbedID, noCF, RequestMeta{}, "", DefaultHashEmbedDimension},
		{"built-in neural embedder", minilm.ID, r, RequestMeta{}, "", minilm.Dimension},
		{"exact with configured dimension", "bge-m3", r, RequestMeta{}, "http://a.invalid/v1/embeddings", 1024},
		{"longest prefix", "e5-large-v2", r, RequestMeta{}, "http://b.invalid/v1/embeddings", 0},
		{"shorter prefix", "e5-small", r, RequestMeta{}, "http://a.invalid/v1/embeddings", 0},
		{"catch-all", "nomic-embed-text", r, RequestMeta{}, "http://b.invalid/v1/embeddings", 0},
		{"@cf listed explicitly", "@cf/custom", r, RequestMeta{}, "http://a.invalid/v1/embeddings", 0},
		{"@cf on the node's account", "@cf/baai/bge-m3", r, RequestMeta{},
			DefaultCloudflareAPIBase + "/accounts/node-acc/ai/v1/embeddings", 1024},
		{"@cf on the tenant's account", "@cf/baai/bge-base-en-v1.5", r, RequestMeta{AccountID: "t-acc"},
			DefaultCloudflareAPIBase + "/accounts/t-acc/ai/v1/embeddings", 768},
		{"@cf through the tenant's gateway", "@cf/baai/bge-m3", r, RequestMeta{AccountID: "t-acc", GatewayID: "gw"},
			DefaultCloudflareGatewayBase + "/t-acc/gw/workers-ai/v1/embeddings", 1024},
		{"@cf without token", "@cf/baai/bge-m3", noCF, RequestMeta{}, "-", 0},
		{"local/ is reserved from catch-alls", "local/other", r, RequestMeta{}, "-", 0},
		{"nothing configured", "bge-m3", noCF, RequestMeta{}, "-", 0},
		{"empty", "", noCF, RequestMeta{}, "-", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := tt.router.EmbedderFor(tt.model, tt.meta)
			if tt.endpoint == "-" {
				if !errors.Is(err, ErrModelNotServed) {
					t.Fatalf("EmbedderFor(%q) = %v, %v; want ErrModelNotServed", tt.model, m, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.ID() != tt.model || m.Dimension() != tt.dim {
				t.Errorf("ID %q dim %d; want %q %d", m.ID(), m.Dimension(), tt.model, tt.dim)
			}
			if tt.endpoint == "" {
				switch m.(type) {
				case *HashEmbedder, *minilm.Model:
				default:
					t.Errorf("got %T, want the built-in", m)
				}
				return
			}
			if oe := m.(*OpenAIEmbeddings); oe.endpoint != tt.endpoint {
				t.Errorf("endpoint %q, want %q", oe.endpoint, tt.endpoint)
			}
		})
	}
	if _, err := NewRouter(RouterOptions{CloudflareToken: "t"}).Embedder("@cf/baai/bge-m3"); !errors.Is(err, errNoAccountID) {
		t.Errorf("@cf embedding without any account: %v", err)
	}
	if a, b := mustEmbedder(t, r, minilm.ID), mustEmbedder(t, r, minilm.ID); a != b {
		t.Error("local/minilm is rebuilt per call")
	}
	a, _ := r.Embedder("bge-m3")
	b, _ := r.Embedder("bge-m3")
	if a != b {
		t.Error("an exact entry's embedder is rebuilt per call; its learned dimension would be lost")
	}
}

func mustEmbedder(t *testing.T, r *Router, model string) EmbeddingModel {
	t.Helper()
	m, err := r.Embedder(model)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRouterOptionsFromEnvTimeoutsAndEmbeddings(t *testing.T) {
	def := config.DefaultEnv()
	def.OpenAIBaseURL = "http://x/v1"
	def.OpenAIEmbeddingModels = " bge-m3 , nomic* ,"
	def.ModelFirstTokenTimeout = 15 * time.Second
	opts := RouterOptionsFromEnv(def)
	if opts.CallTimeout != 120*time.Second || opts.FirstTokenTimeout != 15*time.Second {
		t.Errorf("DefaultEnv: call timeout %s, first token %s", opts.CallTimeout, opts.FirstTokenTimeout)
	}
	if d := cmp.Diff([]string{"bge-m3", "nomic*"}, opts.Providers[0].Embeddings); d != "" {
		t.Errorf("embedding models (-want +got):\n%s", d)
	}
	if opts := RouterOptionsFromEnv(config.Env{}); opts.CallTimeout >= 0 {
		t.Errorf("Env's zero timeout must mean none (router -1), got %s", opts.CallTimeout)
	}
	opts.Getenv = env(nil)
	if m, err := NewRouter(opts).Embedder("nomic-embed-text"); err != nil || m.ID() != "nomic-embed-text" {
		t.Errorf("flag embedding prefix: %v, %v", m, err)
	}
}
