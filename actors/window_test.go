package actors

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestSlidingWindowDecide walks docs/api.md "Rate limits": allowed iff fewer than perMinute admitted in
// the last windowSec AND fewer than burst in the last burstWindowSec; only allowed requests recorded;
// remaining = max(0, limit − count − 1) on admit, 0 on deny; reset = oldest-relevant timestamp + window.
func TestSlidingWindowDecide(t *testing.T) {
	const s = int64(1000)
	lim := limits{perWindow: 3, burst: 2, windowMs: 60 * s, burstWindow: 10 * s}
	type step struct {
		at   int64
		want decision
	}
	tests := []struct {
		name  string
		lim   limits
		steps []step
	}{
		{
			name: "burst of 2 in 10s, then the burst window frees, then the minute window is full",
			lim:  lim,
			steps: []step{
				{0, decision{allowed: true, limit: 3, remaining: 2, resetAtMs: 60 * s}},
				{1 * s, decision{allowed: true, limit: 3, remaining: 1, resetAtMs: 60 * s}},
				// burst full: retry when the first (t=0) leaves the 10s burst window
				{2 * s, decision{allowed: false, limit: 3, remaining: 0, resetAtMs: 60 * s, retryAfterMs: 8 * s}},
				// the denied request was not recorded: at 10s the t=0 entry left the burst window
				{10 * s, decision{allowed: true, limit: 3, remaining: 0, resetAtMs: 60 * s}},
				// minute full (0, 1, 10) and burst not full (only 10 in last 10s): retry when t=0 leaves the minute
				{15 * s, decision{allowed: false, limit: 3, remaining: 0, resetAtMs: 60 * s, retryAfterMs: 45 * s}},
				// exactly one window after t=0 it no longer counts
				{60 * s, decision{allowed: true, limit: 3, remaining: 0, resetAtMs: 61 * s}},
				{200 * s, decision{allowed: true, limit: 3, remaining: 2, resetAtMs: 260 * s}},
			},
		},
		{
			name: "both windows block: retry after the later one frees",
			lim:  limits{perWindow: 2, burst: 2, windowMs: 60 * s, burstWindow: 10 * s},
			steps: []step{
				{0, decision{allowed: true, limit: 2, remaining: 1, resetAtMs: 60 * s}},
				{1 * s, decision{allowed: true, limit: 2, remaining: 0, resetAtMs: 60 * s}},
				{5 * s, decision{allowed: false, limit: 2, remaining: 0, resetAtMs: 60 * s, retryAfterMs: 55 * s}},
			},
		},
		{
			name: "burst disabled (0) only the minute window counts",
			lim:  limits{perWindow: 2, burst: 0, windowMs: 60 * s, burstWindow: 10 * s},
			steps: []step{
				{0, decision{allowed: true, limit: 2, remaining: 1, resetAtMs: 60 * s}},
				{0, decision{allowed: true, limit: 2, remaining: 0, resetAtMs: 60 * s}},
				{1, decision{allowed: false, limit: 2, remaining: 0, resetAtMs: 60 * s, retryAfterMs: 60*s - 1}},
			},
		},
		{
			name: "retry-after is at least 1 ms",
			lim:  limits{perWindow: 1, burst: 1, windowMs: 1 * s, burstWindow: 1 * s},
			steps: []step{
				{0, decision{allowed: true, limit: 1, remaining: 0, resetAtMs: 1 * s}},
				{999, decision{allowed: false, limit: 1, remaining: 0, resetAtMs: 1 * s, retryAfterMs: 1}},
				{1000, decision{allowed: true, limit: 1, remaining: 0, resetAtMs: 2 * s}},
			},
		},
		{
			name: "zero limit denies everything",
			lim:  limits{perWindow: 0, burst: 5, windowMs: 60 * s, burstWindow: 10 * s},
			steps: []step{
				{0, decision{allowed: false, limit: 0, remaining: 0, resetAtMs: 60 * s, retryAfterMs: 60 * s}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w slidingWindow
			for i, st := range tt.steps {
				got := w.decide(st.at, tt.lim)
				if diff := cmp.Diff(st.want, got, cmp.AllowUnexported(decision{})); diff != "" {
					t.Fatalf("step %d at %dms (-want +got):\n%s", i, st.at, diff)
				}
			}
		})
	}
}

func TestSlidingWindowPrunesToLimit(t *testing.T) {
	var w slidingWindow
	lim := limits{perWindow: 5, burst: 5, windowMs: 1000, burstWindow: 1000}
	for at := int64(0); at < 100_000; at += 10 {
		w.decide(at, lim)
	}
	if len(w.admitted) > lim.perWindow {
		t.Fatalf("window holds %d timestamps, want at most %d", len(w.admitted), lim.perWindow)
	}
}

func TestLimitsFromRequestDefaults(t *testing.T) {
	got := limitsFromRequest(pbRateLimit(10, 3, 0, 0))
	want := limits{perWindow: 10, burst: 3, windowMs: 60_000, burstWindow: 10_000}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(limits{})); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
}

// TestSlidingWindowRecordsLeases: permits recorded at a lease's end keep the window sorted, count
// in every decision until they leave it, and can be dropped again.
func TestSlidingWindowRecordsLeases(t *testing.T) {
	lim := limits{perWindow: 10, windowMs: 1000, burstWindow: 1000}
	var w slidingWindow
	w.decide(0, lim)
	w.recordAt(100, 3)
	w.decide(50, lim) // behind the lease's permits
	if !slices.IsSorted(w.admitted) {
		t.Fatalf("admitted %v, want sorted", w.admitted)
	}
	if got := w.room(50, lim); got != 5 {
		t.Errorf("room at 50 = %d, want 10 - 5", got)
	}
	// At 1,050 the two decisions left the window; the permits recorded at 100 still count.
	if got := w.room(1050, lim); got != 7 {
		t.Errorf("room at 1050 = %d, want 10 - 3", got)
	}
	w.drop(100, 2)
	if got := w.room(1050, lim); got != 9 {
		t.Errorf("room at 1050 after dropping 2 = %d, want 9", got)
	}
	w.drop(100, 5) // only one is left at 100
	if diff := cmp.Diff([]int64{0, 50}, w.admitted); diff != "" {
		t.Errorf("admitted (-want +got):\n%s", diff)
	}
}
