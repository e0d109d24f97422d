package gateway

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestRouterCutsEveryStreamAtMaxTokens: a provider that ignores max_tokens (here one that sends
// 200 tokens and reports 200 output tokens) and local/extractive (which has no max_tokens) used
// to be charged in full, 2,200 tokens to a 1,000 budget. Every stream now ends at MaxTokens, and
// its Usage reports no more.
func TestRouterCutsEveryStreamAtMaxTokens(t *testing.T) {
	words := make([]string, 200)
	for i := range words {
		words[i] = "word "
	}
	ignoresMaxTokens := newFakeUpstream(t, goodStream(words...))
	r := testRouter(ignoresMaxTokens, nil, RouterOptions{})
	tests := []struct {
		name, model string
		maxTokens   int
	}{
		{"provider ignoring max_tokens", "primary-model", 3},
		{"provider ignoring max_tokens, maxTokens 1", "primary-model", 1},
		{"local/extractive", ExtractiveModelID, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := r.Open(t.Context(), ChatRequest{Model: tt.model, MaxTokens: tt.maxTokens,
				Messages: []Message{{Role: "user", Content: "tell me everything"}}}, "")
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			toks, err := drain(t, s)
			if err != nil {
				t.Fatal(err)
			}
			text := strings.Join(toks, "")
			if got := EstimateTokens(text); got > tt.maxTokens || utf8.RuneCountInString(text) != 4*tt.maxTokens {
				t.Errorf("reply %q is %d tokens, want it cut at %d", text, got, tt.maxTokens)
			}
			if u := s.Usage(); u.TokensOut > tt.maxTokens || u.TokensOut == 0 {
				t.Errorf("usage %+v, want 1..%d output tokens", u, tt.maxTokens)
			}
		})
	}
	// Without MaxTokens the reply is whole.
	s, err := r.Open(t.Context(), ChatRequest{Model: "primary-model", Messages: []Message{{Role: "user", Content: "x"}}}, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if toks, err := drain(t, s); err != nil || len(toks) != len(words) || s.Usage().TokensOut != len(words) {
		t.Fatalf("uncapped: %d tokens, usage %+v, %v", len(toks), s.Usage(), err)
	}
}

// A reply within MaxTokens keeps the provider's exact usage, its output capped.
func TestCappedStreamKeepsExactUsageWithinTheLimit(t *testing.T) {
	up := newFakeUpstream(t, goodStream("hi"))
	s, err := testRouter(up, nil, RouterOptions{}).Open(t.Context(), ChatRequest{Model: "primary-x", MaxTokens: 10,
		Messages: []Message{{Role: "user", Content: "x"}}}, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if toks, err := drain(t, s); err != nil || strings.Join(toks, "") != "hi" {
		t.Fatalf("%q %v", toks, err)
	}
	if u := s.Usage(); u.Estimated || u.TokensIn != 7 || u.TokensOut != 1 {
		t.Fatalf("usage %+v, want the provider's exact counts", u)
	}
}

func TestFirstRunes(t *testing.T) {
	for _, tt := range []struct {
		in   string
		n    int
		want string
	}{{"héllo", 2, "hé"}, {"héllo", 0, ""}, {"hé", 5, "hé"}} {
		if got := firstRunes(tt.in, tt.n); got != tt.want {
			t.Errorf("firstRunes(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}

// The cap keeps the stream's tool calls visible (ToolCallsOf type-asserts the stream).
func TestCappedStreamKeepsToolCalls(t *testing.T) {
	var s ChatStream = limitOutput(&routedStream{}, ChatRequest{MaxTokens: 5})
	if _, ok := s.(ToolCallStream); !ok {
		t.Fatal("a capped stream hides ToolCallStream")
	}
}
