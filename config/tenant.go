package config

// TenantConfig is one tenant's configuration: the original implementation's schema
// (tenants/<name>/tenant.config.json, see CONTRACT.md) plus our optional fields.
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

// RateLimit is the sliding-window limit of CONTRACT.md "Rate limits".
type RateLimit struct {
	PerMinute      int `json:"perMinute"`
	Burst          int `json:"burst"`
	WindowSec      int `json:"windowSec,omitempty"`      // default 60
	BurstWindowSec int `json:"burstWindowSec,omitempty"` // default max(1, windowSec/6)
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
