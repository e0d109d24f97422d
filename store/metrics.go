package store

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"time"
)

// KindSearch is a POST /search answered (or failed): Subject "search", Detail {"cache": "hit" |
// "miss" | "off"}, LatencyMs the whole search, ErrorCode set when it failed. The projector audits it
// like any other kind; the tenant metrics (GET /metrics/search-cache) read it back from there.
const KindSearch = "search"

// Search cache outcomes in a KindSearch event's Detail["cache"].
const (
	SearchCacheHit  = "hit"
	SearchCacheMiss = "miss"
	SearchCacheOff  = "off" // the tenant has no search cache: not a cache check
)

// SearchStats sums a tenant's KindSearch events. Hits and Misses count cache checks only; Errors
// counts failed searches (a failed search is also a miss: it went past the cache).
type SearchStats struct {
	Total        int64
	Hits         int64
	Misses       int64
	Errors       int64
	AvgLatencyMs float64 // over the cache checks (hits and misses)
}

// ToolStat is one tool's executions. Successes are executions that returned success:true; Errors are
// all the others (refused, timed out, crashed, or ran and reported a failure).
type ToolStat struct {
	Tool          string
	Executions    int64
	Successes     int64
	Errors        int64
	AvgDurationMs float64
}

// ModelCallStats summarises a tenant's model calls: outcomes and the latency percentiles of the
// calls that answered (outcome ok), nearest-rank, in milliseconds.
type ModelCallStats struct {
	Total        int64
	OK           int64
	Errors       int64
	Cancelled    int64
	AvgLatencyMs float64
	P50Ms        int64
	P95Ms        int64
	P99Ms        int64
}

// HourBucket is one hour of a tenant's activity; Start is the hour's first instant (UTC).
type HourBucket struct {
	Start          time.Time
	ModelCalls     int64
	ModelErrors    int64
	Tokens         int64
	Cost           float64 // priced by the PriceFunc given to HourlyBuckets
	AvgLatencyMs   float64 // of the hour's model calls; 0 without calls
	Searches       int64
	SearchErrors   int64
	ToolExecutions int64
	ToolErrors     int64
}

// PriceFunc gives a model's price per 1000 input and output tokens.
type PriceFunc func(model string) (in, out float64)

// bounds turns [from, to) into epoch-millisecond bounds; a zero side is open.
func bounds(from, to time.Time) (lo, hi int64) {
	lo, hi = math.MinInt64, math.MaxInt64
	if !from.IsZero() {
		lo = from.UnixMilli()
	}
	if !to.IsZero() {
		hi = to.UnixMilli()
	}
	return lo, hi
}

// SearchStats sums the tenant's searches with from <= time < to. Backs GET /metrics/search-cache.
func (t *TenantDBs) SearchStats(ctx context.Context, tenantID string, from, to time.Time) (SearchStats, error) {
	db, err := t.DB(ctx, tenantID)
	if err != nil {
		return SearchStats{}, fmt.Errorf("store: search stats: %w", err)
	}
	lo, hi := bounds(from, to)
	var s SearchStats
	err = db.QueryRowContext(ctx, `SELECT count(*),
			coalesce(sum(json_extract(detail, '$.cache') = 'hit'), 0),
			coalesce(sum(json_extract(detail, '$.cache') = 'miss'), 0),
			coalesce(sum(success = 0), 0),
			coalesce(avg(CASE WHEN json_extract(detail, '$.cache') IN ('hit', 'miss') THEN duration_ms END), 0)
		FROM audit WHERE kind = ? AND ts >= ? AND ts < ?`, KindSearch, lo, hi).
		Scan(&s.Total, &s.Hits, &s.Misses, &s.Errors, &s.AvgLatencyMs)
	if err != nil {
		return SearchStats{}, fmt.Errorf("store: search stats %s: %w", tenantID, err)
	}
	return s, nil
}

// ToolStats returns the tenant's tool executions with from <= time < to, per tool in name order.
// Backs GET /metrics/tools/execution. Success is the tool's own answer (Detail "success", as the
// tool auditor writes it), falling back to the event having no error code.
func (t *TenantDBs) ToolStats(ctx context.Context, tenantID string, from, to time.Time) ([]ToolStat, error) {
	db, err := t.DB(ctx, tenantID)
	if err != nil {
		return nil, fmt.Errorf("store: tool stats: %w", err)
	}
	lo, hi := bounds(from, to)
	rows, err := db.QueryContext(ctx, `SELECT subject, count(*),
			coalesce(sum(coalesce(json_extract(detail, '$.success'), success) = 1), 0),
			avg(duration_ms)
		FROM audit WHERE kind = ? AND ts >= ? AND ts < ? GROUP BY subject ORDER BY subject`, KindToolExecuted, lo, hi)
	if err != nil {
		return nil, fmt.Errorf("store: tool stats %s: %w", tenantID, err)
	}
	defer rows.Close()
	var out []ToolStat
	for rows.Next() {
		var s ToolStat
		if err := rows.Scan(&s.Tool, &s.Executions, &s.Successes, &s.AvgDurationMs); err != nil {
			return nil, fmt.Errorf("store: tool stats %s: %w", tenantID, err)
		}
		s.Errors = s.Executions - s.Successes
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: tool stats %s: %w", tenantID, err)
	}
	return out, nil
}

// ModelCallStats returns the outcomes and latency of the tenant's model calls with
// from <= time < to. Backs GET /metrics/slis. Percentiles are nearest-rank over the calls that
// answered, read with ORDER BY … LIMIT 1 OFFSET rank−1, so no latency list is held in memory.
func (t *TenantDBs) ModelCallStats(ctx context.Context, tenantID string, from, to time.Time) (ModelCallStats, error) {
	db, err := t.DB(ctx, tenantID)
	if err != nil {
		return ModelCallStats{}, fmt.Errorf("store: model call stats: %w", err)
	}
	lo, hi := bounds(from, to)
	var s ModelCallStats
	err = db.QueryRowContext(ctx, `SELECT count(*),
			coalesce(sum(outcome = 'ok'), 0),
			coalesce(sum(outcome = 'cancelled'), 0),
			coalesce(avg(CASE WHEN outcome = 'ok' THEN latency_ms END), 0)
		FROM usage WHERE ts >= ? AND ts < ?`, lo, hi).Scan(&s.Total, &s.OK, &s.Cancelled, &s.AvgLatencyMs)
	if err != nil {
		return ModelCallStats{}, fmt.Errorf("store: model call stats %s: %w", tenantID, err)
	}
	// Anything that neither answered nor was abandoned by its client failed (error, or an outcome
	// this version does not know).
	s.Errors = s.Total - s.OK - s.Cancelled
	for _, p := range []struct {
		pct float64
		dst *int64
	}{{50, &s.P50Ms}, {95, &s.P95Ms}, {99, &s.P99Ms}} {
		if s.OK == 0 {
			break
		}
		rank := int64(math.Ceil(p.pct / 100 * float64(s.OK)))
		err := db.QueryRowContext(ctx, `SELECT latency_ms FROM usage WHERE outcome = 'ok' AND ts >= ? AND ts < ?
			ORDER BY latency_ms LIMIT 1 OFFSET ?`, lo, hi, rank-1).Scan(p.dst)
		if err != nil && err != sql.ErrNoRows {
			return ModelCallStats{}, fmt.Errorf("store: model call p%.0f %s: %w", p.pct, tenantID, err)
		}
	}
	return s, nil
}

// HourlyBuckets returns one bucket per UTC hour from from's hour up to the hour holding to
// (exclusive of to itself), zero-filled where nothing happened, oldest first. Backs
// GET /metrics/anomalies. price prices each model's tokens (nil: cost 0).
func (t *TenantDBs) HourlyBuckets(ctx context.Context, tenantID string, from, to time.Time, price PriceFunc) ([]HourBucket, error) {
	if from.IsZero() || to.IsZero() || !from.Before(to) {
		return nil, fmt.Errorf("store: hourly buckets: need from < to, got %s, %s", from, to)
	}
	db, err := t.DB(ctx, tenantID)
	if err != nil {
		return nil, fmt.Errorf("store: hourly buckets: %w", err)
	}
	const hourMs = int64(time.Hour / time.Millisecond)
	start := from.UTC().Truncate(time.Hour)
	n := int((to.Sub(start) + time.Hour - 1) / time.Hour)
	out := make([]HourBucket, n)
	for i := range out {
		out[i].Start = start.Add(time.Duration(i) * time.Hour)
	}
	lo, hi := bounds(from, to)
	base := start.UnixMilli()
	bucket := func(h int64) *HourBucket {
		i := (h*hourMs - base) / hourMs
		if i < 0 || i >= int64(n) {
			return nil
		}
		return &out[i]
	}

	rows, err := db.QueryContext(ctx, `SELECT ts / ? AS h, model, count(*), coalesce(sum(outcome NOT IN ('ok', 'cancelled')), 0),
			sum(tokens_in), sum(tokens_out), sum(latency_ms)
		FROM usage WHERE ts >= ? AND ts < ? GROUP BY h, model`, hourMs, lo, hi)
	if err != nil {
		return nil, fmt.Errorf("store: hourly buckets %s: %w", tenantID, err)
	}
	latencySum := make([]int64, n)
	for rows.Next() {
		var (
			h, calls, errs, in, outTok, lat int64
			model                           string
		)
		if err := rows.Scan(&h, &model, &calls, &errs, &in, &outTok, &lat); err != nil {
			rows.Close()
			return nil, fmt.Errorf("store: hourly buckets %s: %w", tenantID, err)
		}
		b := bucket(h)
		if b == nil {
			continue
		}
		b.ModelCalls += calls
		b.ModelErrors += errs
		b.Tokens += in + outTok
		latencySum[(h*hourMs-base)/hourMs] += lat
		if price != nil {
			pin, pout := price(model)
			b.Cost += float64(in)/1000*pin + float64(outTok)/1000*pout
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: hourly buckets %s: %w", tenantID, err)
	}
	for i := range out {
		if out[i].ModelCalls > 0 {
			out[i].AvgLatencyMs = float64(latencySum[i]) / float64(out[i].ModelCalls)
		}
	}

	rows, err = db.QueryContext(ctx, `SELECT ts / ? AS h, kind, count(*), coalesce(sum(CASE WHEN kind = ?
				THEN coalesce(json_extract(detail, '$.success'), success) = 0 ELSE success = 0 END), 0)
		FROM audit WHERE kind IN (?, ?) AND ts >= ? AND ts < ? GROUP BY h, kind`,
		hourMs, KindToolExecuted, KindSearch, KindToolExecuted, lo, hi)
	if err != nil {
		return nil, fmt.Errorf("store: hourly buckets %s: %w", tenantID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			h, count, errs int64
			kind           string
		)
		if err := rows.Scan(&h, &kind, &count, &errs); err != nil {
			return nil, fmt.Errorf("store: hourly buckets %s: %w", tenantID, err)
		}
		b := bucket(h)
		if b == nil {
			continue
		}
		if kind == KindSearch {
			b.Searches, b.SearchErrors = b.Searches+count, b.SearchErrors+errs
		} else {
			b.ToolExecutions, b.ToolErrors = b.ToolExecutions+count, b.ToolErrors+errs
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: hourly buckets %s: %w", tenantID, err)
	}
	return out, nil
}
