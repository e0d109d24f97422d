package gateway

import (
	"errors"
	"testing"

	"github.com/crispy-enigma/crispy/config"
)

func TestRouterOptionsFromEnv(t *testing.T) {
	tests := []struct {
		name  string
		env   config.Env
		model string
		want  string // provider; "" means not served
	}{
		{"nothing configured serves only local/extractive", config.Env{}, "llama3", ""},
		{"nothing configured, local", config.Env{}, ExtractiveModelID, LocalProviderName},
		{"base URL serves every model by default", config.Env{OpenAIBaseURL: "http://127.0.0.1:11434/v1", OpenAIModels: "*"}, "llama3", EnvProviderName},
		{"empty model list means all", config.Env{OpenAIBaseURL: "http://x/v1"}, "llama3", EnvProviderName},
		{"model list restricts", config.Env{OpenAIBaseURL: "http://x/v1", OpenAIModels: "gpt-4o, llama*"}, "mistral", ""},
		{"model list prefix", config.Env{OpenAIBaseURL: "http://x/v1", OpenAIModels: "gpt-4o, llama*"}, "llama3.2", EnvProviderName},
		{"@cf needs a token", config.Env{OpenAIBaseURL: "http://x/v1", OpenAIModels: "*"}, "@cf/meta/llama", ""},
		{"@cf with a token", config.Env{CloudflareToken: "t"}, "@cf/meta/llama", CloudflareProviderName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := RouterOptionsFromEnv(tt.env)
			opts.Getenv = env(nil) // never read the test process's environment
			info, err := NewRouter(opts).Describe(tt.model)
			if tt.want == "" {
				if !errors.Is(err, ErrModelNotServed) {
					t.Errorf("Describe(%q) = %+v, %v; want not served", tt.model, info, err)
				}
				return
			}
			if err != nil || info.Provider != tt.want {
				t.Errorf("Describe(%q) = %+v, %v; want provider %q", tt.model, info, err, tt.want)
			}
		})
	}
}
