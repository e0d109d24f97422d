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
