package console

import (
	"fmt"
	"math"
	"sort"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// TenantSeries is one tenant's HTTP counters as Prometheus has them now (cumulative since the
// node started). The page polls and charts the differences between polls, which is what a
// Prometheus rate() would show.
type TenantSeries struct {
	Tenant      string    `json:"tenant"` // "" = requests refused before a tenant was resolved
	Requests    uint64    `json:"requests"`
	ClientError uint64    `json:"clientErrors"` // 4xx
	ServerError uint64    `json:"serverErrors"` // 5xx
	LatencySum  float64   `json:"latencySumSeconds"`
	LatencyN    uint64    `json:"latencyCount"`
	Buckets     []float64 `json:"bucketBounds"` // upper bounds, seconds
	Counts      []uint64  `json:"bucketCounts"` // cumulative counts per bound
}

// Names of the metrics observe.Metrics registers for HTTP requests.
const (
	metricRequests = "crispy_http_requests_total"
	metricDuration = "crispy_http_request_duration_seconds"
)

// maxTenants bounds the answer; tenant label values are the configured tenants already.
const maxTenants = 500

// TenantHTTPSeries sums the HTTP request metrics by tenant label, over routes, methods and statuses.
func TenantHTTPSeries(g prometheus.Gatherer) ([]TenantSeries, error) {
	mfs, err := g.Gather()
	if err != nil {
		return nil, fmt.Errorf("gather metrics: %w", err)
	}
	by := map[string]*TenantSeries{}
	get := func(tenant string) *TenantSeries {
		ts := by[tenant]
		if ts == nil && len(by) < maxTenants {
			ts = &TenantSeries{Tenant: tenant, Buckets: []float64{}, Counts: []uint64{}}
			by[tenant] = ts
		}
		return ts
	}
	for _, mf := range mfs {
		switch mf.GetName() {
		case metricRequests:
			for _, m := range mf.GetMetric() {
				var tenant string
				status := 0
				for _, l := range m.GetLabel() {
					switch l.GetName() {
					case "tenant":
						tenant = l.GetValue()
					case "status":
						status, _ = strconv.Atoi(l.GetValue())
					}
				}
				ts := get(tenant)
				if ts == nil {
					continue
				}
				n := uint64(math.Round(m.GetCounter().GetValue()))
				ts.Requests += n
				switch {
				case status >= 500:
					ts.ServerError += n
				case status >= 400:
					ts.ClientError += n
				}
			}
		case metricDuration:
			for _, m := range mf.GetMetric() {
				var tenant string
				for _, l := range m.GetLabel() {
					if l.GetName() == "tenant" {
						tenant = l.GetValue()
					}
				}
				ts := get(tenant)
				if ts == nil {
					continue
				}
				h := m.GetHistogram()
				ts.LatencySum += h.GetSampleSum()
				ts.LatencyN += h.GetSampleCount()
				for i, b := range h.GetBucket() {
					if i >= len(ts.Buckets) {
						ts.Buckets = append(ts.Buckets, b.GetUpperBound())
						ts.Counts = append(ts.Counts, 0)
					}
					ts.Counts[i] += b.GetCumulativeCount()
				}
			}
		}
	}
	out := make([]TenantSeries, 0, len(by))
	for _, ts := range by {
		out = append(out, *ts)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Tenant < out[j].Tenant })
	return out, nil
}
