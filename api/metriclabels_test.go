package api

import (
	"fmt"
	"testing"

	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/observe"
)

func TestSetMetricLabels(t *testing.T) {
	m := observe.NewMetrics()
	acme := &config.TenantConfig{TenantID: "acme", AIModels: config.AIModels{Chat: "@cf/chat", Embeddings: "@cf/embed"}, AllowedModels: []string{"gpt-x"}}
	SetMetricLabels(m, []*config.TenantConfig{acme}, []string{"local/extractive"}, []string{"calculator"}, []string{"/chat"})
	for _, tt := range []struct {
		bound    *observe.LabelBound
		in, want string
	}{
		{m.Labels.Models, "@cf/chat", "@cf/chat"},
		{m.Labels.Models, "gpt-x", "gpt-x"},
		{m.Labels.Models, "local/extractive", "local/extractive"},
		{m.Labels.Models, "attacker-1", observe.Unknown},
		{m.Labels.Tenants, "acme", "acme"},
		{m.Labels.Tenants, "", ""},
		{m.Labels.Tenants, "other", observe.Unknown},
		{m.Labels.Tools, "calculator", "calculator"},
		{m.Labels.Tools, "rm", observe.Unknown},
		{m.Labels.Routes, "unmatched", "unmatched"},
	} {
		if got := tt.bound.Value(tt.in); got != tt.want {
			t.Errorf("%q → %q, want %q", tt.in, got, tt.want)
		}
	}
	for i := range 300 {
		m.ModelCalls.WithLabelValues("acme", fmt.Sprintf("attacker-%d", i), "ok").Inc()
	}
	families, _ := m.Registry.Gather()
	for _, f := range families {
		if f.GetName() == "crispy_model_calls_total" && len(f.GetMetric()) != 1 {
			t.Errorf("300 unknown models made %d series, want 1", len(f.GetMetric()))
		}
	}
}
