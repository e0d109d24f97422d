package store

import "testing"

// TestOutlier is the 3σ rule itself (beyond mean ± 3σ of ≥ 5 history points).
func TestOutlier(t *testing.T) {
	noisy := []float64{10, 12, 8, 11, 9, 10} // mean 10, σ ≈ 1.29
	cases := []struct {
		name    string
		v       float64
		history []float64
		want    string
	}{
		{"four points are not enough history", 100, []float64{1, 1, 1, 1}, ""},
		{"five points are", 100, []float64{1, 1, 1, 1, 1}, "high"},
		{"inside the band", 13.5, noisy, ""},
		{"above mean+3σ", 14, noisy, "high"},
		{"below mean−3σ", 6, noisy, "low"},
		{"flat history, same value", 3, []float64{3, 3, 3, 3, 3}, ""},
		{"flat history, any other value is beyond the band", 2, []float64{3, 3, 3, 3, 3}, "low"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir, _, _, _ := outlier(tc.v, tc.history)
			if dir != tc.want {
				t.Errorf("outlier(%v, %v) = %q, want %q", tc.v, tc.history, dir, tc.want)
			}
		})
	}
	// The partial current hour is never "low": it is still filling up.
	b := make([]HourBucket, 10)
	for i := range b[:9] {
		b[i].ModelCalls = 5
	}
	if got := findAnomalies(b, 9, true); len(got) != 0 {
		t.Errorf("partial hour with fewer calls flagged: %+v", got)
	}
	if got := findAnomalies(b, 9, false); len(got) == 0 {
		t.Error("a complete hour with no calls after 5 an hour is not flagged")
	}
}

// issue 16: a fresh install reported anomalies: the hours before the tenant's first activity are
// zeros, so the first busy hour was "beyond mean ± 3σ" of an all-zero history with σ = 0. History
// starts at the first active hour of the look-back, and a judgement needs AnomalyMinHistory of them.
func TestAnomaliesNeedHistory(t *testing.T) {
	busy := func(b *HourBucket) { b.ModelCalls, b.Tokens, b.Cost, b.AvgLatencyMs, b.Searches = 5, 500, 0.01, 200, 2 }
	tests := []struct {
		name   string
		active []int // indexes of busy hours among 26
		want   bool  // any anomaly in the last 2 hours
	}{
		{"fresh install, first two busy hours", []int{24, 25}, false},
		{"four hours since the first activity are not enough history", []int{22, 23, 24, 25}, false},
		{"busy after quiet hours of an active tenant", []int{10, 24}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := make([]HourBucket, 26)
			for _, i := range tt.active {
				busy(&b[i])
			}
			got := findAnomalies(b, 24, false)
			if (len(got) > 0) != tt.want {
				t.Errorf("anomalies %+v, want any: %v", got, tt.want)
			}
		})
	}
}
