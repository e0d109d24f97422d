package store

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// metricsEvents is one tenant's mixed history in hour h0 and h0+1h, plus one event before from
// that every query must leave out.
func metricsEvents(h0 time.Time) []Event {
	var evs []Event
	add := func(ev Event) {
		ev.ID = fmt.Sprintf("m%d", len(evs))
		ev.TenantID = "acme"
		evs = append(evs, ev)
	}
	// Ten answered model calls with latencies 10..100 ms, one failed, one cancelled.
	for i := 1; i <= 10; i++ {
		add(Event{Kind: KindModelCall, Time: h0.Add(time.Duration(i) * time.Minute), Model: "m-a", TokensIn: 100, TokensOut: 50,
			LatencyMs: int64(i * 10), Outcome: "ok"})
	}
	add(Event{Kind: KindModelCall, Time: h0.Add(70 * time.Minute), Model: "m-b", LatencyMs: 5000, Outcome: "error", ErrorCode: "ai_error"})
	add(Event{Kind: KindModelCall, Time: h0.Add(71 * time.Minute), Model: "m-b", TokensIn: 10, LatencyMs: 3, Outcome: "cancelled"})
	// Searches: 3 hits (5 ms), 1 miss (35 ms), 1 failed miss (60 ms), 1 without a cache.
	for i := 0; i < 3; i++ {
		add(Event{Kind: KindSearch, Time: h0.Add(time.Minute), Subject: "search", LatencyMs: 5, Detail: map[string]any{"cache": SearchCacheHit}})
	}
	add(Event{Kind: KindSearch, Time: h0.Add(time.Minute), Subject: "search", LatencyMs: 35, Detail: map[string]any{"cache": SearchCacheMiss}})
	add(Event{Kind: KindSearch, Time: h0.Add(61 * time.Minute), Subject: "search", LatencyMs: 60, ErrorCode: "ai_error",
		Detail: map[string]any{"cache": SearchCacheMiss}})
	add(Event{Kind: KindSearch, Time: h0.Add(time.Minute), Subject: "search", LatencyMs: 1000, Detail: map[string]any{"cache": SearchCacheOff}})
	// Tools: calculate ok twice (2, 4 ms); summarize ran and failed (success:false, no code); an
	// unknown tool refused.
	tool := func(name string, ms int64, success bool, code string) Event {
		return Event{Kind: KindToolExecuted, Time: h0.Add(2 * time.Minute), Subject: name, LatencyMs: ms, ErrorCode: code,
			Detail: map[string]any{"success": success}}
	}
	add(tool("calculate", 2, true, ""))
	add(tool("calculate", 4, true, ""))
	add(tool("summarize", 30, false, ""))
	add(tool("nope", 0, false, "TOOL_NOT_FOUND"))
	// Before the window.
	add(Event{Kind: KindModelCall, Time: h0.Add(-2 * time.Hour), Model: "m-a", TokensIn: 1e6, LatencyMs: 1, Outcome: "ok"})
	add(Event{Kind: KindSearch, Time: h0.Add(-2 * time.Hour), Subject: "search", Detail: map[string]any{"cache": SearchCacheHit}})
	add(Event{Kind: KindToolExecuted, Time: h0.Add(-2 * time.Hour), Subject: "calculate", Detail: map[string]any{"success": true}})
	return evs
}

func TestTenantMetricsAggregates(t *testing.T) {
	f := newLedgerFixture(t)
	f.startProjector(t, "projector-metrics")
	h0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	evs := metricsEvents(h0)
	f.append(t, evs...)
	f.append(t, Event{ID: "g1", Kind: KindSearch, TenantID: "globex", Time: h0.Add(time.Minute), Detail: map[string]any{"cache": SearchCacheHit}})
	waitProjected(t, f, "acme", len(evs))
	waitProjected(t, f, "globex", 1)
	from, to := h0, h0.Add(2*time.Hour)
	ctx := t.Context()

	t.Run("search", func(t *testing.T) {
		got, err := f.dbs.SearchStats(ctx, "acme", from, to)
		if err != nil {
			t.Fatal(err)
		}
		// Average over the five cache checks: (3×5 + 35 + 60) / 5 = 22; the cacheless search is
		// not a check.
		want := SearchStats{Total: 6, Hits: 3, Misses: 2, Errors: 1, AvgLatencyMs: 22}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("SearchStats (-want +got):\n%s", diff)
		}
		other, err := f.dbs.SearchStats(ctx, "globex", from, to)
		if err != nil {
			t.Fatal(err)
		}
		if other.Total != 1 || other.Hits != 1 {
			t.Errorf("globex SearchStats = %+v, want its own single hit", other)
		}
	})

	t.Run("tools", func(t *testing.T) {
		got, err := f.dbs.ToolStats(ctx, "acme", from, to)
		if err != nil {
			t.Fatal(err)
		}
		want := []ToolStat{
			{Tool: "calculate", Executions: 2, Successes: 2, AvgDurationMs: 3},
			{Tool: "nope", Executions: 1, Errors: 1},
			{Tool: "summarize", Executions: 1, Errors: 1, AvgDurationMs: 30},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("ToolStats (-want +got):\n%s", diff)
		}
	})

	t.Run("model calls", func(t *testing.T) {
		got, err := f.dbs.ModelCallStats(ctx, "acme", from, to)
		if err != nil {
			t.Fatal(err)
		}
		// Nearest rank over 10..100: p50 = 5th = 50, p95 = 10th = 100, p99 = 10th = 100.
		want := ModelCallStats{Total: 12, OK: 10, Errors: 1, Cancelled: 1, AvgLatencyMs: 55, P50Ms: 50, P95Ms: 100, P99Ms: 100}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("ModelCallStats (-want +got):\n%s", diff)
		}
		empty, err := f.dbs.ModelCallStats(ctx, "acme", to, to.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(ModelCallStats{}, empty); diff != "" {
			t.Errorf("ModelCallStats of an empty window (-want +got):\n%s", diff)
		}
	})

	t.Run("hourly", func(t *testing.T) {
		price := func(model string) (float64, float64) {
			if model == "m-a" {
				return 1, 2
			}
			return 0, 0
		}
		got, err := f.dbs.HourlyBuckets(ctx, "acme", from, to.Add(30*time.Minute), price)
		if err != nil {
			t.Fatal(err)
		}
		want := []HourBucket{
			{Start: h0, ModelCalls: 10, Tokens: 1500, Cost: 10 * (0.1*1 + 0.05*2), AvgLatencyMs: 55,
				Searches: 5, ToolExecutions: 4, ToolErrors: 2},
			{Start: h0.Add(time.Hour), ModelCalls: 2, ModelErrors: 1, Tokens: 10, AvgLatencyMs: 2501.5,
				Searches: 1, SearchErrors: 1},
			{Start: h0.Add(2 * time.Hour)},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("HourlyBuckets (-want +got):\n%s", diff)
		}
		if _, err := f.dbs.HourlyBuckets(ctx, "acme", to, from, nil); err == nil {
			t.Error("HourlyBuckets(from > to) succeeded, want an error")
		}
	})
}
