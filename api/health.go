package api

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/wire"
)

type healthData struct {
	Status          string            `json:"status"`
	TenantID        string            `json:"tenantId"`
	Environment     string            `json:"environment"`
	ModelID         string            `json:"modelId"`
	FallbackModelID string            `json:"fallbackModelId"`
	Source          string            `json:"source"`
	Node            string            `json:"node"`
	Version         string            `json:"version"`
	UptimeSeconds   int64             `json:"uptimeSeconds"`
	Components      map[string]string `json:"components"`
	// Embeddings is the tenant's embedding model and vector index (with the retrieval routes).
	Embeddings *wire.TenantEmbeddings `json:"embeddings,omitempty"`
}

// health answers docs/api.md's GET /health for the resolved tenant.
func (s *Server) health(c echo.Context) error {
	t := tenantOf(c)
	env := s.env.Environment
	if env == "" {
		env = "unknown"
	}
	model := s.env.ModelID
	if model == "" {
		model = t.AIModels.Chat
	}
	fallback := t.AIModels.FallbackChat
	if fallback == "" {
		fallback = s.env.FallbackModelID
	}
	comps, _ := s.componentStates(c.Request().Context())
	data := healthData{
		Status: "ok", TenantID: t.TenantID, Environment: env, ModelID: model, FallbackModelID: fallback,
		Source: state(c).source, Node: s.env.NodeName, Version: s.version,
		UptimeSeconds: int64(s.now().Sub(s.started) / time.Second),
		Components:    comps,
	}
	if s.rag != nil {
		data.Embeddings = s.embeddingStatus(c.Request().Context(), t)
	}
	return ok(c, http.StatusOK, data)
}

// embeddingCache holds each tenant's last embedding status for componentsTTL: it costs a few KV
// reads, and /health is polled often. Keys are resolved (configured) tenants only, so it is bounded.
type embeddingCache struct {
	mu sync.Mutex
	m  map[string]cachedEmbeddings
}

type cachedEmbeddings struct {
	at time.Time
	e  *wire.TenantEmbeddings
}

// embeddingStatus returns the tenant's embedding status, read at most once per componentsTTL.
func (s *Server) embeddingStatus(ctx context.Context, t *config.TenantConfig) *wire.TenantEmbeddings {
	ec := &s.embCache
	ec.mu.Lock()
	defer ec.mu.Unlock()
	now := s.now()
	if c, ok := ec.m[t.TenantID]; ok && now.Sub(c.at) < componentsTTL && !now.Before(c.at) {
		return c.e
	}
	e := s.rag.Service.EmbeddingStatus(ctx, t)
	if ec.m == nil {
		ec.m = map[string]cachedEmbeddings{}
	}
	ec.m[t.TenantID] = cachedEmbeddings{at: now, e: &e}
	return &e
}

// componentsTTL is how long component states are reused. /health is a liveness probe that load
// balancers call often: checking SQLite, NATS and the vector store on every call made it I/O-bound
// (about 3,000 req/s on 2 cores); with a short cache it costs what routing costs.
const componentsTTL = time.Second

// componentCache holds the last component check; one caller refreshes it while the others wait.
type componentCache struct {
	mu     sync.Mutex
	at     time.Time
	states map[string]string
	up     bool
}

// componentStates returns the components' states, checked at most once per componentsTTL.
func (s *Server) componentStates(ctx context.Context) (map[string]string, bool) {
	cc := &s.compCache
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if now := s.now(); cc.states == nil || now.Sub(cc.at) >= componentsTTL || now.Before(cc.at) {
		cc.states, cc.up = s.checkComponents(ctx)
		cc.at = s.now()
	}
	return cc.states, cc.up
}

// checkComponents checks every component with a short deadline so a stuck dependency cannot
// hang /health. Causes go to the log, never to the client. The map returned is never mutated
// afterwards, so callers may share it.
func (s *Server) checkComponents(ctx context.Context) (map[string]string, bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	out := make(map[string]string, len(s.comps))
	up := true
	for _, comp := range s.comps {
		st, err := comp.Check(ctx)
		if err != nil {
			s.log.Warn().Err(err).Str("component", comp.Name).Msg("component check failed")
			st, up = "down", false
		}
		out[comp.Name] = st
	}
	return out, up
}

// Ready reports whether every component is up, for the operator's /readyz.
func (s *Server) Ready(ctx context.Context) (map[string]string, bool) {
	return s.componentStates(ctx)
}
