package speech

import (
	"context"
	"sort"
	"strings"

	"github.com/crispy-enigma/crispy/config"
)

// LocalModel is the aiModels.tts value that names espeak-ng explicitly; an empty value means it too.
const LocalModel = "local/espeak-ng"

// Router picks a tenant's synthesizer from aiModels.tts: empty or LocalModel → the local one; a
// value starting with a registered prefix → that provider, with the rest of the value as the model
// (e.g. prefix "openai/" and "openai/tts-1" → model "tts-1"). Register at start-up; For is safe for
// concurrent use afterwards.
type Router struct {
	local  Synthesizer
	routes []route
}

type route struct {
	prefix string
	p      Synthesizer
}

// NewRouter returns a router whose default is local.
func NewRouter(local Synthesizer) *Router { return &Router{local: local} }

// Handle routes models starting with prefix to p. The longest matching prefix wins.
func (r *Router) Handle(prefix string, p Synthesizer) {
	r.routes = append(r.routes, route{prefix: prefix, p: p})
	sort.SliceStable(r.routes, func(i, j int) bool { return len(r.routes[i].prefix) > len(r.routes[j].prefix) })
}

// For returns the synthesizer for tenant and whether aiModels.tts was served: a model no route
// serves falls back to the local synthesizer with ok false, so the caller can log it.
func (r *Router) For(tenant *config.TenantConfig) (s Synthesizer, ok bool) {
	model := ""
	if tenant != nil {
		model = strings.TrimSpace(tenant.AIModels.TTS)
	}
	if model == "" || model == LocalModel {
		return r.local, true
	}
	for _, rt := range r.routes {
		if strings.HasPrefix(model, rt.prefix) {
			return withModel{Synthesizer: rt.p, model: strings.TrimPrefix(model, rt.prefix)}, true
		}
	}
	return r.local, false
}

// withModel fills Request.Model for a routed provider.
type withModel struct {
	Synthesizer
	model string
}

func (w withModel) Synthesize(ctx context.Context, req Request) (Audio, error) {
	if req.Model == "" {
		req.Model = w.model
	}
	return w.Synthesizer.Synthesize(ctx, req)
}
