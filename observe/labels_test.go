package observe

import (
	"fmt"
	"testing"
)

// TestMetricLabelsStayBounded replays the attack: 5,000 requests naming 5,000 modelIds grew
// /metrics from 180 to 90,199 series. Here 300 unknown model names (and tools, tenants, methods)
// add at most one series each: "unknown".
func TestMetricLabelsStayBounded(t *testing.T) {
	tests := []struct {
		name       string
		configured []string
		wantMax    int
	}{
		{"configured models", []string{"@cf/meta/llama-3.1-8b-instruct", "local/extractive"}, 2 + 1},
		{"before the models are configured", nil, DefaultMaxLabelValues + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMetrics()
			if tt.configured != nil {
				m.Labels.Models.Set(tt.configured)
				m.Labels.Tenants.Set([]string{"acme"})
				m.Labels.Tools.Set([]string{"calculator"})
			}
			for _, model := range tt.configured {
				m.ModelCalls.WithLabelValues("acme", model, "ok").Inc()
			}
			for i := range 300 {
				name := fmt.Sprintf("attacker-model-%d", i)
				m.ModelCalls.WithLabelValues("acme", name, "ok").Inc()
				m.ModelTokens.WithLabelValues("acme", name, "in").Add(1)
				m.ModelLatency.WithLabelValues(name, "ok").Observe(1)
				m.ModelFallbacks.WithLabelValues(name, name+"-b").Inc()
				m.ToolExecutions.WithLabelValues(fmt.Sprintf("tenant-%d", i), fmt.Sprintf("tool-%d", i), "ok").Inc()
				m.HTTPRequests.WithLabelValues(fmt.Sprintf("/route-%d", i), fmt.Sprintf("M%d", i), "200", "acme").Inc()
			}
			if n := series(t, m, "crispy_model_calls_total"); n > tt.wantMax {
				t.Errorf("crispy_model_calls_total has %d series, want at most %d", n, tt.wantMax)
			}
			if n := series(t, m, "crispy_model_tokens_total"); n > tt.wantMax {
				t.Errorf("crispy_model_tokens_total has %d series, want at most %d", n, tt.wantMax)
			}
			if n := series(t, m, "crispy_tool_executions_total"); n > DefaultMaxLabelValues+1 {
				t.Errorf("crispy_tool_executions_total has %d series", n)
			}
			if n := series(t, m, "crispy_http_requests_total"); n > DefaultMaxLabelValues+1 {
				t.Errorf("crispy_http_requests_total has %d series", n)
			}
		})
	}
}

func TestLabelBound(t *testing.T) {
	b := NewLabelBound(2)
	for _, tt := range []struct{ in, want string }{{"a", "a"}, {"b", "b"}, {"c", Unknown}, {"a", "a"}} {
		if got := b.Value(tt.in); got != tt.want {
			t.Errorf("before Set: Value(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	b.Set([]string{"c"})
	for _, tt := range []struct{ in, want string }{{"a", Unknown}, {"c", "c"}} {
		if got := b.Value(tt.in); got != tt.want {
			t.Errorf("after Set: Value(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := NewMetrics().Labels.Methods.Value("PROPFIND"); got != Unknown {
		t.Errorf("method PROPFIND: %q", got)
	}
}

// series counts the series of the metric family name.
func series(t *testing.T, m *Metrics, name string) int {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return len(f.GetMetric())
		}
	}
	return 0
}
