package api

import (
	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/gateway/minilm"
	"github.com/crispy-enigma/crispy/observe"
)

// toolNamer is the optional side of a ToolRunner that names every registered tool.
type toolNamer interface{ Names() []string }

// setMetricLabels bounds the metric labels to this server's tenants, models, tools and routes; it
// runs when the server is built and on every tenant reload.
func (s *Server) setMetricLabels(ix *config.Index) {
	models := []string{s.env.ModelID, s.env.FallbackModelID, gateway.ExtractiveModelID, gateway.HashEmbedID, minilm.ID}
	var tools []string
	if s.tools != nil {
		if n, ok := s.tools.Registry.(toolNamer); ok {
			tools = n.Names()
		}
	}
	var routes []string
	for _, r := range s.echo.Routes() {
		routes = append(routes, r.Path)
	}
	SetMetricLabels(s.metrics, ix.All(), models, tools, routes)
}

// SetMetricLabels gives the metrics' bounded labels (observe.Metrics.Labels) their configured
// values, so that anything a client names beyond them is counted as "unknown": the tenants and
// every model their configs name, plus models (the deployment's: --model-id, the fallback, the
// routes' exact model IDs, local/extractive), tools (the registry's names) and routes (the route
// patterns; "unmatched" is added). Call it at start and after every tenant reload.
func SetMetricLabels(m *observe.Metrics, tenants []*config.TenantConfig, models, tools, routes []string) {
	tenantIDs := []string{""} // requests answered before a tenant was resolved
	for _, t := range tenants {
		tenantIDs = append(tenantIDs, t.TenantID)
		models = append(models, t.ModelIDs()...)
	}
	m.Labels.Tenants.Set(tenantIDs)
	m.Labels.Models.Set(models)
	m.Labels.Tools.Set(tools)
	m.Labels.Routes.Set(append(routes, "unmatched"))
}
