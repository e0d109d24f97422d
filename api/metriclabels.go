package api

import (
	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/observe"
)

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
