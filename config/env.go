package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// Env holds the deployment settings of one node. Each setting comes from a flag, else its
// environment variable (CRISPY_*, or the original implementation's name), else the default.
//
// Use it as:
//
//	env := config.DefaultEnv()
//	env.BindFlags(cmd.Flags(), os.Getenv)
//	// … flags parsed by cobra …
//	env.LoadSecrets(os.Getenv)
//	if err := env.Validate(); err != nil { … }
//	log.Info().Fields(env.Redacted()).Msg("starting")
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

	// CloudflareTokenEnv names the variable LoadSecrets reads CloudflareToken from
	// (CRISPY_CF_API_TOKEN_ENV; default CRISPY_CF_API_TOKEN). Secrets are referenced by
	// variable name so that they never appear in flags, help output or logs.
	CloudflareTokenEnv string
	// OpenAIAPIKey is the value of the variable named by OpenAIAPIKeyEnv, read by LoadSecrets;
	// never logged.
	OpenAIAPIKey string
	// OpenAIEmbeddingModels: CRISPY_OPENAI_EMBEDDING_MODELS, comma-separated embedding model IDs (or
	// prefixes ending in '*') the OpenAI-compatible API serves on /v1/embeddings; default none.
	OpenAIEmbeddingModels string

	// RoutesFile: CRISPY_ROUTES, a JSON routing table of providers (gateway.Routes); the provider of
	// the --openai-* flags is added after its entries.
	RoutesFile string
	// ModelCallTimeout: CRISPY_MODEL_TIMEOUT, the bound of one model call, streaming included, for
	// providers without their own timeoutMs; default 120s, 0 or negative means none.
	ModelCallTimeout time.Duration
	// ModelFirstTokenTimeout: CRISPY_MODEL_FIRST_TOKEN_TIMEOUT, the bound of a call's wait for its
	// first token before it is retried or falls back; default 0 (none beyond the call timeout).
	ModelFirstTokenTimeout time.Duration

	MaxRequestBodySize int64 // MAX_REQUEST_BODY_SIZE; bytes, default 1 MiB
	MaxMessageLength   int   // MAX_MESSAGE_LENGTH; default 10000 (cannot exceed 10000)

	SessionIdleTimeout time.Duration // CRISPY_SESSION_IDLE_TIMEOUT; grain passivation, default 5m

	// BudgetLeaseCalls: CRISPY_BUDGET_LEASE_CALLS, how many calls' estimates a node reserves of a
	// tenant's token budget at once and admits from by itself (metering.LeaseOptions); 0 reserves
	// every call on the Budget grain. Default 64.
	BudgetLeaseCalls int

	// RateLeaseLife: CRISPY_RATE_LEASE, how long a node admits a busy user's requests from a block
	// of rate-limit permits its tenant's RateLimiter grain leased it (metering.RateLeaseOptions);
	// 0 asks the grain on every request. Default 100ms, at most 1s.
	RateLeaseLife time.Duration

	// TrustedProxies: CRISPY_TRUSTED_PROXIES, comma-separated IPs or CIDR prefixes of the reverse
	// proxies in front of this node. Only a peer in this list may name the client in
	// X-Forwarded-For; default none (the peer address is the client). ParsedTrustedProxies.
	TrustedProxies string

	// MaxConnsPerClient: CRISPY_MAX_CONNS_PER_CLIENT, the open connections one client address may
	// hold on the tenant listener (trusted proxies are exempt); default 64.
	MaxConnsPerClient int
	// MaxInflightPerTenant: CRISPY_MAX_INFLIGHT_PER_TENANT, one tenant's requests in flight, open
	// streams included; past it 503 with Retry-After; default 256.
	MaxInflightPerTenant int

	// OTLPEndpoint: CRISPY_OTLP_ENDPOINT, an OTLP/HTTP collector URL (e.g. http://127.0.0.1:4318)
	// to export traces to; empty (the default) turns tracing off.
	OTLPEndpoint    string
	ShutdownTimeout time.Duration // CRISPY_SHUTDOWN_TIMEOUT; drain budget, default 20s

	// GCHeadroom: CRISPY_GC_HEADROOM, the least heap growth in bytes before the garbage collector
	// runs again (internal/gctune); 0 leaves the collector to GOGC alone. Ignored when GOGC is set.
	// Default 64 MiB.
	GCHeadroom int64
	// GOGC is the GOGC variable as found (the runtime reads it itself); when set, the operator
	// chose the collector's pace and GCHeadroom is not applied.
	GOGC string

	// Cluster holds the multi-node settings; with Cluster.Name empty the node runs alone.
	Cluster Cluster

	// Collected by BindFlags, reported by Validate and Warnings.
	flags    *pflag.FlagSet
	envErrs  []envError
	warnings []string
}

// Cluster are serve's multi-node settings. With Name empty the node runs alone: embedded NATS
// without listeners, in-memory membership, replicas 1.
type Cluster struct {
	Name           string        // CRISPY_CLUSTER: protoactor and NATS cluster name
	Host           string        // CRISPY_CLUSTER_HOST: protoactor remote (gRPC) listen host; default 127.0.0.1
	Port           int           // CRISPY_CLUSTER_PORT: protoactor remote port; 0 = a free port
	AdvertisedHost string        // CRISPY_CLUSTER_ADVERTISE: host:port peers dial, when not Host:Port
	MemberTTL      time.Duration // CRISPY_MEMBER_TTL: how long a crashed member stays in the topology; default 3s

	NATSListen        string // CRISPY_NATS_LISTEN: embedded server's client listener host:port
	NATSClusterListen string // CRISPY_NATS_CLUSTER_LISTEN: embedded server's route listener host:port
	NATSRoutes        string // CRISPY_NATS_ROUTES: peers' route URLs, comma-separated
	// NATSElectionTimeout is CRISPY_NATS_ELECTION_TIMEOUT: how long the embedded server's raft
	// followers wait for a silent leader before electing another (this to twice this; the leader's
	// heartbeat is an eighth of it); 0 keeps nats-server's own 4–9 s. Default 500ms.
	NATSElectionTimeout time.Duration
}

// DefaultMemberTTL is --member-ttl's default. Peers drop a crashed member when its key has not been
// refreshed for this long (heartbeats every TTL/3), and the crashed member's grains re-activate
// elsewhere at the next request: 3 s keeps that under 5 s, while two lost heartbeats in a row are
// still tolerated.
const DefaultMemberTTL = 3 * time.Second

// DefaultNATSElectionTimeout is --nats-election-timeout's default (natsserver.DefaultElectionTimeout,
// which config does not import; a test there keeps the two equal). When the server leading a
// JetStream stream dies, its followers elect a new leader after 0.5–1 s instead of nats-server's
// 4–9 s: the stream refuses writes meanwhile, so that is how long the chat sessions of a crashed node
// wait. The price is elections of healthy leaders when a process stalls for a few hundred
// milliseconds (docs/architecture.md, Failover).
const DefaultNATSElectionTimeout = 500 * time.Millisecond

// MinNATSElectionTimeout is the shortest --nats-election-timeout (natsserver.MinElectionTimeout):
// heartbeats every 50 ms. Shorter ones depose healthy leaders on a GC pause or a busy CPU.
const MinNATSElectionTimeout = 400 * time.Millisecond

// envError is a malformed environment value; it is reported unless the flag it feeds was
// given explicitly on the command line (the flag then owns the value).
type envError struct {
	flag string
	err  error
}

// MaxMessageLengthLimit is the hard upper bound of MAX_MESSAGE_LENGTH (docs/api.md: message is
// 1–10000 characters; the variable may only lower it).
const MaxMessageLengthLimit = 10000

// maxBudgetLeaseCalls bounds --budget-lease-calls: past a few thousand calls a lease saves no
// measurable round trips and holds more of a tenant's budget away from the other nodes.
const maxBudgetLeaseCalls = 4096

// maxRateLeaseLife bounds --rate-lease: the RateLimiter grain grants a lease no longer than this.
const maxRateLeaseLife = time.Second

// DefaultEnv returns the built-in defaults, before flags and environment variables.
func DefaultEnv() Env {
	node, err := os.Hostname()
	if err != nil || node == "" {
		node = "crispy"
	}
	return Env{
		NodeName:             node,
		ListenAddr:           ":8787",
		AdminAddr:            "127.0.0.1:9787",
		DataDir:              "./data",
		TenantsDir:           "./tenants",
		LogLevel:             "info",
		LogFormat:            "auto",
		OpenAIAPIKeyEnv:      "CRISPY_OPENAI_API_KEY",
		OpenAIModels:         "*",
		CloudflareTokenEnv:   "CRISPY_CF_API_TOKEN",
		ModelCallTimeout:     120 * time.Second,
		MaxRequestBodySize:   1 << 20,
		MaxConnsPerClient:    64,
		MaxInflightPerTenant: 256,
		MaxMessageLength:     MaxMessageLengthLimit,
		SessionIdleTimeout:   5 * time.Minute,
		BudgetLeaseCalls:     64,
		RateLeaseLife:        100 * time.Millisecond,
		ShutdownTimeout:      20 * time.Second,
		GCHeadroom:           64 << 20,
		Cluster:              Cluster{Host: "127.0.0.1", MemberTTL: DefaultMemberTTL, NATSElectionTimeout: DefaultNATSElectionTimeout},
	}
}

// BindFlags registers one flag per setting on fs. A flag's default is the first non-empty
// environment variable among its names (read through getenv), else e's current value — so call
// it on DefaultEnv(). Precedence is therefore flag > environment variable > built-in default.
// A malformed environment value (MAX_REQUEST_BODY_SIZE=abc) leaves the built-in default in
// place and is reported by Validate, not ignored.
func (e *Env) BindFlags(fs *pflag.FlagSet, getenv func(string) string) {
	e.flags = fs
	b := binder{e: e, fs: fs, getenv: getenv}

	b.str(&e.Environment, "environment", "deployment environment shown by /health (\"unknown\" when empty)", "CRISPY_ENVIRONMENT", "ENVIRONMENT")
	b.str(&e.NodeName, "node-name", "this node's name in logs, /health and the cluster", "CRISPY_NODE_NAME")
	b.str(&e.ListenAddr, "listen", "address of the tenant-facing HTTP listener", "CRISPY_LISTEN_ADDR")
	b.str(&e.AdminAddr, "admin-addr", "address of the operator listener (/metrics, /healthz, /readyz, pprof)", "CRISPY_ADMIN_ADDR")
	b.secret(&e.AdminToken, "admin-token", "bearer token required on the operator listener (prefer the environment variable)", "CRISPY_ADMIN_TOKEN")
	b.str(&e.DataDir, "data-dir", "directory for JetStream, SQLite and the embedded vector store", "CRISPY_DATA_DIR")
	b.str(&e.TenantsDir, "tenants-dir", "directory of <tenant>/tenant.config.json files (embedded defaults when it does not exist)", "CRISPY_TENANTS_DIR")
	b.str(&e.LogLevel, "log-level", "debug|info|warn|error", "CRISPY_LOG_LEVEL")
	b.str(&e.LogFormat, "log-format", "json|console|auto (console when stdout is a terminal)", "CRISPY_LOG_FORMAT")
	b.str(&e.NATSURL, "nats-url", "NATS server URL(s); empty runs the embedded server", "CRISPY_NATS_URL")
	b.str(&e.MilvusAddr, "milvus-addr", "Milvus address; empty uses the embedded vector store", "CRISPY_MILVUS_ADDR", "MILVUS_ADDR")
	b.str(&e.ModelID, "model-id", "chat model overriding every tenant's aiModels.chat", "CRISPY_MODEL_ID", "MODEL_ID")
	b.str(&e.FallbackModelID, "fallback-model-id", "chat model tried when the primary fails", "CRISPY_FALLBACK_MODEL_ID", "FALLBACK_MODEL_ID")
	b.str(&e.OpenAIBaseURL, "openai-base-url", "base URL of an OpenAI-compatible API, e.g. http://127.0.0.1:11434/v1", "CRISPY_OPENAI_BASE_URL")
	b.str(&e.OpenAIAPIKeyEnv, "openai-api-key-env", "name of the environment variable holding the OpenAI-compatible API key", "CRISPY_OPENAI_API_KEY_ENV")
	b.str(&e.OpenAIModels, "openai-models", "comma-separated model IDs or prefixes ending in '*' served by the OpenAI-compatible API", "CRISPY_OPENAI_MODELS")
	b.str(&e.CloudflareTokenEnv, "cf-api-token-env", "name of the environment variable holding the Cloudflare API token", "CRISPY_CF_API_TOKEN_ENV")
	b.str(&e.OpenAIEmbeddingModels, "openai-embedding-models", "comma-separated embedding model IDs or prefixes ending in '*' served by the OpenAI-compatible API on /v1/embeddings", "CRISPY_OPENAI_EMBEDDING_MODELS")
	b.str(&e.RoutesFile, "routes", "JSON routing table of model providers (the --openai-* provider is added after its entries)", "CRISPY_ROUTES")
	b.duration(&e.ModelCallTimeout, "model-timeout", "bound of one model call, streaming included, for providers without their own timeoutMs (0: none)", "CRISPY_MODEL_TIMEOUT")
	b.duration(&e.ModelFirstTokenTimeout, "model-first-token-timeout", "bound of a model call's wait for its first token before retry or fallback (0: none)", "CRISPY_MODEL_FIRST_TOKEN_TIMEOUT")
	b.int64(&e.MaxRequestBodySize, "max-body-size", "largest request body in bytes (Content-Length above it → 413)", "CRISPY_MAX_BODY_SIZE", "MAX_REQUEST_BODY_SIZE")
	b.int(&e.MaxMessageLength, "max-message-length", "largest chat message in characters (1–10000)", "CRISPY_MAX_MESSAGE_LENGTH", "MAX_MESSAGE_LENGTH")
	b.duration(&e.SessionIdleTimeout, "session-idle-timeout", "idle time after which a chat session grain passivates", "CRISPY_SESSION_IDLE_TIMEOUT")
	b.duration(&e.RateLeaseLife, "rate-lease", "how long a node admits a busy user's requests from a block of rate-limit permits leased by the tenant's limiter (0: every request asks the limiter)", "CRISPY_RATE_LEASE")
	b.int(&e.BudgetLeaseCalls, "budget-lease-calls", "calls' worth of a tenant's token budget a node reserves at once and admits from itself (0: every call reserves on its own)", "CRISPY_BUDGET_LEASE_CALLS")
	b.int(&e.MaxConnsPerClient, "max-conns-per-client", "open connections one client address may hold on --listen (trusted proxies exempt)", "CRISPY_MAX_CONNS_PER_CLIENT")
	b.int(&e.MaxInflightPerTenant, "max-inflight-per-tenant", "one tenant's requests in flight, streams included (past it: 503 with Retry-After)", "CRISPY_MAX_INFLIGHT_PER_TENANT")
	b.str(&e.TrustedProxies, "trusted-proxies", "comma-separated IPs or CIDRs of reverse proxies allowed to set X-Forwarded-For (empty: none)", "CRISPY_TRUSTED_PROXIES")
	b.duration(&e.ShutdownTimeout, "shutdown-timeout", "time allowed to drain requests on shutdown", "CRISPY_SHUTDOWN_TIMEOUT")
	e.GOGC = getenv("GOGC")
	b.int64(&e.GCHeadroom, "gc-headroom", "least heap growth in bytes before the garbage collector runs again (0: GOGC alone; ignored when GOGC is set)", "CRISPY_GC_HEADROOM")
	b.str(&e.OTLPEndpoint, "otlp-endpoint", "OTLP/HTTP collector URL to export traces to, e.g. http://127.0.0.1:4318 (empty: tracing off)", "CRISPY_OTLP_ENDPOINT")

	cs := &e.Cluster
	b.str(&cs.Name, "cluster", "join the named cluster: NATS KV membership, replicated JetStream; empty runs a single node", "CRISPY_CLUSTER")
	b.str(&cs.Host, "cluster-host", "host of the actor remote (gRPC) listener", "CRISPY_CLUSTER_HOST")
	b.int(&cs.Port, "cluster-port", "port of the actor remote (gRPC) listener; 0 picks a free one, peers learn it from the membership bucket", "CRISPY_CLUSTER_PORT")
	b.str(&cs.AdvertisedHost, "cluster-advertise", "host:port peers use to reach the actor remote, when not cluster-host:cluster-port", "CRISPY_CLUSTER_ADVERTISE")
	b.duration(&cs.MemberTTL, "member-ttl", "a crashed member leaves the topology after this long without heartbeats", "CRISPY_MEMBER_TTL")
	b.str(&cs.NATSListen, "nats-listen", "embedded NATS client listener host:port (empty: in-process only; a clustered server picks a free loopback port)", "CRISPY_NATS_LISTEN")
	b.str(&cs.NATSClusterListen, "nats-cluster-listen", "embedded NATS route listener host:port, for --cluster without --nats-url", "CRISPY_NATS_CLUSTER_LISTEN")
	b.str(&cs.NATSRoutes, "nats-routes", "comma-separated route URLs of the embedded NATS peers (nats://h1:6222,nats://h2:6222); may include this node's own", "CRISPY_NATS_ROUTES")
	b.duration(&cs.NATSElectionTimeout, "nats-election-timeout", "embedded NATS cluster: a JetStream stream whose leader died elects another after this to twice this (raft heartbeats every eighth of it); 0 keeps nats-server's 4–9s", "CRISPY_NATS_ELECTION_TIMEOUT")
}

// LoadSecrets reads the secrets named by OpenAIAPIKeyEnv and CloudflareTokenEnv. Call it after
// the flags are parsed, since the flags choose the variable names.
func (e *Env) LoadSecrets(getenv func(string) string) {
	if e.OpenAIAPIKeyEnv != "" {
		e.OpenAIAPIKey = getenv(e.OpenAIAPIKeyEnv)
	}
	if e.CloudflareTokenEnv != "" {
		e.CloudflareToken = getenv(e.CloudflareTokenEnv)
	}
}

// Warnings lists what BindFlags noticed but did not refuse, e.g. the same setting given by
// two environment variables with different values (the first name listed wins).
func (e *Env) Warnings() []string { return append([]string(nil), e.warnings...) }

var logLevels = map[string]bool{"debug": true, "info": true, "warn": true, "error": true}
var logFormats = map[string]bool{"json": true, "console": true, "auto": true}

// Validate reports every malformed or out-of-range setting at once, including malformed
// environment values seen by BindFlags (unless a flag overrode them).
func (e *Env) Validate() error {
	var errs []error
	for _, ee := range e.envErrs {
		if e.flags != nil && e.flags.Changed(ee.flag) {
			continue
		}
		errs = append(errs, ee.err)
	}
	if e.BudgetLeaseCalls < 0 || e.BudgetLeaseCalls > maxBudgetLeaseCalls {
		errs = append(errs, fmt.Errorf("--budget-lease-calls: must be 0 to %d (got %d)", maxBudgetLeaseCalls, e.BudgetLeaseCalls))
	}
	if e.RateLeaseLife < 0 || e.RateLeaseLife > maxRateLeaseLife {
		errs = append(errs, fmt.Errorf("--rate-lease: must be 0 to %s (got %s)", maxRateLeaseLife, e.RateLeaseLife))
	}
	if e.GCHeadroom < 0 {
		errs = append(errs, fmt.Errorf("--gc-headroom: must be 0 or more bytes (got %d)", e.GCHeadroom))
	}
	if e.MaxConnsPerClient <= 0 {
		errs = append(errs, fmt.Errorf("--max-conns-per-client: must be positive (got %d)", e.MaxConnsPerClient))
	}
	if e.MaxInflightPerTenant <= 0 {
		errs = append(errs, fmt.Errorf("--max-inflight-per-tenant: must be positive (got %d)", e.MaxInflightPerTenant))
	}
	if e.MaxRequestBodySize <= 0 {
		errs = append(errs, fmt.Errorf("--max-body-size: must be a positive number of bytes (got %d)", e.MaxRequestBodySize))
	}
	if e.MaxMessageLength < 1 || e.MaxMessageLength > MaxMessageLengthLimit {
		errs = append(errs, fmt.Errorf("--max-message-length: must be between 1 and %d (got %d)", MaxMessageLengthLimit, e.MaxMessageLength))
	}
	if !logLevels[e.LogLevel] {
		errs = append(errs, fmt.Errorf("--log-level: must be one of debug, info, warn, error (got %q)", e.LogLevel))
	}
	if !logFormats[e.LogFormat] {
		errs = append(errs, fmt.Errorf("--log-format: must be one of json, console, auto (got %q)", e.LogFormat))
	}
	if e.SessionIdleTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--session-idle-timeout: must be positive (got %s)", e.SessionIdleTimeout))
	}
	if e.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--shutdown-timeout: must be positive (got %s)", e.ShutdownTimeout))
	}
	for _, a := range []struct{ flag, addr string }{{"--listen", e.ListenAddr}, {"--admin-addr", e.AdminAddr}} {
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: must be host:port or :port (got %q): %w", a.flag, a.addr, err))
		}
	}
	if _, err := ParseTrustedProxies(e.TrustedProxies); err != nil {
		errs = append(errs, fmt.Errorf("--trusted-proxies: %w", err))
	}
	if e.DataDir == "" {
		errs = append(errs, errors.New("--data-dir: must not be empty"))
	}
	if e.TenantsDir == "" {
		errs = append(errs, errors.New("--tenants-dir: must not be empty"))
	}
	errs = append(errs, e.validateCluster()...)
	return errors.Join(errs...)
}

// validateCluster refuses cluster settings that cannot work together.
func (e *Env) validateCluster() []error {
	var errs []error
	cs := e.Cluster
	embeddedCluster := cs.NATSClusterListen != "" || cs.NATSRoutes != ""
	if cs.Name == "" && embeddedCluster {
		errs = append(errs, errors.New("--nats-cluster-listen/--nats-routes need --cluster NAME"))
	}
	if e.NATSURL != "" && (embeddedCluster || cs.NATSListen != "") {
		errs = append(errs, errors.New("--nats-url uses an existing NATS: drop --nats-listen, --nats-cluster-listen and --nats-routes"))
	}
	if cs.Name != "" && e.NATSURL == "" && cs.NATSClusterListen == "" {
		errs = append(errs, errors.New("--cluster needs --nats-url or --nats-cluster-listen (with --nats-routes to the peers)"))
	}
	for _, a := range []struct{ flag, v string }{{"--nats-listen", cs.NATSListen}, {"--nats-cluster-listen", cs.NATSClusterListen}} {
		if a.v == "" {
			continue
		}
		if _, _, err := SplitHostPort(a.v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", a.flag, err))
		}
	}
	if cs.MemberTTL < time.Second {
		errs = append(errs, fmt.Errorf("--member-ttl: at least 1s (got %s)", cs.MemberTTL))
	}
	if t := cs.NATSElectionTimeout; t != 0 && t < MinNATSElectionTimeout {
		errs = append(errs, fmt.Errorf("--nats-election-timeout: 0 or at least %s (got %s)", MinNATSElectionTimeout, t))
	}
	if cs.Port < 0 || cs.Port > 65535 {
		errs = append(errs, fmt.Errorf("--cluster-port: 0–65535 (got %d)", cs.Port))
	}
	return errs
}

// SplitHostPort splits a host:port listener address and checks the port.
func SplitHostPort(hp string) (string, int, error) {
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, fmt.Errorf("want host:port (got %q): %w", hp, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port in %q", hp)
	}
	return h, port, nil
}

// Getenv reads one environment variable. Settings come from Env; this is for the few values that
// are not settings of a node (a CLI's API key, the secret an Env field names), so that every read
// of the environment goes through this package.
func Getenv(name string) string { return os.Getenv(name) }

// Redacted returns the settings for the start-up log line, keyed by flag name. Secrets are
// never included: the admin token and API keys appear only as whether they are set, and
// credentials inside URLs are replaced.
func (e Env) Redacted() map[string]any {
	return map[string]any{
		"environment":               e.Environment,
		"node-name":                 e.NodeName,
		"listen":                    e.ListenAddr,
		"admin-addr":                e.AdminAddr,
		"admin-token-set":           e.AdminToken != "",
		"data-dir":                  e.DataDir,
		"tenants-dir":               e.TenantsDir,
		"log-level":                 e.LogLevel,
		"log-format":                e.LogFormat,
		"nats-url":                  redactURLs(e.NATSURL),
		"milvus-addr":               redactURLs(e.MilvusAddr),
		"model-id":                  e.ModelID,
		"fallback-model-id":         e.FallbackModelID,
		"openai-base-url":           redactURLs(e.OpenAIBaseURL),
		"openai-api-key-env":        e.OpenAIAPIKeyEnv,
		"openai-api-key-set":        e.OpenAIAPIKey != "",
		"openai-models":             e.OpenAIModels,
		"cf-api-token-env":          e.CloudflareTokenEnv,
		"cf-api-token-set":          e.CloudflareToken != "",
		"openai-embedding-models":   e.OpenAIEmbeddingModels,
		"routes":                    e.RoutesFile,
		"model-timeout":             e.ModelCallTimeout.String(),
		"model-first-token-timeout": e.ModelFirstTokenTimeout.String(),
		"max-body-size":             e.MaxRequestBodySize,
		"max-message-length":        e.MaxMessageLength,
		"session-idle-timeout":      e.SessionIdleTimeout.String(),
		"shutdown-timeout":          e.ShutdownTimeout.String(),
		"gc-headroom":               e.GCHeadroom,
		"otlp-endpoint":             redactURLs(e.OTLPEndpoint),
		"trusted-proxies":           e.TrustedProxies,
		"max-conns-per-client":      e.MaxConnsPerClient,
		"budget-lease-calls":        e.BudgetLeaseCalls,
		"rate-lease":                e.RateLeaseLife.String(),
		"max-inflight-per-tenant":   e.MaxInflightPerTenant,
		"cluster":                   e.Cluster.Name,
		"cluster-host":              e.Cluster.Host,
		"cluster-port":              e.Cluster.Port,
		"cluster-advertise":         e.Cluster.AdvertisedHost,
		"member-ttl":                e.Cluster.MemberTTL.String(),
		"nats-listen":               e.Cluster.NATSListen,
		"nats-cluster-listen":       e.Cluster.NATSClusterListen,
		"nats-routes":               redactURLs(e.Cluster.NATSRoutes),
		"nats-election-timeout":     e.Cluster.NATSElectionTimeout.String(),
	}
}

// redactURLs replaces the user information of each comma-separated URL: NATS and HTTP URLs
// may carry a token or password there (nats://token@host, https://user:pass@host).
func redactURLs(s string) string {
	if !strings.Contains(s, "@") {
		return s
	}
	parts := strings.Split(s, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil || u.User == nil {
			if strings.Contains(p, "@") {
				parts[i] = "[redacted]"
			}
			continue
		}
		u.User = url.User("redacted")
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}

// binder registers flags whose defaults come from environment variables.
type binder struct {
	e      *Env
	fs     *pflag.FlagSet
	getenv func(string) string
}

// lookup returns the value of the first set variable among names (trimmed), the name it came
// from, and records a warning when a later name holds a different value.
func (b binder) lookup(flag string, names []string) (val, from string) {
	for _, n := range names {
		v := strings.TrimSpace(b.getenv(n))
		if v == "" {
			continue
		}
		if from == "" {
			val, from = v, n
			continue
		}
		if v != val {
			b.e.warnings = append(b.e.warnings, fmt.Sprintf("--%s: %s and %s are both set and differ; using %s", flag, from, n, from))
		}
	}
	return val, from
}

func envUsage(usage string, names []string) string {
	return fmt.Sprintf("%s (env %s)", usage, strings.Join(names, ", "))
}

func (b binder) str(p *string, flag, usage string, names ...string) {
	def := *p
	if v, from := b.lookup(flag, names); from != "" {
		def = v
	}
	b.fs.StringVar(p, flag, def, envUsage(usage, names))
}

// secret registers a flag whose environment value must not appear as the flag's default,
// because pflag prints defaults in --help.
func (b binder) secret(p *string, flag, usage string, names ...string) {
	def := *p
	if v, from := b.lookup(flag, names); from != "" {
		def = v
	}
	b.fs.StringVar(p, flag, "", envUsage(usage, names))
	*p = def // an explicit flag overwrites it during Parse
}

func (b binder) int64(p *int64, flag, usage string, names ...string) {
	def := *p
	if v, from := b.lookup(flag, names); from != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			b.malformed(flag, from, v, "an integer number of bytes")
		} else {
			def = n
		}
	}
	b.fs.Int64Var(p, flag, def, envUsage(usage, names))
}

func (b binder) int(p *int, flag, usage string, names ...string) {
	def := *p
	if v, from := b.lookup(flag, names); from != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.malformed(flag, from, v, "an integer")
		} else {
			def = n
		}
	}
	b.fs.IntVar(p, flag, def, envUsage(usage, names))
}

func (b binder) duration(p *time.Duration, flag, usage string, names ...string) {
	def := *p
	if v, from := b.lookup(flag, names); from != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.malformed(flag, from, v, "a duration such as 30s or 5m")
		} else {
			def = d
		}
	}
	b.fs.DurationVar(p, flag, def, envUsage(usage, names))
}

func (b binder) malformed(flag, name, val, want string) {
	b.e.envErrs = append(b.e.envErrs, envError{
		flag: flag,
		err:  fmt.Errorf("environment variable %s: must be %s (got %q)", name, want, val),
	})
}

// ParsedTrustedProxies is TrustedProxies parsed; call it after Validate accepted the value.
func (e Env) ParsedTrustedProxies() []netip.Prefix {
	p, _ := ParseTrustedProxies(e.TrustedProxies)
	return p
}

// ParseTrustedProxies parses a comma-separated list of IPs and CIDR prefixes ("10.0.0.0/8,
// 192.0.2.7, ::1"); a bare IP is a one-address prefix. Empty entries are skipped. IPv4-mapped
// IPv6 forms are unmapped, as client addresses are, so that both match.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if strings.Contains(f, "/") {
			p, err := netip.ParsePrefix(f)
			if err != nil {
				return nil, fmt.Errorf("%q is not an IP or CIDR prefix: %w", f, err)
			}
			if p.Addr().Is4In6() && p.Bits() >= 96 {
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil || a.Zone() != "" {
			return nil, fmt.Errorf("%q is not an IP or CIDR prefix", f)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
