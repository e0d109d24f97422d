package gateway

import (
	"fmt"
	"strings"

	"github.com/crispy-enigma/crispy/config"
)

// EnvProviderName names the OpenAI-compatible provider configured by Env (CRISPY_OPENAI_BASE_URL).
const EnvProviderName = "openai"

// RouterOptionsFromEnv turns the node's flag settings into router options: one OpenAI-compatible
// provider when OpenAIBaseURL is set, serving OpenAIModels (default "*") and OpenAIEmbeddingModels,
// Workers AI when a Cloudflare token was loaded, and the call timeouts. It does not read
// Env.RoutesFile: LoadRouterOptions does, and adds this provider after the file's. Call
// Env.LoadSecrets first. The caller adds HTTPClient and Local (e.g. local/extractive with a retriever)
// as it needs.
func RouterOptionsFromEnv(e config.Env) RouterOptions {
	var opts RouterOptions
	if e.OpenAIBaseURL != "" {
		models := splitList(e.OpenAIModels)
		if len(models) == 0 {
			models = []string{"*"}
		}
		opts.Providers = append(opts.Providers, ProviderConfig{
			Name:       EnvProviderName,
			BaseURL:    e.OpenAIBaseURL,
			APIKey:     e.OpenAIAPIKey,
			APIKeyEnv:  e.OpenAIAPIKeyEnv,
			Models:     models,
			Embeddings: splitList(e.OpenAIEmbeddingModels),
		})
	}
	opts.CloudflareToken = e.CloudflareToken
	opts.CloudflareTokenEnv = e.CloudflareTokenEnv
	// Env's zero means "no bound" (DefaultEnv sets 120 s); the router's zero means its default.
	opts.CallTimeout = -1
	if e.ModelCallTimeout > 0 {
		opts.CallTimeout = e.ModelCallTimeout
	}
	if e.ModelFirstTokenTimeout > 0 {
		opts.FirstTokenTimeout = e.ModelFirstTokenTimeout
	}
	return opts
}

// LoadRouterOptions is RouterOptionsFromEnv plus the routing table file named by Env.RoutesFile, read
// once here with its keys (through getenv; nil uses the process environment). The file's providers
// come first and the flags' provider last, so where both list the same model ID or the same prefix the
// file wins; otherwise the most specific entry wins as always (an exact ID beats any prefix, a longer
// prefix a shorter one). Each such shadowed entry, a key variable that is named but empty, and a
// Cloudflare token given both ways are returned as warnings for the start-up log; keys never are.
func LoadRouterOptions(e config.Env, getenv func(string) string) (RouterOptions, []string, error) {
	if getenv == nil {
		getenv = config.Getenv
	}
	opts := RouterOptionsFromEnv(e)
	if e.RoutesFile == "" {
		return opts, nil, nil
	}
	rt, err := LoadRoutes(e.RoutesFile)
	if err != nil {
		return RouterOptions{}, nil, err
	}
	return mergeRoutes(opts, rt, e.RoutesFile, getenv)
}

// mergeRoutes puts the file's providers before the flags' ones and reports what the file shadows.
func mergeRoutes(opts RouterOptions, rt Routes, file string, getenv func(string) string) (RouterOptions, []string, error) {
	fileProviders, warnings := rt.ProviderConfigs(getenv)
	for _, fp := range fileProviders {
		for _, flagP := range opts.Providers {
			if fp.Name == flagP.Name {
				return RouterOptions{}, nil, fmt.Errorf("routes file %s: provider name %q is taken by the --openai-base-url provider; rename it",
					file, fp.Name)
			}
			for _, m := range flagP.Models {
				if contains(fp.Models, m) {
					warnings = append(warnings, fmt.Sprintf("routes: model %q is listed by the routes file's provider %q and by --openai-models; the routes file wins",
						m, fp.Name))
				}
			}
			for _, m := range flagP.Embeddings {
				if contains(fp.Embeddings, m) {
					warnings = append(warnings, fmt.Sprintf("routes: embedding model %q is listed by the routes file's provider %q and by --openai-embedding-models; the routes file wins",
						m, fp.Name))
				}
			}
		}
	}
	opts.Providers = append(fileProviders, opts.Providers...)
	if cf := rt.Cloudflare; cf != nil {
		opts.CloudflareAccountID = cf.AccountID
		token := getenv(cf.APITokenEnv)
		switch {
		case token == "":
			warnings = append(warnings, fmt.Sprintf("routes: cloudflare.apiTokenEnv names %s, which is empty or unset", cf.APITokenEnv))
		case opts.CloudflareToken != "" && opts.CloudflareToken != token:
			warnings = append(warnings, fmt.Sprintf("routes: Cloudflare tokens are set by both %s (routes file) and %s (--cf-api-token-env) and differ; the routes file wins",
				cf.APITokenEnv, opts.CloudflareTokenEnv))
		}
		if token != "" {
			opts.CloudflareToken = token
			opts.CloudflareTokenEnv = cf.APITokenEnv
		}
	}
	return opts, warnings, nil
}

func splitList(s string) []string {
	var out []string
	for _, m := range strings.Split(s, ",") {
		if m = strings.TrimSpace(m); m != "" {
			out = append(out, m)
		}
	}
	return out
}
