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
	views := s.componentStates(c.Request().Context())
	// An anonymous caller (a public tenant, no key) learns only whether each component is up;
	// a caller with the tenant's key sees the details that are not the deployment's own.
	comps := views.summary
	if state(c).keyID != "" {
		comps = views.tenant
	}
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
	mu    sync.Mutex
	at    time.Time
	views *componentViews
}

// componentViews are one check of every component, as each audience may see it. The maps are
// never mutated after the check, so callers share them.
type componentViews struct {
	operator map[string]string // every state with its detail (/readyz)
	tenant   map[string]string // an internal component's detail reduced to ok or down
	summary  map[string]string // ok, degraded or down only
	ready    bool              // every required component is up
}

// componentStates returns the components' states, checked at most once per componentsTTL.
func (s *Server) componentStates(ctx context.Context) *componentViews {
	cc := &s.compCache
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if now := s.now(); cc.views == nil || now.Sub(cc.at) >= componentsTTL || now.Before(cc.at) {
		cc.views = s.checkComponents(ctx)
		cc.at = s.now()
	}
	return cc.views
}

// checkComponents checks every component with a short deadline so a stuck dependency cannot
// hang /health. Causes go to the log, never to a tenant.
func (s *Server) checkComponents(ctx context.Context) *componentViews {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	v := &componentViews{
		operator: make(map[string]string, len(s.comps)),
		tenant:   make(map[string]string, len(s.comps)),
		summary:  make(map[string]string, len(s.comps)),
		ready:    true,
	}
	for _, comp := range s.comps {
		st, err := comp.Check(ctx)
		word := "ok"
		switch {
		case err != nil && comp.Optional:
			// The operator sees what is missing; a tenant only that the engine is unavailable.
			s.log.Warn().Err(err).Str("component", comp.Name).Msg("optional component unavailable")
			word, st = "degraded", "degraded: "+err.Error()
		case err != nil:
			s.log.Warn().Err(err).Str("component", comp.Name).Msg("component check failed")
			word, st = "down", "down"
			v.ready = false
		}
		v.operator[comp.Name], v.summary[comp.Name] = st, word
		if comp.Internal || word == "degraded" {
			v.tenant[comp.Name] = word
		} else {
			v.tenant[comp.Name] = st
		}
	}
	return v
}

// Ready reports whether every required component is up, for the operator's /readyz: a missing
// optional engine does not take the node out of a load balancer.
func (s *Server) Ready(ctx context.Context) (map[string]string, bool) {
	v := s.componentStates(ctx)
	return v.operator, v.ready
}
