package config

// TenantConfig is one tenant's configuration: the original implementation's schema
// (tenants/<name>/tenant.config.json, see the README, "Tenant config") plus our optional fields.
// Decoding is strict: unknown fields are refused.
type TenantConfig struct {
	TenantID           string          `json:"tenantId"`
	AccountID          string          `json:"accountId"`
	AIGatewayID        string          `json:"aiGatewayId"`
	AIModels           AIModels        `json:"aiModels"`
	VectorizeNamespace string          `json:"vectorizeNamespace"`
	RateLimit          RateLimit       `json:"rateLimit"`
	FeatureFlags       map[string]bool `json:"featureFlags"`
	AllowedHosts       []string        `json:"allowedHosts"`
	// APIKeys holds "sha256:<hex>" digests; a plaintext key still loads (the original's format)
	// and is hashed at load time with a warning naming the tenant.
	APIKeys []string `json:"apiKeys"`

	TokenBudget           *TokenBudget `json:"tokenBudget,omitempty"`
	SessionRetentionDays  int          `json:"sessionRetentionDays,omitempty"`  // default 30
	MaxMessagesPerSession int          `json:"maxMessagesPerSession,omitempty"` // default 1000
	AllowedModels         []string     `json:"allowedModels,omitempty"`

	// Ours.
	Public bool         `json:"public,omitempty"`
	Cache  *CacheConfig `json:"cache,omitempty"`
	// Quota bounds what the tenant stores in its knowledge base; absent fields take the
	// Default* values, so every tenant has a bound (ParseTenantConfig fills them in).
	Quota *Quota `json:"quota,omitempty"`
	// AllowedOrigins are the browser origins ("https://app.example.com") whose pages may call the
	// tenant's API (CORS); "*" alone allows any origin, without credentials. Empty: none.
	AllowedOrigins []string `json:"allowedOrigins,omitempty"`
}

// AIModels names the models a tenant uses by default.
type AIModels struct {
	Chat         string `json:"chat"`
	Embeddings   string `json:"embeddings"`
	FallbackChat string `json:"fallbackChat,omitempty"` // ours
	TTS          string `json:"tts,omitempty"`          // ours
}

// RateLimit is the sliding-window limit of docs/api.md "Rate limits".
type RateLimit struct {
	PerMinute      int `json:"perMinute"`
	Burst          int `json:"burst"`
	WindowSec      int `json:"windowSec,omitempty"`      // default 60
	BurstWindowSec int `json:"burstWindowSec,omitempty"` // default max(1, windowSec/6)

	// TenantPerMinute and TenantBurst are the tenant-wide ceiling (ours), over all of its users
	// together, in the same windows. The per-user limit is keyed on an ID the client may choose,
	// so it alone cannot stop one client that varies its ID; the ceiling is keyed on nothing a
	// client sends. Default: DefaultTenantRateFactor times perMinute and burst.
	TenantPerMinute int `json:"tenantPerMinute,omitempty"`
	TenantBurst     int `json:"tenantBurst,omitempty"`
}

// Quota bounds a tenant's knowledge base (ours). Ingests that would pass it are refused with
// quota_exceeded; nothing already stored is removed.
type Quota struct {
	Documents   int64 `json:"documents,omitempty"`   // default DefaultQuotaDocuments
	Chunks      int64 `json:"chunks,omitempty"`      // default DefaultQuotaChunks
	StoredBytes int64 `json:"storedBytes,omitempty"` // default DefaultQuotaStoredBytes (document text)
}

// TokenBudget limits a tenant's model tokens per UTC day and month; zero means no limit.
type TokenBudget struct {
	Daily   int64 `json:"daily,omitempty"`
	Monthly int64 `json:"monthly,omitempty"`
}

// CacheConfig turns on the response cache for non-streamed chat (ours).
type CacheConfig struct {
	TTLSeconds int `json:"ttlSeconds"`
}

// Flag reports a boolean feature flag; an absent flag is false.
func (t *TenantConfig) Flag(name string) bool { return t.FeatureFlags[name] }

// ModelIDs lists every model the tenant's config names (default, fallback, embedding and speech
// models, and the allow-list), e.g. for the set of model label values metrics admit.
func (t *TenantConfig) ModelIDs() []string {
	var out []string
	for _, m := range append([]string{t.AIModels.Chat, t.AIModels.FallbackChat, t.AIModels.Embeddings, t.AIModels.TTS}, t.AllowedModels...) {
		if m != "" {
			out = append(out, m)
		}
	}
	return out
}
