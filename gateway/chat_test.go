package gateway

import "testing"

// docs/api.md "Token budgets": input tokens estimated as ceil(chars/4), at least 1 per non-empty message.
func TestEstimateTokens(t *testing.T) {
	tests := []struct {
		name string
		msgs []string
		want int
		why  string
	}{
		{"none", nil, 0, ""},
		{"empty message", []string{""}, 0, "an empty message costs nothing"},
		{"one char", []string{"a"}, 1, "at least 1 per non-empty message"},
		{"four chars", []string{"abcd"}, 1, ""},
		{"five chars", []string{"abcde"}, 2, "ceil"},
		{"eight chars", []string{"abcdefgh"}, 2, ""},
		{"per message", []string{"a", "b", "c"}, 3, "ceil per message, so 3 one-char messages are 3, not ceil(3/4)"},
		{"with an empty one", []string{"abcde", "", "xyz"}, 3, ""},
		{"runes not bytes", []string{"日本語の文"}, 2, "5 runes (15 bytes) → ceil(5/4)"},
		{"emoji", []string{"👍👍👍👍"}, 1, "4 runes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := EstimateTokens(tt.msgs...); got != tt.want {
				t.Errorf("EstimateTokens(%q) = %d, want %d %s", tt.msgs, got, tt.want, tt.why)
			}
		})
	}
}
