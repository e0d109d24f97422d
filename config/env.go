package config

import "time"

// Env holds the deployment settings of one node. Each setting comes from a flag, else its
// environment variable (CRISPY_*, or the original implementation's name), else the default.
type Env struct {
	Environment string // ENVIRONMENT; "" reported as "unknown"
	NodeName    string // CRISPY_NODE_NAME; default: hostname

	ListenAddr string // CRISPY_LISTEN_ADDR; default ":8787"
	AdminAddr  string // CRISPY_ADMIN_ADDR; default "127.0.0.1:9787"
	AdminToken string // CRISPY_ADMIN_TOKEN; bearer token for the admin listener, optional

	DataDir    string // CRISPY_DATA_DIR; default "./data"
	TenantsDir string // CRISPY_TENANTS_DIR; default "./tenants"

	LogLevel  string // CRISPY_LOG_LEVEL; debug|info|warn|error, default info
	LogFormat string // CRISPY_LOG_FORMAT; json|console|auto (console when stdout is a terminal), default auto

	NATSURL    string // CRISPY_NATS_URL; empty runs the embedded server
	MilvusAddr string // CRISPY_MILVUS_ADDR / MILVUS_ADDR; empty uses the embedded vector store

	ModelID         string // MODEL_ID; overrides tenants' chat model when set
	FallbackModelID string // FALLBACK_MODEL_ID

	// OpenAI-compatible provider (Ollama, vLLM, llama.cpp, OpenAI, Workers AI's OpenAI endpoint).
	OpenAIBaseURL   string // CRISPY_OPENAI_BASE_URL, e.g. http://127.0.0.1:11434/v1
	OpenAIAPIKeyEnv string // CRISPY_OPENAI_API_KEY_ENV: name of the variable holding the key; default CRISPY_OPENAI_API_KEY
	OpenAIModels    string // CRISPY_OPENAI_MODELS: comma-separated model IDs or prefixes ending in '*' it serves; default "*"
	CloudflareToken string // CRISPY_CF_API_TOKEN_ENV-named variable's value is read at start; never logged

	MaxRequestBodySize int64 // MAX_REQUEST_BODY_SIZE; bytes, default 1 MiB
	MaxMessageLength   int   // MAX_MESSAGE_LENGTH; default 10000 (cannot exceed 10000)

	SessionIdleTimeout time.Duration // CRISPY_SESSION_IDLE_TIMEOUT; grain passivation, default 5m
	ShutdownTimeout    time.Duration // CRISPY_SHUTDOWN_TIMEOUT; drain budget, default 20s
}
