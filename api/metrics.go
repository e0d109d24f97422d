package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/store"
)

// MetricsReader is the tenant's read model as the tenant metrics read it (store.TenantDBs).
type MetricsReader interface {
	UsageReader
	SearchStats(ctx context.Context, tenantID string, from, to time.Time) (store.SearchStats, error)
	ToolStats(ctx context.Context, tenantID string, from, to time.Time) ([]store.ToolStat, error)
	ModelCallStats(ctx context.Context, tenantID string, from, to time.Time) (store.ModelCallStats, error)
	HourlyBuckets(ctx context.Context, tenantID string, from, to time.Time, price store.PriceFunc) ([]store.HourBucket, error)
}

var _ MetricsReader = (*store.TenantDBs)(nil)

// AlertRuleStore keeps each tenant's alert rules (store.TenantKV on the "config" bucket), one key
// per rule, so two rules created at once never overwrite each other.
type AlertRuleStore interface {
	Get(ctx context.Context, tenantID, key string) ([]byte, error)
	Put(ctx context.Context, tenantID, key string, value []byte, ttl time.Duration) error
	Delete(ctx context.Context, tenantID, key string) error
	Keys(ctx context.Context, tenantID string) ([]string, error)
}

var _ AlertRuleStore = (*store.TenantKV)(nil)

// TenantMetricsDeps are the /metrics/* routes' dependencies (CONTRACT.md "Tenant metrics"). These
// live on the tenant listener; the operator's Prometheus /metrics is on the admin listener, a
// different handler, so the paths never meet.
type TenantMetricsDeps struct {
	Reader MetricsReader // required
	// Alerts stores alert rules; nil: /metrics/alerts is not registered.
	Alerts AlertRuleStore
	// Prices prices tokens (gateway.Router); nil uses the chat models when they are a ModelPricer,
	// else gateway.DefaultPricePer1K for every model.
	Prices ModelPricer
}

func (s *Server) metricsRoutes(e *echo.Echo) {
	e.GET("/metrics/cost", s.getMetricsCost)
	e.GET("/metrics/search-cache", s.getMetricsSearchCache)
	e.GET("/metrics/tools/execution", s.getMetricsTools)
	e.GET("/metrics/slis", s.getMetricsSLIs)
	e.GET("/metrics/anomalies", s.getMetricsAnomalies)
	e.GET("/metrics/overview", s.getMetricsOverview)
	if s.tmetrics.Alerts != nil {
		e.GET("/metrics/alerts", s.getAlerts)
		e.POST("/metrics/alerts", s.postAlert)
		e.DELETE("/metrics/alerts", s.deleteAlert)
		e.DELETE("/metrics/alerts/:id", s.deleteAlert)
	}
}

// metricsPeriods are CONTRACT.md's periods; 24h is the default.
var metricsPeriods = map[string]time.Duration{"1h": time.Hour, "24h": 24 * time.Hour, "7d": 7 * 24 * time.Hour}

const defaultMetricsPeriod = "24h"

// metricsWindow is the [From, To) a metrics request covers.
type metricsWindow struct {
	Period string
	From   time.Time
	To     time.Time
}

func parsePeriod(p string) (string, time.Duration, error) {
	if p == "" {
		p = defaultMetricsPeriod
	}
	d, found := metricsPeriods[p]
	if !found {
		return "", 0, errInvalidRequest("period: must be 1h, 24h or 7d")
	}
	return p, d, nil
}

func (s *Server) window(c echo.Context) (metricsWindow, error) {
	p, d, err := parsePeriod(c.QueryParam("period"))
	if err != nil {
		return metricsWindow{}, err
	}
	to := s.now().UTC()
	return metricsWindow{Period: p, From: to.Add(-d), To: to}, nil
}

// end is the exclusive bound the read model is queried with: the window includes events stamped
// exactly at To (now).
func (w metricsWindow) end() time.Time { return w.To.Add(time.Millisecond) }

func (w metricsWindow) header() map[string]any {
	return map[string]any{"period": w.Period, "from": w.From.Format(time.RFC3339Nano), "to": w.To.Format(time.RFC3339Nano)}
}

// with returns the window's header fields plus fields, one JSON object.
func (w metricsWindow) with(fields map[string]any) map[string]any {
	out := w.header()
	for k, v := range fields {
		out[k] = v
	}
	return out
}

func errMetricsUnavailable(err error) *Error {
	return Wrap(http.StatusServiceUnavailable, CodeUnavailable, "metrics are unavailable, retry shortly", err)
}

// price returns a model's per-1K-token prices from the routing table. An unknown model gets
// CONTRACT.md's default; a built-in local model is priced as the router prices it (free), the
// same price its model_call events were recorded at.
func (s *Server) price(model string) (in, out float64) {
	p := s.tmetrics.Prices
	if p == nil && s.chat != nil {
		p, _ = s.chat.Models.(ModelPricer)
	}
	if p == nil {
		return gateway.DefaultPricePer1K, gateway.DefaultPricePer1K
	}
	info, err := p.Describe(model)
	if err != nil {
		return gateway.DefaultPricePer1K, gateway.DefaultPricePer1K
	}
	return info.PricePer1KIn, info.PricePer1KOut
}

// ---- GET /metrics/cost ------------------------------------------------------------------------

type modelCost struct {
	Requests      int64   `json:"requests"`
	TokensIn      int64   `json:"tokensIn"`
	TokensOut     int64   `json:"tokensOut"`
	TotalTokens   int64   `json:"totalTokens"`
	Cost          float64 `json:"cost"`
	PricePer1KIn  float64 `json:"pricePer1KIn"`
	PricePer1KOut float64 `json:"pricePer1KOut"`
}

type costSummary struct {
	TotalCost     float64              `json:"totalCost"`
	TotalTokens   int64                `json:"totalTokens"`
	TotalRequests int64                `json:"totalRequests"`
	ByModel       map[string]modelCost `json:"byModel"`
}

func (s *Server) costOf(ctx context.Context, tenant string, w metricsWindow) (costSummary, error) {
	rows, err := s.tmetrics.Reader.Usage(ctx, tenant, w.From, w.end(), "model")
	if err != nil {
		return costSummary{}, err
	}
	out := costSummary{ByModel: map[string]modelCost{}}
	for _, r := range rows {
		pin, pout := s.price(r.Key)
		m := modelCost{
			Requests: r.Requests, TokensIn: r.TokensIn, TokensOut: r.TokensOut, TotalTokens: r.TokensIn + r.TokensOut,
			Cost: float64(r.TokensIn)/1000*pin + float64(r.TokensOut)/1000*pout, PricePer1KIn: pin, PricePer1KOut: pout,
		}
		out.ByModel[r.Key] = m
		out.TotalCost += m.Cost
		out.TotalTokens += m.TotalTokens
		out.TotalRequests += m.Requests
	}
	return out, nil
}

func (s *Server) getMetricsCost(c echo.Context) error {
	w, err := s.window(c)
	if err != nil {
		return err
	}
	cs, err := s.costOf(c.Request().Context(), tenantOf(c).TenantID, w)
	if err != nil {
		return errMetricsUnavailable(err)
	}
	return ok(c, http.StatusOK, w.with(map[string]any{
		"totalCost": cs.TotalCost, "totalTokens": cs.TotalTokens, "totalRequests": cs.TotalRequests, "byModel": cs.ByModel,
	}))
}

// ratio is n/d, 0 when d is 0 (no traffic is not a 100% failure).
func ratio(n, d int64) float64 {
	if d == 0 {
		return 0
	}
	return float64(n) / float64(d)
}

// ---- GET /metrics/search-cache ----------------------------------------------------------------

type searchCacheSummary struct {
	Hits          int64   `json:"hits"`
	Misses        int64   `json:"misses"`
	HitRate       float64 `json:"hitRate"`
	AvgLatencyMs  float64 `json:"avgLatencyMs"`
	TotalChecks   int64   `json:"totalChecks"`
	TotalSearches int64   `json:"totalSearches"`
	Errors        int64   `json:"errors"`
	ErrorRate     float64 `json:"errorRate"`
}

func (s *Server) searchCacheOf(ctx context.Context, tenant string, w metricsWindow) (searchCacheSummary, error) {
	st, err := s.tmetrics.Reader.SearchStats(ctx, tenant, w.From, w.end())
	if err != nil {
		return searchCacheSummary{}, err
	}
	checks := st.Hits + st.Misses
	return searchCacheSummary{
		Hits: st.Hits, Misses: st.Misses, HitRate: ratio(st.Hits, checks), AvgLatencyMs: st.AvgLatencyMs,
		TotalChecks: checks, TotalSearches: st.Total, Errors: st.Errors, ErrorRate: ratio(st.Errors, st.Total),
	}, nil
}

func (s *Server) getMetricsSearchCache(c echo.Context) error {
	w, err := s.window(c)
	if err != nil {
		return err
	}
	sc, err := s.searchCacheOf(c.Request().Context(), tenantOf(c).TenantID, w)
	if err != nil {
		return errMetricsUnavailable(err)
	}
	return ok(c, http.StatusOK, w.with(structFields(sc)))
}

// structFields turns a flat JSON-tagged struct into a map, so it can share an object with the
// window's fields.
func structFields(v any) map[string]any {
	b, _ := json.Marshal(v) // the summaries are plain numbers and maps
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

// ---- GET /metrics/tools/execution -------------------------------------------------------------

type toolSummary struct {
	Executions    int64   `json:"executions"`
	SuccessCount  int64   `json:"successCount"`
	ErrorCount    int64   `json:"errorCount"`
	AvgDurationMs float64 `json:"avgDurationMs"`
}

type toolsSummary struct {
	TotalExecutions int64                  `json:"totalExecutions"`
	SuccessCount    int64                  `json:"successCount"`
	ErrorCount      int64                  `json:"errorCount"`
	ErrorRate       float64                `json:"errorRate"`
	AvgDurationMs   float64                `json:"avgDurationMs"`
	ByTool          map[string]toolSummary `json:"byTool"`
}

func (s *Server) toolsOf(ctx context.Context, tenant string, w metricsWindow) (toolsSummary, error) {
	stats, err := s.tmetrics.Reader.ToolStats(ctx, tenant, w.From, w.end())
	if err != nil {
		return toolsSummary{}, err
	}
	out := toolsSummary{ByTool: map[string]toolSummary{}}
	var durSum float64
	for _, st := range stats {
		out.ByTool[st.Tool] = toolSummary{Executions: st.Executions, SuccessCount: st.Successes, ErrorCount: st.Errors, AvgDurationMs: st.AvgDurationMs}
		out.TotalExecutions += st.Executions
		out.SuccessCount += st.Successes
		out.ErrorCount += st.Errors
		durSum += st.AvgDurationMs * float64(st.Executions)
	}
	if out.TotalExecutions > 0 {
		out.AvgDurationMs = durSum / float64(out.TotalExecutions)
	}
	out.ErrorRate = ratio(out.ErrorCount, out.TotalExecutions)
	return out, nil
}

func (s *Server) getMetricsTools(c echo.Context) error {
	w, err := s.window(c)
	if err != nil {
		return err
	}
	ts, err := s.toolsOf(c.Request().Context(), tenantOf(c).TenantID, w)
	if err != nil {
		return errMetricsUnavailable(err)
	}
	return ok(c, http.StatusOK, w.with(structFields(ts)))
}

// ---- GET /metrics/slis ------------------------------------------------------------------------

type sliSummary struct {
	ModelCalls struct {
		Total     int64 `json:"total"`
		OK        int64 `json:"ok"`
		Errors    int64 `json:"errors"`
		Cancelled int64 `json:"cancelled"`
	} `json:"modelCalls"`
	// Availability is the share of model calls that answered, of those that ended other than by
	// the client leaving (cancelled calls say nothing about us). 1 when there were none.
	Availability float64 `json:"availability"`
	ErrorRate    float64 `json:"errorRate"`
	LatencyMs    struct {
		P50 int64   `json:"p50"`
		P95 int64   `json:"p95"`
		P99 int64   `json:"p99"`
		Avg float64 `json:"avg"`
	} `json:"latencyMs"`
}

func (s *Server) slisOf(ctx context.Context, tenant string, w metricsWindow) (sliSummary, error) {
	st, err := s.tmetrics.Reader.ModelCallStats(ctx, tenant, w.From, w.end())
	if err != nil {
		return sliSummary{}, err
	}
	var out sliSummary
	out.ModelCalls.Total, out.ModelCalls.OK, out.ModelCalls.Errors, out.ModelCalls.Cancelled = st.Total, st.OK, st.Errors, st.Cancelled
	decided := st.OK + st.Errors
	out.Availability = 1
	if decided > 0 {
		out.Availability = ratio(st.OK, decided)
	}
	out.ErrorRate = ratio(st.Errors, decided)
	out.LatencyMs.P50, out.LatencyMs.P95, out.LatencyMs.P99, out.LatencyMs.Avg = st.P50Ms, st.P95Ms, st.P99Ms, st.AvgLatencyMs
	return out, nil
}

func (s *Server) getMetricsSLIs(c echo.Context) error {
	w, err := s.window(c)
	if err != nil {
		return err
	}
	sl, err := s.slisOf(c.Request().Context(), tenantOf(c).TenantID, w)
	if err != nil {
		return errMetricsUnavailable(err)
	}
	return ok(c, http.StatusOK, w.with(structFields(sl)))
}

// ---- GET /metrics/anomalies -------------------------------------------------------------------

// Anomaly detection: hourly buckets; each hour of the period is compared with the anomalyHistory
// hours before it, and a value beyond mean ± 3σ of at least anomalyMinHistory points is an
// anomaly (CONTRACT.md). The current hour is still filling up, so only an excess counts there.
const (
	anomalyHistory    = 24
	anomalyMinHistory = 5
	anomalySigmas     = 3
)

// anomalySeries are the hourly metrics checked, in report order. Latency has a point only in hours
// with model calls (an hour without calls has no latency, not a latency of 0).
var anomalySeries = []struct {
	name  string
	value func(b store.HourBucket) (float64, bool)
}{
	{"model.requests", func(b store.HourBucket) (float64, bool) { return float64(b.ModelCalls), true }},
	{"model.errors", func(b store.HourBucket) (float64, bool) { return float64(b.ModelErrors), true }},
	{"model.tokens", func(b store.HourBucket) (float64, bool) { return float64(b.Tokens), true }},
	{"model.latency_avg_ms", func(b store.HourBucket) (float64, bool) { return b.AvgLatencyMs, b.ModelCalls > 0 }},
	{"cost.total_usd", func(b store.HourBucket) (float64, bool) { return b.Cost, true }},
	{"search.total_checks", func(b store.HourBucket) (float64, bool) { return float64(b.Searches), true }},
	{"search.errors", func(b store.HourBucket) (float64, bool) { return float64(b.SearchErrors), true }},
	{"tools.total_executions", func(b store.HourBucket) (float64, bool) { return float64(b.ToolExecutions), true }},
	{"tools.errors", func(b store.HourBucket) (float64, bool) { return float64(b.ToolErrors), true }},
}

// Anomaly is one hourly value outside mean ± 3σ of the hours before it.
type Anomaly struct {
	Metric    string    `json:"metric"`
	Hour      time.Time `json:"hour"`
	Value     float64   `json:"value"`
	Mean      float64   `json:"mean"`
	StdDev    float64   `json:"stddev"`
	Lower     float64   `json:"lower"`
	Upper     float64   `json:"upper"`
	Direction string    `json:"direction"` // high | low
	History   int       `json:"historyPoints"`
}

// meanStd is the mean and population standard deviation of xs.
func meanStd(xs []float64) (mean, std float64) {
	for _, x := range xs {
		mean += x
	}
	mean /= float64(len(xs))
	for _, x := range xs {
		std += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(std / float64(len(xs)))
}

// outlier reports whether v lies beyond mean ± 3σ of history ("high" or "low"), needing at least
// anomalyMinHistory points. With σ = 0 any value other than the mean is beyond the band.
func outlier(v float64, history []float64) (dir string, mean, std float64, ok bool) {
	if len(history) < anomalyMinHistory {
		return "", 0, 0, false
	}
	mean, std = meanStd(history)
	// A small tolerance keeps float noise (cost sums) from flagging a flat series.
	eps := 1e-9 * math.Max(1, math.Abs(mean))
	switch {
	case v > mean+anomalySigmas*std+eps:
		return "high", mean, std, true
	case v < mean-anomalySigmas*std-eps:
		return "low", mean, std, true
	}
	return "", mean, std, false
}

// findAnomalies checks the buckets from index first on (the period) against up to anomalyHistory
// buckets before each. The last bucket is the current, partial hour when partial is true.
func findAnomalies(buckets []store.HourBucket, first int, partial bool) []Anomaly {
	var out []Anomaly
	for _, series := range anomalySeries {
		for i := max(first, 0); i < len(buckets); i++ {
			v, has := series.value(buckets[i])
			if !has {
				continue
			}
			var hist []float64
			for j := max(0, i-anomalyHistory); j < i; j++ {
				if h, ok := series.value(buckets[j]); ok {
					hist = append(hist, h)
				}
			}
			dir, mean, std, found := outlier(v, hist)
			if !found || (partial && i == len(buckets)-1 && dir == "low") {
				continue
			}
			out = append(out, Anomaly{
				Metric: series.name, Hour: buckets[i].Start, Value: v, Mean: mean, StdDev: std,
				Lower: mean - anomalySigmas*std, Upper: mean + anomalySigmas*std, Direction: dir, History: len(hist),
			})
		}
	}
	return out
}

type anomalyReport struct {
	Metrics   []string  `json:"metrics"`
	Anomalous []string  `json:"anomalousMetrics"`
	Anomalies []Anomaly `json:"anomalies"`
	Hours     int       `json:"hours"`
}

func (s *Server) anomaliesOf(ctx context.Context, tenant string, w metricsWindow) (anomalyReport, error) {
	histFrom := w.From.Add(-anomalyHistory * time.Hour)
	buckets, err := s.tmetrics.Reader.HourlyBuckets(ctx, tenant, histFrom, w.end(), s.price)
	if err != nil {
		return anomalyReport{}, err
	}
	periodStart := w.From.Truncate(time.Hour)
	first := sort.Search(len(buckets), func(i int) bool { return !buckets[i].Start.Before(periodStart) })
	partial := !w.To.Truncate(time.Hour).Equal(w.To)
	rep := anomalyReport{Anomalies: findAnomalies(buckets, first, partial), Hours: len(buckets) - first}
	seen := map[string]bool{}
	for _, a := range rep.Anomalies {
		if !seen[a.Metric] {
			seen[a.Metric] = true
			rep.Anomalous = append(rep.Anomalous, a.Metric)
		}
	}
	for _, sr := range anomalySeries {
		rep.Metrics = append(rep.Metrics, sr.name)
	}
	if rep.Anomalies == nil {
		rep.Anomalies = []Anomaly{}
	}
	if rep.Anomalous == nil {
		rep.Anomalous = []string{}
	}
	return rep, nil
}

func (s *Server) getMetricsAnomalies(c echo.Context) error {
	w, err := s.window(c)
	if err != nil {
		return err
	}
	rep, err := s.anomaliesOf(c.Request().Context(), tenantOf(c).TenantID, w)
	if err != nil {
		return errMetricsUnavailable(err)
	}
	return ok(c, http.StatusOK, w.with(map[string]any{
		"bucket": "1h", "historyHours": anomalyHistory, "minHistoryPoints": anomalyMinHistory, "sigmas": anomalySigmas,
		"hours": rep.Hours, "metrics": rep.Metrics, "anomalousMetrics": rep.Anomalous, "anomalies": rep.Anomalies,
	}))
}

// ---- named metrics, alerts --------------------------------------------------------------------

// AlertMetrics are the metric names an alert rule may watch, each computed over the rule's period.
var AlertMetrics = []string{
	"cost.total_usd", "cost.total_tokens",
	"search.hit_rate", "search.error_rate", "search.avg_latency_ms", "search.total_checks",
	"tools.error_rate", "tools.total_executions", "tools.avg_duration_ms",
	"model.availability", "model.error_rate", "model.requests",
	"model.latency_p50_ms", "model.latency_p95_ms", "model.latency_p99_ms",
}

// namedMetrics computes every AlertMetrics value over w.
func (s *Server) namedMetrics(ctx context.Context, tenant string, w metricsWindow) (map[string]float64, error) {
	cs, err := s.costOf(ctx, tenant, w)
	if err != nil {
		return nil, err
	}
	sc, err := s.searchCacheOf(ctx, tenant, w)
	if err != nil {
		return nil, err
	}
	ts, err := s.toolsOf(ctx, tenant, w)
	if err != nil {
		return nil, err
	}
	sl, err := s.slisOf(ctx, tenant, w)
	if err != nil {
		return nil, err
	}
	return map[string]float64{
		"cost.total_usd": cs.TotalCost, "cost.total_tokens": float64(cs.TotalTokens),
		"search.hit_rate": sc.HitRate, "search.error_rate": sc.ErrorRate, "search.avg_latency_ms": sc.AvgLatencyMs,
		"search.total_checks":    float64(sc.TotalChecks),
		"tools.error_rate":       ts.ErrorRate,
		"tools.total_executions": float64(ts.TotalExecutions), "tools.avg_duration_ms": ts.AvgDurationMs,
		"model.availability": sl.Availability, "model.error_rate": sl.ErrorRate, "model.requests": float64(sl.ModelCalls.Total),
		"model.latency_p50_ms": float64(sl.LatencyMs.P50), "model.latency_p95_ms": float64(sl.LatencyMs.P95),
		"model.latency_p99_ms": float64(sl.LatencyMs.P99),
	}, nil
}

// AlertRule is a tenant's rule: it fires when Metric (over Period) Operator Threshold holds.
type AlertRule struct {
	ID        string    `json:"id"`
	Name      string    `json:"name,omitempty"`
	Metric    string    `json:"metric"`
	Operator  string    `json:"operator"`
	Threshold float64   `json:"threshold"`
	Period    string    `json:"period"`
	CreatedAt time.Time `json:"createdAt"`
}

// evaluatedRule is a rule with its current value, as GET /metrics/alerts answers.
type evaluatedRule struct {
	AlertRule
	Value  float64 `json:"value"`
	Firing bool    `json:"firing"`
}

// alertOperators maps every accepted operator spelling to its comparison.
var alertOperators = map[string]func(v, t float64) bool{
	">": func(v, t float64) bool { return v > t }, ">=": func(v, t float64) bool { return v >= t },
	"<": func(v, t float64) bool { return v < t }, "<=": func(v, t float64) bool { return v <= t },
	"==": func(v, t float64) bool { return v == t }, "!=": func(v, t float64) bool { return v != t },
}

// operatorAliases are the word forms, stored as their symbol.
var operatorAliases = map[string]string{"gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "eq": "==", "ne": "!="}

const (
	alertKeyPrefix   = "alerts."
	maxAlertRules    = 50
	maxAlertNameLen  = 100
	alertStoreTimout = 5 * time.Second
)

var alertIDPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

type alertRequest struct {
	Name      string   `json:"name"`
	Metric    string   `json:"metric"`
	Operator  string   `json:"operator"`
	Threshold *float64 `json:"threshold"`
	Period    string   `json:"period"`
}

// validate checks a new rule and returns it normalised (operator as a symbol, default period).
func (r alertRequest) validate() (AlertRule, error) {
	known := false
	for _, m := range AlertMetrics {
		known = known || m == r.Metric
	}
	if !known {
		return AlertRule{}, errInvalidRequest("metric: must be one of %s", strings.Join(AlertMetrics, ", "))
	}
	op := r.Operator
	if sym, alias := operatorAliases[strings.ToLower(op)]; alias {
		op = sym
	}
	if _, found := alertOperators[op]; !found {
		return AlertRule{}, errInvalidRequest("operator: must be one of >, >=, <, <=, ==, != (or gt, gte, lt, lte, eq, ne)")
	}
	if r.Threshold == nil {
		return AlertRule{}, errInvalidRequest("threshold: required number")
	}
	if math.IsNaN(*r.Threshold) || math.IsInf(*r.Threshold, 0) {
		return AlertRule{}, errInvalidRequest("threshold: must be a finite number")
	}
	period, _, err := parsePeriod(r.Period)
	if err != nil {
		return AlertRule{}, err
	}
	if len(r.Name) > maxAlertNameLen {
		return AlertRule{}, errInvalidRequest("name: must be at most %d characters", maxAlertNameLen)
	}
	return AlertRule{Name: r.Name, Metric: r.Metric, Operator: op, Threshold: *r.Threshold, Period: period}, nil
}

// loadRules reads the tenant's rules, oldest first.
func (s *Server) loadRules(ctx context.Context, tenant string) ([]AlertRule, error) {
	keys, err := s.tmetrics.Alerts.Keys(ctx, tenant)
	if err != nil {
		return nil, err
	}
	rules := []AlertRule{}
	for _, k := range keys {
		if !strings.HasPrefix(k, alertKeyPrefix) {
			continue
		}
		b, err := s.tmetrics.Alerts.Get(ctx, tenant, k)
		if errors.Is(err, store.ErrNotFound) {
			continue // deleted since the listing
		}
		if err != nil {
			return nil, err
		}
		var r AlertRule
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("alert rule %s: %w", k, err)
		}
		rules = append(rules, r)
	}
	sort.Slice(rules, func(i, j int) bool {
		if !rules[i].CreatedAt.Equal(rules[j].CreatedAt) {
			return rules[i].CreatedAt.Before(rules[j].CreatedAt)
		}
		return rules[i].ID < rules[j].ID
	})
	return rules, nil
}

// evaluate computes each rule's metric over its own period (one set of queries per period used).
func (s *Server) evaluate(ctx context.Context, tenant string, rules []AlertRule) ([]evaluatedRule, error) {
	byPeriod := map[string]map[string]float64{}
	out := make([]evaluatedRule, 0, len(rules))
	to := s.now().UTC()
	for _, r := range rules {
		vals, done := byPeriod[r.Period]
		if !done {
			_, d, err := parsePeriod(r.Period)
			if err != nil {
				return nil, fmt.Errorf("alert rule %s: %w", r.ID, err)
			}
			if vals, err = s.namedMetrics(ctx, tenant, metricsWindow{Period: r.Period, From: to.Add(-d), To: to}); err != nil {
				return nil, err
			}
			byPeriod[r.Period] = vals
		}
		v := vals[r.Metric]
		cmp := alertOperators[r.Operator]
		out = append(out, evaluatedRule{AlertRule: r, Value: v, Firing: cmp != nil && cmp(v, r.Threshold)})
	}
	return out, nil
}

func firingCount(rules []evaluatedRule) int {
	n := 0
	for _, r := range rules {
		if r.Firing {
			n++
		}
	}
	return n
}

func (s *Server) getAlerts(c echo.Context) error {
	ctx := c.Request().Context()
	tenant := tenantOf(c).TenantID
	rules, err := s.loadRules(ctx, tenant)
	if err != nil {
		return errMetricsUnavailable(err)
	}
	ev, err := s.evaluate(ctx, tenant, rules)
	if err != nil {
		return errMetricsUnavailable(err)
	}
	return ok(c, http.StatusOK, map[string]any{
		"rules": ev, "firing": firingCount(ev), "evaluatedAt": s.now().UTC().Format(time.RFC3339Nano),
		"metrics": AlertMetrics,
	})
}

func (s *Server) postAlert(c echo.Context) error {
	var req alertRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	rule, err := req.validate()
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	tenant := tenantOf(c).TenantID
	rules, err := s.loadRules(ctx, tenant)
	if err != nil {
		return errMetricsUnavailable(err)
	}
	if len(rules) >= maxAlertRules {
		return errInvalidRequest("alert rules: at most %d per tenant; delete one first", maxAlertRules)
	}
	rule.ID, rule.CreatedAt = uuid.NewString(), s.now().UTC()
	b, err := json.Marshal(rule)
	if err != nil {
		return Wrap(http.StatusInternalServerError, CodeInternal, "internal error", err)
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), alertStoreTimout)
	defer cancel()
	if err := s.tmetrics.Alerts.Put(pctx, tenant, alertKeyPrefix+rule.ID, b, 0); err != nil {
		return errMetricsUnavailable(err)
	}
	ev, err := s.evaluate(ctx, tenant, []AlertRule{rule})
	if err != nil {
		return errMetricsUnavailable(err)
	}
	return ok(c, http.StatusCreated, ev[0])
}

// deleteAlert is DELETE /metrics/alerts/:id or DELETE /metrics/alerts?id=.
func (s *Server) deleteAlert(c echo.Context) error {
	id := c.Param("id")
	if id == "" {
		id = c.QueryParam("id")
	}
	if id == "" {
		return errInvalidRequest("id: required (DELETE /metrics/alerts/:id or ?id=)")
	}
	ctx := c.Request().Context()
	tenant := tenantOf(c).TenantID
	notFound := NewError(http.StatusNotFound, CodeNotFound, "no alert rule with this id")
	if !alertIDPattern.MatchString(id) {
		return notFound
	}
	if _, err := s.tmetrics.Alerts.Get(ctx, tenant, alertKeyPrefix+id); errors.Is(err, store.ErrNotFound) {
		return notFound
	} else if err != nil {
		return errMetricsUnavailable(err)
	}
	if err := s.tmetrics.Alerts.Delete(ctx, tenant, alertKeyPrefix+id); err != nil {
		return errMetricsUnavailable(err)
	}
	return ok(c, http.StatusOK, map[string]any{"id": id, "deleted": true})
}

// ---- GET /metrics/overview --------------------------------------------------------------------

func (s *Server) getMetricsOverview(c echo.Context) error {
	w, err := s.window(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	tenant := tenantOf(c).TenantID
	cs, err := s.costOf(ctx, tenant, w)
	if err != nil {
		return errMetricsUnavailable(err)
	}
	sc, err := s.searchCacheOf(ctx, tenant, w)
	if err != nil {
		return errMetricsUnavailable(err)
	}
	ts, err := s.toolsOf(ctx, tenant, w)
	if err != nil {
		return errMetricsUnavailable(err)
	}
	sl, err := s.slisOf(ctx, tenant, w)
	if err != nil {
		return errMetricsUnavailable(err)
	}
	an, err := s.anomaliesOf(ctx, tenant, w)
	if err != nil {
		return errMetricsUnavailable(err)
	}
	out := w.with(map[string]any{
		"cost":        map[string]any{"totalCost": cs.TotalCost, "totalTokens": cs.TotalTokens, "totalRequests": cs.TotalRequests},
		"searchCache": sc,
		"tools": map[string]any{
			"totalExecutions": ts.TotalExecutions, "successCount": ts.SuccessCount, "errorCount": ts.ErrorCount,
			"errorRate": ts.ErrorRate, "avgDurationMs": ts.AvgDurationMs,
		},
		"slis":      sl,
		"anomalies": map[string]any{"count": len(an.Anomalies), "metrics": an.Anomalous},
	})
	if s.tmetrics.Alerts != nil {
		rules, err := s.loadRules(ctx, tenant)
		if err != nil {
			return errMetricsUnavailable(err)
		}
		ev, err := s.evaluate(ctx, tenant, rules)
		if err != nil {
			return errMetricsUnavailable(err)
		}
		var firing []string
		for _, r := range ev {
			if r.Firing {
				firing = append(firing, r.ID)
			}
		}
		if firing == nil {
			firing = []string{}
		}
		out["alerts"] = map[string]any{"rules": len(ev), "firing": len(firing), "firingIds": firing}
	}
	return ok(c, http.StatusOK, out)
}

// ---- recording search cache checks ------------------------------------------------------------

// recordSearch appends the search event GET /metrics/search-cache reads: cache is
// store.SearchCacheHit, SearchCacheMiss or SearchCacheOff; failed, when not nil, is the answer the
// client got. The append runs as settle work, so it never delays the answer; call it before the
// response is written (see settleLater).
func (s *Server) recordSearch(c echo.Context, cache string, started time.Time, failed *Error) {
	if s.ledger == nil {
		return
	}
	ev := store.Event{
		Kind: store.KindSearch, TenantID: tenantOf(c).TenantID, TraceID: traceID(c), Subject: "search",
		LatencyMs: time.Since(started).Milliseconds(), Outcome: "ok", Detail: map[string]any{"cache": cache},
	}
	if failed != nil {
		ev.Outcome, ev.ErrorCode = "error", failed.Code
	}
	ctx := c.Request().Context()
	s.settleLater()(func() { s.appendEvent(ctx, ev) })
}
