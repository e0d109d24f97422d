package observe

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds the process's Prometheus collectors on a registry of its own (no global
// registry, so tests and several nodes in one process don't collide).
type Metrics struct {
	Registry *prometheus.Registry

	HTTPRequests *prometheus.CounterVec   // route, method, status, tenant
	HTTPDuration *prometheus.HistogramVec // route, method, status, tenant
	HTTPInFlight prometheus.Gauge

	RateLimited *prometheus.CounterVec // tenant
	ModelCalls  *prometheus.CounterVec // tenant, model, outcome
	ModelTokens *prometheus.CounterVec // tenant, model, direction
	ModelTTFT   *prometheus.HistogramVec

	ToolExecutions *prometheus.CounterVec // tenant, tool, outcome
	TTSCharacters  *prometheus.CounterVec // tenant
	TTSRequests    *prometheus.CounterVec // tenant, format, outcome

	// AI gateway (issue 4).
	ModelLatency   *prometheus.HistogramVec // model, outcome: a whole model call, open to last token
	ModelRetries   *prometheus.CounterVec   // model: retries of a model before its first token
	ModelFallbacks *prometheus.CounterVec   // from, to: calls served by the fallback model
	BudgetRejected *prometheus.CounterVec   // tenant: requests denied by the token budget
	CacheLookups   *prometheus.CounterVec   // tenant, result (hit, miss): response cache
}

// NewMetrics creates and registers the collectors, plus the Go runtime and process collectors.
func NewMetrics() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{
		Registry: reg,
		HTTPRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crispy_http_requests_total",
			Help: "HTTP requests answered, by route pattern, method, status and tenant.",
		}, []string{"route", "method", "status", "tenant"}),
		HTTPDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "crispy_http_request_duration_seconds",
			Help:    "HTTP request latency, by route pattern, method, status and tenant.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route", "method", "status", "tenant"}),
		HTTPInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "crispy_http_requests_in_flight",
			Help: "HTTP requests being served.",
		}),
		RateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crispy_rate_limited_total",
			Help: "Requests denied by a tenant rate limit.",
		}, []string{"tenant"}),
		ModelCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crispy_model_calls_total",
			Help: "Chat model calls, by tenant, model and outcome (ok, error, cancelled).",
		}, []string{"tenant", "model", "outcome"}),
		ModelTokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crispy_model_tokens_total",
			Help: "Model tokens, by tenant, model and direction (in, out).",
		}, []string{"tenant", "model", "direction"}),
		ModelTTFT: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "crispy_model_first_token_seconds",
			Help:    "Time from request start to the model's first token.",
			Buckets: prometheus.DefBuckets,
		}, []string{"model"}),
		ToolExecutions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crispy_tool_executions_total",
			Help: "Tool executions, by tenant, tool and outcome (ok, failed, or the dispatch error code).",
		}, []string{"tenant", "tool", "outcome"}),
		TTSCharacters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crispy_tts_characters_total",
			Help: "Characters synthesized by POST /tts, by tenant (usage).",
		}, []string{"tenant"}),
		TTSRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crispy_tts_requests_total",
			Help: "Speech syntheses, by tenant, format and outcome (ok, error).",
		}, []string{"tenant", "format", "outcome"}),
	}
	reg.MustRegister(m.HTTPRequests, m.HTTPDuration, m.HTTPInFlight, m.RateLimited, m.ModelCalls, m.ModelTokens, m.ModelTTFT)
	reg.MustRegister(m.ToolExecutions, m.TTSCharacters, m.TTSRequests)
	m.ModelLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "crispy_model_call_duration_seconds",
		Help:    "Chat model call latency, from opening the call to its last token, by model and outcome.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
	}, []string{"model", "outcome"})
	m.ModelRetries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "crispy_model_retries_total",
		Help: "Retries of a model call after a retryable failure before its first token, by model.",
	}, []string{"model"})
	m.ModelFallbacks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "crispy_model_fallbacks_total",
		Help: "Model calls served by the fallback model after the primary failed, by primary and fallback.",
	}, []string{"from", "to"})
	m.BudgetRejected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "crispy_budget_rejected_total",
		Help: "Requests denied by a tenant token budget (429 budget_exceeded).",
	}, []string{"tenant"})
	m.CacheLookups = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "crispy_response_cache_lookups_total",
		Help: "Response cache lookups of non-streamed chat, by tenant and result (hit, miss).",
	}, []string{"tenant", "result"})
	reg.MustRegister(m.ModelLatency, m.ModelRetries, m.ModelFallbacks, m.BudgetRejected, m.CacheLookups)
	return m
}
