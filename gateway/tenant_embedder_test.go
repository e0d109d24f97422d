package gateway

import (
	"context"
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/gateway/minilm"
)

func TestTenantEmbedder(t *testing.T) {
	providers := []ProviderConfig{{Name: "e5", BaseURL: "http://127.0.0.1:1/v1", Embeddings: []string{"multilingual-e5-small-q4", "bge-*"}}}
	noToken := NewRouter(RouterOptions{Providers: providers, Getenv: env(nil)})
	withToken := NewRouter(RouterOptions{Providers: providers, CloudflareToken: "cf", CloudflareAccountID: "acct", Getenv: env(nil)})
	tests := []struct {
		name       string
		r          *Router
		configured string
		wantID     string
		wantReason string // substring; "" means no fallback
	}{
		{"built-in hash", noToken, HashEmbedID, HashEmbedID, ""},
		{"built-in minilm", noToken, minilm.ID, minilm.ID, ""},
		{"exact openai route", noToken, "multilingual-e5-small-q4", "multilingual-e5-small-q4", ""},
		{"prefix openai route", noToken, "bge-m3", "bge-m3", ""},
		{"@cf/ with a token", withToken, "@cf/baai/bge-m3", "@cf/baai/bge-m3", ""},
		{"@cf/ without a token falls back", noToken, "@cf/baai/bge-m3", minilm.ID, "no Cloudflare API token"},
		{"unknown name falls back", noToken, "nope/model", minilm.ID, "not served"},
		{"empty name falls back", noToken, "", minilm.ID, "no embedding model configured"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, reason := tt.r.TenantEmbedder(RequestMeta{TenantID: "acme"}, tt.configured)
			if m.ID() != tt.wantID {
				t.Errorf("model %q, want %q", m.ID(), tt.wantID)
			}
			if tt.wantReason == "" && reason != "" || !strings.Contains(reason, tt.wantReason) {
				t.Errorf("reason %q, want one containing %q", reason, tt.wantReason)
			}
		})
	}
}

func TestEmbeddingInputType(t *testing.T) {
	for _, on := range []bool{false, true} {
		up := newEmbedUpstream(t, embedServer(4, false))
		e := NewOpenAIEmbeddings(OpenAIEmbeddingOptions{Name: "e5", BaseURL: up.URL, Model: "e5", InputType: on})
		ctx := context.Background()
		if _, err := e.Embed(ctx, []string{"t1"}); err != nil {
			t.Fatal(err)
		}
		passage := up.last().Body["input_type"]
		if _, err := e.EmbedQuery(ctx, []string{"t1"}); err != nil {
			t.Fatal(err)
		}
		query := up.last().Body["input_type"]
		want := [2]any{nil, nil}
		if on {
			want = [2]any{"passage", "query"}
		}
		if got := [2]any{passage, query}; got != want {
			t.Errorf("InputType %v: input_type passage/query = %v, want %v", on, got, want)
		}
	}
}

func TestNonFinite(t *testing.T) {
	nan, inf := float32(0), float32(1)
	nan /= nan
	inf /= 0
	tests := []struct {
		v    []float32
		want int
	}{{nil, -1}, {[]float32{1, 2}, -1}, {[]float32{1, nan}, 1}, {[]float32{inf, 0}, 0}, {[]float32{0, -inf}, 1}}
	for _, tt := range tests {
		if got := NonFinite(tt.v); got != tt.want {
			t.Errorf("NonFinite(%v) = %d, want %d", tt.v, got, tt.want)
		}
	}
}
