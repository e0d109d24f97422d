package gateway

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/crispy-enigma/crispy/gateway/minilm"
)

// cloudflareEmbeddingDimensions are the vector lengths of Workers AI's embedding models, so that a
// collection can be sized before the first call. Models not listed learn theirs from the first response.
var cloudflareEmbeddingDimensions = map[string]int{
	"@cf/baai/bge-small-en-v1.5": 384,
	"@cf/baai/bge-base-en-v1.5":  768,
	"@cf/baai/bge-large-en-v1.5": 1024,
	"@cf/baai/bge-m3":            1024,
}

// Embedder returns the embedding model for model ID, for callers that serve no particular tenant:
// @cf/ models use RouterOptions.CloudflareAccountID. See EmbedderFor.
func (r *Router) Embedder(model string) (EmbeddingModel, error) {
	return r.EmbedderFor(model, RequestMeta{})
}

// EmbedderFor returns the embedding model for model ID, on behalf of meta's tenant. Order:
// local/hash-embed and local/minilm (built in); an exact embeddings entry of the routing table; the longest embeddings
// prefix; @cf/ models on Workers AI's OpenAI-compatible /v1/embeddings of the tenant's account
// (meta.AccountID, else RouterOptions.CloudflareAccountID), through the tenant's AI Gateway when
// meta.GatewayID is set, when a Cloudflare token is configured. With meta.Tenant set and a Meter that
// is an EmbeddingMeter, the upstream ones are metered (embed_meter.go). Anything else is ErrModelNotServed
// (wrapped, naming the model). Embedders of exact entries are shared, so a dimension learned by one
// call is known to the next.
func (r *Router) EmbedderFor(model string, meta RequestMeta) (EmbeddingModel, error) {
	switch model {
	case HashEmbedID:
		return r.hashEmbed, nil
	case minilm.ID:
		m, err := r.miniLM()
		if err != nil {
			return nil, fmt.Errorf("embedding model %q: %w", model, err)
		}
		return m, nil
	}
	if e := r.embedExact[model]; e != nil {
		return r.metered(e, meta), nil
	}
	reserved := strings.HasPrefix(model, cloudflarePrefix) || strings.HasPrefix(model, localPrefix)
	for _, pr := range r.embedPrefixes {
		if !strings.HasPrefix(model, pr.prefix) {
			continue
		}
		if reserved && !strings.HasPrefix(pr.prefix, cloudflarePrefix) && !strings.HasPrefix(pr.prefix, localPrefix) {
			continue
		}
		return r.metered(r.providerEmbedder(pr.provider, model), meta), nil
	}
	if strings.HasPrefix(model, cloudflarePrefix) && r.cloudflare != nil {
		account := meta.AccountID
		if account == "" {
			account = r.cfAccountID
		}
		if account == "" {
			return nil, fmt.Errorf("embedding model %q: %w (and RouterOptions.CloudflareAccountID is empty)", model, errNoAccountID)
		}
		return r.metered(r.cloudflareEmbedder(model, account, meta), meta), nil
	}
	why := ""
	if model != "" && strings.HasPrefix(model, cloudflarePrefix) {
		why = " (no Cloudflare API token is configured)"
	}
	return nil, fmt.Errorf("embedding model %q%s: %w", model, why, ErrModelNotServed)
}

// providerEmbedder builds the embedder of table provider i for model.
func (r *Router) providerEmbedder(i int, model string) *OpenAIEmbeddings {
	pc := r.providers[i].cfg
	return NewOpenAIEmbeddings(OpenAIEmbeddingOptions{
		Name: pc.Name, BaseURL: pc.BaseURL, APIKey: pc.APIKey, APIKeyEnv: pc.APIKeyEnv, Getenv: r.getenv,
		HTTPClient: r.httpClient, Model: model, Dimension: pc.EmbeddingDimensions[model],
		BatchSize: pc.EmbeddingBatchSize, InputType: pc.EmbeddingInputType, Timeout: r.embedTimeout(pc),
		MaxRetries: r.retriesOption(), RetryBaseDelay: r.baseDelay, RetryMaxDelay: r.maxDelay,
	})
}

// cloudflareEmbedder calls Workers AI for one account, through its AI Gateway when meta names one.
// Workers AI takes at most 100 texts per request.
func (r *Router) cloudflareEmbedder(model, account string, meta RequestMeta) *OpenAIEmbeddings {
	cf := r.cloudflare
	endpoint := cf.apiBase + "/accounts/" + url.PathEscape(account) + "/ai/v1/embeddings"
	var header http.Header
	if meta.GatewayID != "" {
		endpoint = cf.gatewayBase + "/" + url.PathEscape(account) + "/" + url.PathEscape(meta.GatewayID) +
			"/workers-ai/v1/embeddings"
		header = http.Header{"Cf-Aig-Metadata": {aiGatewayMetadata(meta)}}
	}
	return NewOpenAIEmbeddings(OpenAIEmbeddingOptions{
		Name: CloudflareProviderName, Endpoint: endpoint, Header: header, APIKey: cf.token,
		HTTPClient: r.httpClient, Model: model, Dimension: cloudflareEmbeddingDimensions[model],
		Timeout: r.embedTimeout(ProviderConfig{}), MaxRetries: r.retriesOption(),
		RetryBaseDelay: r.baseDelay, RetryMaxDelay: r.maxDelay,
	})
}

// embedTimeout converts the router's resolved bound back to the options' convention (negative: none).
func (r *Router) embedTimeout(pc ProviderConfig) time.Duration {
	if d := r.providerTimeout(pc); d > 0 {
		return d
	}
	return -1
}

// retriesOption converts the router's resolved retry count back to the options' convention.
func (r *Router) retriesOption() int {
	if r.maxRetries == 0 {
		return -1
	}
	return r.maxRetries
}

// DefaultEmbeddingModel is the embedder of tenants that configure none, or one this node cannot serve:
// the built-in neural sentence embedder, so retrieval matches meaning with no external service.
const DefaultEmbeddingModel = minilm.ID

// TenantEmbedder resolves a tenant's aiModels.embeddings (configured) to the model that embeds its
// documents and queries on this node. A model the node cannot serve — an @cf/ model without a
// Cloudflare token, a name no route serves, an empty name — resolves to DefaultEmbeddingModel, and
// fallbackReason says why (empty when configured is served as is), so the caller can log once per
// tenant which model it really uses and /health can show it. Only when the built-in model itself
// cannot load does it fall back to local/hash-embed, again with a reason.
//
// The result depends on the routing table and the tenant's config only, never on a model's health:
// a provider that is down fails its calls (502) rather than silently switching the tenant's vectors
// to another model's space.
func (r *Router) TenantEmbedder(meta RequestMeta, configured string) (m EmbeddingModel, fallbackReason string) {
	if configured != "" {
		e, err := r.EmbedderFor(configured, meta)
		if err == nil {
			return e, ""
		}
		fallbackReason = err.Error()
	} else {
		fallbackReason = "no embedding model configured"
	}
	def, err := r.EmbedderFor(DefaultEmbeddingModel, meta)
	if err != nil {
		return r.hashEmbed, fmt.Sprintf("%s; %s", fallbackReason, err)
	}
	return def, fallbackReason
}
