package gateway

import (
	"strings"

	"github.com/crispy-enigma/crispy/config"
)

// EnvProviderName names the OpenAI-compatible provider configured by Env (CRISPY_OPENAI_BASE_URL).
const EnvProviderName = "openai"

// RouterOptionsFromEnv turns the node's settings into router options: one OpenAI-compatible provider
// when OpenAIBaseURL is set, serving OpenAIModels (default "*"), and Workers AI when a Cloudflare token
// was loaded. Call Env.LoadSecrets first. The caller adds HTTPClient and Local (e.g. local/extractive
// with a retriever) as it needs.
func RouterOptionsFromEnv(e config.Env) RouterOptions {
	var opts RouterOptions
	if e.OpenAIBaseURL != "" {
		var models []string
		for _, m := range strings.Split(e.OpenAIModels, ",") {
			if m = strings.TrimSpace(m); m != "" {
				models = append(models, m)
			}
		}
		if len(models) == 0 {
			models = []string{"*"}
		}
		opts.Providers = append(opts.Providers, ProviderConfig{
			Name:      EnvProviderName,
			BaseURL:   e.OpenAIBaseURL,
			APIKey:    e.OpenAIAPIKey,
			APIKeyEnv: e.OpenAIAPIKeyEnv,
			Models:    models,
		})
	}
	opts.CloudflareToken = e.CloudflareToken
	opts.CloudflareTokenEnv = e.CloudflareTokenEnv
	return opts
}
