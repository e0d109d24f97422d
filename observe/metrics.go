package observe

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds the process's Prometheus collectors on a registry of its own (no global
// registry, so tests and several nodes in one process don't collide).
type Metrics struct {
	Registry *prometheus.Registry

	// Labels bound every label value that comes from a request (labels.go); the HTTP layer
	// gives them the configured models, tenants and tools (LabelBound.Set).
	Labels struct {
		Models, Tenants, Tools, Routes, Methods, Formats *LabelBound
	}

	HTTPRequests *CounterVec   // route, method, status, tenant
	HTTPDuration *HistogramVec // route, method, status, tenant
	HTTPInFlight prometheus.Gauge

	RateLimited  *CounterVec // tenant
	RateAdmitted *CounterVec // tenant, source (limiter, lease): metering's rate-limit leases
	ModelCalls   *CounterVec // tenant, model, outcome
	ModelTokens  *CounterVec // tenant, model, direction
	ModelTTFT    *HistogramVec

	ToolExecutions *CounterVec // tenant, tool, outcome
	TTSCharacters  *CounterVec // tenant
	TTSRequests    *CounterVec // tenant, format, outcome

	// AI gateway (issue 4).
	ModelLatency   *HistogramVec // model, outcome: a whole model call, open to last token
	ModelRetries   *CounterVec   // model: retries of a model before its first token
	ModelFallbacks *CounterVec   // from, to: calls served by the fallback model
	BudgetRejected *CounterVec   // tenant: requests denied by the token budget
	BudgetOverrun  *CounterVec   // tenant: tokens calls used beyond their reservation, not charged
	CacheLookups   *CounterVec   // tenant, result (hit, miss): response cache
}

// NewMetrics creates and registers the collectors, plus the Go runtime and process collectors.
// Every label fed from a request is bounded (Labels); the others take only the server's own values.
func NewMetrics() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{Registry: reg}
	l := &m.Labels
	l.Models, l.Tenants, l.Tools = NewLabelBound(0), NewLabelBound(0), NewLabelBound(0)
	l.Routes, l.Formats = NewLabelBound(0), NewLabelBound(16)
	l.Methods = NewLabelBound(len(httpMethods))
	l.Methods.Set(httpMethods)
	counter := func(name, help string, labels []string, bounds ...*LabelBound) *CounterVec {
		v := &CounterVec{prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels), bounds}
		reg.MustRegister(v.CounterVec)
		return v
	}
	histogram := func(name, help string, buckets []float64, labels []string, bounds ...*LabelBound) *HistogramVec {
		v := &HistogramVec{prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels), bounds}
		reg.MustRegister(v.HistogramVec)
		return v
	}
	m.HTTPRequests = counter("crispy_http_requests_total",
		"HTTP requests answered, by route pattern, method, status and tenant.",
		[]string{"route", "method", "status", "tenant"}, l.Routes, l.Methods, nil, l.Tenants)
	m.HTTPDuration = histogram("crispy_http_request_duration_seconds",
		"HTTP request latency, by route pattern, method, status and tenant.",
		[]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		[]string{"route", "method", "status", "tenant"}, l.Routes, l.Methods, nil, l.Tenants)
	m.HTTPInFlight = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "crispy_http_requests_in_flight",
		Help: "HTTP requests being served.",
	})
	reg.MustRegister(m.HTTPInFlight)
	m.RateLimited = counter("crispy_rate_limited_total", "Requests denied by a tenant rate limit.",
		[]string{"tenant"}, l.Tenants)
	m.RateAdmitted = counter("crispy_rate_limit_admitted_total",
		"Requests of busy users admitted by a rate limit, by tenant and by whom: the tenant's limiter (limiter) or this node's lease of its permits (lease).",
		[]string{"tenant", "source"}, l.Tenants, nil)
	m.ModelCalls = counter("crispy_model_calls_total",
		"Chat model calls, by tenant, model and outcome (ok, error, cancelled).",
		[]string{"tenant", "model", "outcome"}, l.Tenants, l.Models)
	m.ModelTokens = counter("crispy_model_tokens_total", "Model tokens, by tenant, model and direction (in, out).",
		[]string{"tenant", "model", "direction"}, l.Tenants, l.Models)
	m.ModelTTFT = histogram("crispy_model_first_token_seconds", "Time from request start to the model's first token.",
		prometheus.DefBuckets, []string{"model"}, l.Models)
	m.ToolExecutions = counter("crispy_tool_executions_total",
		"Tool executions, by tenant, tool and outcome (ok, failed, or the dispatch error code).",
		[]string{"tenant", "tool", "outcome"}, l.Tenants, l.Tools)
	m.TTSCharacters = counter("crispy_tts_characters_total", "Characters synthesized by POST /tts, by tenant (usage).",
		[]string{"tenant"}, l.Tenants)
	m.TTSRequests = counter("crispy_tts_requests_total", "Speech syntheses, by tenant, format and outcome (ok, error).",
		[]string{"tenant", "format", "outcome"}, l.Tenants, l.Formats)
	m.ModelLatency = histogram("crispy_model_call_duration_seconds",
		"Chat model call latency, from opening the call to its last token, by model and outcome.",
		[]float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		[]string{"model", "outcome"}, l.Models)
	m.ModelRetries = counter("crispy_model_retries_total",
		"Retries of a model call after a retryable failure before its first token, by model.",
		[]string{"model"}, l.Models)
	m.ModelFallbacks = counter("crispy_model_fallbacks_total",
		"Model calls served by the fallback model after the primary failed, by primary and fallback.",
		[]string{"from", "to"}, l.Models, l.Models)
	m.BudgetRejected = counter("crispy_budget_rejected_total",
		"Requests denied by a tenant token budget (429 budget_exceeded).", []string{"tenant"}, l.Tenants)
	m.BudgetOverrun = counter("crispy_budget_overrun_tokens_total",
		"Tokens model calls used beyond their budget reservation, which the budget does not charge (the estimate of their input was low).",
		[]string{"tenant"}, l.Tenants)
	m.CacheLookups = counter("crispy_response_cache_lookups_total",
		"Response cache lookups of non-streamed chat, by tenant and result (hit, miss).",
		[]string{"tenant", "result"}, l.Tenants)
	return m
}
