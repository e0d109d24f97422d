package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Analytics answers a tenant's metrics from its read model: cost, search cache, tools, SLIs, the
// hourly anomalies, and the tenant's alert rules with their current values. It owns the rules
// (what a metric means, when a value is an anomaly, when a rule fires); the HTTP layer only
// parses the period and writes the answer.
type Analytics struct {
	reader MetricsReader
	alerts AlertRuleStore // nil: no alert rules
	price  PriceFunc
	now    func() time.Time
}

// MetricsReader is the tenant's read model as the analytics read it (TenantDBs).
type MetricsReader interface {
	Usage(ctx context.Context, tenantID string, from, to time.Time, groupBy string) ([]UsageRow, error)
	SearchStats(ctx context.Context, tenantID string, from, to time.Time) (SearchStats, error)
	ToolStats(ctx context.Context, tenantID string, from, to time.Time) ([]ToolStat, error)
	ModelCallStats(ctx context.Context, tenantID string, from, to time.Time) (ModelCallStats, error)
	HourlyBuckets(ctx context.Context, tenantID string, from, to time.Time, price PriceFunc) ([]HourBucket, error)
}

var _ MetricsReader = (*TenantDBs)(nil)

// AlertRuleStore keeps each tenant's alert rules (TenantKV on the "config" bucket), one key per
// rule, so two rules created at once never overwrite each other.
type AlertRuleStore interface {
	Get(ctx context.Context, tenantID, key string) ([]byte, error)
	Put(ctx context.Context, tenantID, key string, value []byte, ttl time.Duration) error
	Delete(ctx context.Context, tenantID, key string) error
	Keys(ctx context.Context, tenantID string) ([]string, error)
}

var _ AlertRuleStore = (*TenantKV)(nil)

// NewAnalytics returns the analytics over reader; alerts may be nil (no alert rules); price prices
// a model's tokens per 1K (in, out); now is the clock (nil: time.Now).
func NewAnalytics(reader MetricsReader, alerts AlertRuleStore, price PriceFunc, now func() time.Time) *Analytics {
	if now == nil {
		now = time.Now
	}
	return &Analytics{reader: reader, alerts: alerts, price: price, now: now}
}

// HasAlerts reports whether alert rules are kept.
func (a *Analytics) HasAlerts() bool { return a.alerts != nil }

// ErrInvalid is wrapped by every refusal of client input (a period, an alert rule): its message is
// client-safe.
var ErrInvalid = errors.New("invalid")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// Periods are the metrics periods; 24h is the default.
var Periods = map[string]time.Duration{"1h": time.Hour, "24h": 24 * time.Hour, "7d": 7 * 24 * time.Hour}

const defaultPeriod = "24h"

// Window is the [From, To) a metrics answer covers.
type Window struct {
	Period string
	From   time.Time
	To     time.Time
}

// ParsePeriod checks a period name ("" is the default) and returns it with its length.
func ParsePeriod(p string) (string, time.Duration, error) {
	if p == "" {
		p = defaultPeriod
	}
	d, found := Periods[p]
	if !found {
		return "", 0, invalid("period: must be 1h, 24h or 7d")
	}
	return p, d, nil
}

// WindowOf is the window of period p ending now.
func (a *Analytics) WindowOf(p string) (Window, error) {
	p, d, err := ParsePeriod(p)
	if err != nil {
		return Window{}, err
	}
	to := a.now().UTC()
	return Window{Period: p, From: to.Add(-d), To: to}, nil
}

// end is the exclusive bound the read model is queried with: the window includes events stamped
// exactly at To (now).
func (w Window) end() time.Time { return w.To.Add(time.Millisecond) }

type ModelCost struct {
	Requests      int64   `json:"requests"`
	TokensIn      int64   `json:"tokensIn"`
	TokensOut     int64   `json:"tokensOut"`
	TotalTokens   int64   `json:"totalTokens"`
	Cost          float64 `json:"cost"`
	PricePer1KIn  float64 `json:"pricePer1KIn"`
	PricePer1KOut float64 `json:"pricePer1KOut"`
}

type CostSummary struct {
	TotalCost     float64              `json:"totalCost"`
	TotalTokens   int64                `json:"totalTokens"`
	TotalRequests int64                `json:"totalRequests"`
	ByModel       map[string]ModelCost `json:"byModel"`
}

func (a *Analytics) Cost(ctx context.Context, tenant string, w Window) (CostSummary, error) {
	rows, err := a.reader.Usage(ctx, tenant, w.From, w.end(), "model")
	if err != nil {
		return CostSummary{}, err
	}
	out := CostSummary{ByModel: map[string]ModelCost{}}
	for _, r := range rows {
		pin, pout := a.price(r.Key)
		m := ModelCost{
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

// ratio is n/d, 0 when d is 0 (no traffic is not a 100% failure).
func ratio(n, d int64) float64 {
	if d == 0 {
		return 0
	}
	return float64(n) / float64(d)
}

type SearchCacheSummary struct {
	Hits          int64   `json:"hits"`
	Misses        int64   `json:"misses"`
	HitRate       float64 `json:"hitRate"`
	AvgLatencyMs  float64 `json:"avgLatencyMs"`
	TotalChecks   int64   `json:"totalChecks"`
	TotalSearches int64   `json:"totalSearches"`
	Errors        int64   `json:"errors"`
	ErrorRate     float64 `json:"errorRate"`
}

func (a *Analytics) SearchCache(ctx context.Context, tenant string, w Window) (SearchCacheSummary, error) {
	st, err := a.reader.SearchStats(ctx, tenant, w.From, w.end())
	if err != nil {
		return SearchCacheSummary{}, err
	}
	checks := st.Hits + st.Misses
	return SearchCacheSummary{
		Hits: st.Hits, Misses: st.Misses, HitRate: ratio(st.Hits, checks), AvgLatencyMs: st.AvgLatencyMs,
		TotalChecks: checks, TotalSearches: st.Total, Errors: st.Errors, ErrorRate: ratio(st.Errors, st.Total),
	}, nil
}

type ToolSummary struct {
	Executions    int64   `json:"executions"`
	SuccessCount  int64   `json:"successCount"`
	ErrorCount    int64   `json:"errorCount"`
	AvgDurationMs float64 `json:"avgDurationMs"`
}

type ToolsSummary struct {
	TotalExecutions int64                  `json:"totalExecutions"`
	SuccessCount    int64                  `json:"successCount"`
	ErrorCount      int64                  `json:"errorCount"`
	ErrorRate       float64                `json:"errorRate"`
	AvgDurationMs   float64                `json:"avgDurationMs"`
	ByTool          map[string]ToolSummary `json:"byTool"`
}

func (a *Analytics) Tools(ctx context.Context, tenant string, w Window) (ToolsSummary, error) {
	stats, err := a.reader.ToolStats(ctx, tenant, w.From, w.end())
	if err != nil {
		return ToolsSummary{}, err
	}
	out := ToolsSummary{ByTool: map[string]ToolSummary{}}
	var durSum float64
	for _, st := range stats {
		out.ByTool[st.Tool] = ToolSummary{Executions: st.Executions, SuccessCount: st.Successes, ErrorCount: st.Errors, AvgDurationMs: st.AvgDurationMs}
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

type SLISummary struct {
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

func (a *Analytics) SLIs(ctx context.Context, tenant string, w Window) (SLISummary, error) {
	st, err := a.reader.ModelCallStats(ctx, tenant, w.From, w.end())
	if err != nil {
		return SLISummary{}, err
	}
	var out SLISummary
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

// Anomaly detection: hourly buckets; each hour of the period is compared with the AnomalyHistory
// hours before it, and a value beyond mean ± 3σ of at least AnomalyMinHistory points is an
// anomaly. The current hour is still filling up, so only an excess counts there.
const (
	AnomalyHistory    = 24
	AnomalyMinHistory = 5
	AnomalySigmas     = 3
)

// anomalySeries are the hourly metrics checked, in report order. Latency has a point only in hours
// with model calls (an hour without calls has no latency, not a latency of 0).
var anomalySeries = []struct {
	name  string
	value func(b HourBucket) (float64, bool)
}{
	{"model.requests", func(b HourBucket) (float64, bool) { return float64(b.ModelCalls), true }},
	{"model.errors", func(b HourBucket) (float64, bool) { return float64(b.ModelErrors), true }},
	{"model.tokens", func(b HourBucket) (float64, bool) { return float64(b.Tokens), true }},
	{"model.latency_avg_ms", func(b HourBucket) (float64, bool) { return b.AvgLatencyMs, b.ModelCalls > 0 }},
	{"cost.total_usd", func(b HourBucket) (float64, bool) { return b.Cost, true }},
	{"search.total_checks", func(b HourBucket) (float64, bool) { return float64(b.Searches), true }},
	{"search.errors", func(b HourBucket) (float64, bool) { return float64(b.SearchErrors), true }},
	{"tools.total_executions", func(b HourBucket) (float64, bool) { return float64(b.ToolExecutions), true }},
	{"tools.errors", func(b HourBucket) (float64, bool) { return float64(b.ToolErrors), true }},
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
// AnomalyMinHistory points. With σ = 0 any value other than the mean is beyond the band.
func outlier(v float64, history []float64) (dir string, mean, std float64, ok bool) {
	if len(history) < AnomalyMinHistory {
		return "", 0, 0, false
	}
	mean, std = meanStd(history)
	// A small tolerance keeps float noise (cost sums) from flagging a flat series.
	eps := 1e-9 * math.Max(1, math.Abs(mean))
	switch {
	case v > mean+AnomalySigmas*std+eps:
		return "high", mean, std, true
	case v < mean-AnomalySigmas*std-eps:
		return "low", mean, std, true
	}
	return "", mean, std, false
}

// findAnomalies checks the buckets from index first on (the period) against up to AnomalyHistory
// buckets before each. The last bucket is the current, partial hour when partial is true.
//
// History starts at the first hour with any activity: before it the tenant had nothing to measure
// (a fresh install's zeros), and judging its first busy hour against them flagged everything
// (σ = 0). A value is judged only once AnomalyMinHistory hours of real history exist.
func findAnomalies(buckets []HourBucket, first int, partial bool) []Anomaly {
	var out []Anomaly
	since := slices.IndexFunc(buckets, active)
	if since < 0 {
		return nil
	}
	for _, series := range anomalySeries {
		for i := max(first, 0); i < len(buckets); i++ {
			v, has := series.value(buckets[i])
			if !has {
				continue
			}
			var hist []float64
			for j := max(since, i-AnomalyHistory); j < i; j++ {
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
				Lower: mean - AnomalySigmas*std, Upper: mean + AnomalySigmas*std, Direction: dir, History: len(hist),
			})
		}
	}
	return out
}

// active reports whether anything was recorded in the hour.
func active(b HourBucket) bool {
	return b.ModelCalls > 0 || b.Tokens > 0 || b.Cost > 0 || b.Searches > 0 || b.ToolExecutions > 0
}

type AnomalyReport struct {
	Metrics   []string  `json:"metrics"`
	Anomalous []string  `json:"anomalousMetrics"`
	Anomalies []Anomaly `json:"anomalies"`
	Hours     int       `json:"hours"`
}

func (a *Analytics) Anomalies(ctx context.Context, tenant string, w Window) (AnomalyReport, error) {
	histFrom := w.From.Add(-AnomalyHistory * time.Hour)
	buckets, err := a.reader.HourlyBuckets(ctx, tenant, histFrom, w.end(), a.price)
	if err != nil {
		return AnomalyReport{}, err
	}
	periodStart := w.From.Truncate(time.Hour)
	first := sort.Search(len(buckets), func(i int) bool { return !buckets[i].Start.Before(periodStart) })
	partial := !w.To.Truncate(time.Hour).Equal(w.To)
	rep := AnomalyReport{Anomalies: findAnomalies(buckets, first, partial), Hours: len(buckets) - first}
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

// AlertMetrics are the metric names an alert rule may watch, each computed over the rule's period.
var AlertMetrics = []string{
	"cost.total_usd", "cost.total_tokens",
	"search.hit_rate", "search.error_rate", "search.avg_latency_ms", "search.total_checks",
	"tools.error_rate", "tools.total_executions", "tools.avg_duration_ms",
	"model.availability", "model.error_rate", "model.requests",
	"model.latency_p50_ms", "model.latency_p95_ms", "model.latency_p99_ms",
}

// namedMetrics computes every AlertMetrics value over w.
func (a *Analytics) namedMetrics(ctx context.Context, tenant string, w Window) (map[string]float64, error) {
	cs, err := a.Cost(ctx, tenant, w)
	if err != nil {
		return nil, err
	}
	sc, err := a.SearchCache(ctx, tenant, w)
	if err != nil {
		return nil, err
	}
	ts, err := a.Tools(ctx, tenant, w)
	if err != nil {
		return nil, err
	}
	sl, err := a.SLIs(ctx, tenant, w)
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

// EvaluatedRule is a rule with its current value, as GET /metrics/alerts answers.
type EvaluatedRule struct {
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

type AlertRequest struct {
	Name      string   `json:"name"`
	Metric    string   `json:"metric"`
	Operator  string   `json:"operator"`
	Threshold *float64 `json:"threshold"`
	Period    string   `json:"period"`
}

// validate checks a new rule and returns it normalised (operator as a symbol, default period).
func (r AlertRequest) Validate() (AlertRule, error) {
	known := false
	for _, m := range AlertMetrics {
		known = known || m == r.Metric
	}
	if !known {
		return AlertRule{}, invalid("metric: must be one of %s", strings.Join(AlertMetrics, ", "))
	}
	op := r.Operator
	if sym, alias := operatorAliases[strings.ToLower(op)]; alias {
		op = sym
	}
	if _, found := alertOperators[op]; !found {
		return AlertRule{}, invalid("operator: must be one of >, >=, <, <=, ==, != (or gt, gte, lt, lte, eq, ne)")
	}
	if r.Threshold == nil {
		return AlertRule{}, invalid("threshold: required number")
	}
	if math.IsNaN(*r.Threshold) || math.IsInf(*r.Threshold, 0) {
		return AlertRule{}, invalid("threshold: must be a finite number")
	}
	period, _, err := ParsePeriod(r.Period)
	if err != nil {
		return AlertRule{}, err
	}
	if len(r.Name) > maxAlertNameLen {
		return AlertRule{}, invalid("name: must be at most %d characters", maxAlertNameLen)
	}
	return AlertRule{Name: r.Name, Metric: r.Metric, Operator: op, Threshold: *r.Threshold, Period: period}, nil
}

// loadRules reads the tenant's rules, oldest first.
func (a *Analytics) Rules(ctx context.Context, tenant string) ([]AlertRule, error) {
	keys, err := a.alerts.Keys(ctx, tenant)
	if err != nil {
		return nil, err
	}
	rules := []AlertRule{}
	for _, k := range keys {
		if !strings.HasPrefix(k, alertKeyPrefix) {
			continue
		}
		b, err := a.alerts.Get(ctx, tenant, k)
		if errors.Is(err, ErrNotFound) {
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
func (a *Analytics) Evaluate(ctx context.Context, tenant string, rules []AlertRule) ([]EvaluatedRule, error) {
	byPeriod := map[string]map[string]float64{}
	out := make([]EvaluatedRule, 0, len(rules))
	to := a.now().UTC()
	for _, r := range rules {
		vals, done := byPeriod[r.Period]
		if !done {
			_, d, err := ParsePeriod(r.Period)
			if err != nil {
				return nil, fmt.Errorf("alert rule %s: %w", r.ID, err)
			}
			if vals, err = a.namedMetrics(ctx, tenant, Window{Period: r.Period, From: to.Add(-d), To: to}); err != nil {
				return nil, err
			}
			byPeriod[r.Period] = vals
		}
		v := vals[r.Metric]
		cmp := alertOperators[r.Operator]
		out = append(out, EvaluatedRule{AlertRule: r, Value: v, Firing: cmp != nil && cmp(v, r.Threshold)})
	}
	return out, nil
}

func firingCount(rules []EvaluatedRule) int {
	n := 0
	for _, r := range rules {
		if r.Firing {
			n++
		}
	}
	return n
}

// FiringCount is how many of the rules fire.
func FiringCount(rules []EvaluatedRule) int { return firingCount(rules) }

// AddRule stores a validated rule under a new ID (at most maxAlertRules per tenant) and returns
// it evaluated.
func (a *Analytics) AddRule(ctx context.Context, tenant string, rule AlertRule) (EvaluatedRule, error) {
	rules, err := a.Rules(ctx, tenant)
	if err != nil {
		return EvaluatedRule{}, err
	}
	if len(rules) >= maxAlertRules {
		return EvaluatedRule{}, invalid("alert rules: at most %d per tenant; delete one first", maxAlertRules)
	}
	rule.ID, rule.CreatedAt = uuid.NewString(), a.now().UTC()
	b, err := json.Marshal(rule)
	if err != nil {
		return EvaluatedRule{}, err
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), alertStoreTimout)
	defer cancel()
	if err := a.alerts.Put(pctx, tenant, alertKeyPrefix+rule.ID, b, 0); err != nil {
		return EvaluatedRule{}, err
	}
	ev, err := a.Evaluate(ctx, tenant, []AlertRule{rule})
	if err != nil {
		return EvaluatedRule{}, err
	}
	return ev[0], nil
}

// DeleteRule removes the tenant's rule id; an ID it does not have wraps ErrNotFound.
func (a *Analytics) DeleteRule(ctx context.Context, tenant, id string) error {
	if !alertIDPattern.MatchString(id) {
		return fmt.Errorf("alert rule %q: %w", id, ErrNotFound)
	}
	if _, err := a.alerts.Get(ctx, tenant, alertKeyPrefix+id); err != nil {
		return err
	}
	return a.alerts.Delete(ctx, tenant, alertKeyPrefix+id)
}
