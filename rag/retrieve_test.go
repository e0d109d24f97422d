package rag

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func hit(id string, score float64) Hit { return Hit{Chunk: Chunk{ID: id}, Score: score} }

func TestFuseRRF(t *testing.T) {
	vector := []Hit{hit("a", 0.9), hit("b", 0.8), hit("c", 0.7)}
	keyword := []Hit{hit("c", 12), hit("d", 9), hit("a", 3)}
	got := FuseRRF(RRFK, vector, keyword)
	var order []string
	for _, f := range got {
		order = append(order, f.Chunk.ID)
	}
	// a: 1/61+1/63, c: 1/63+1/61 (tie, a has the higher vector score), b: 1/62, d: 1/62 (tie, b has a vector score).
	if diff := cmp.Diff([]string{"a", "c", "b", "d"}, order); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
	if want := 1.0/61 + 1.0/63; got[0].Score != want || got[0].VectorRank != 1 || got[0].KeywordRank != 3 {
		t.Errorf("a fused as %+v, want score %v ranks 1/3", got[0], want)
	}
	if got[3].VectorRank != 0 || got[3].KeywordRank != 2 {
		t.Errorf("d ranks %+v", got[3])
	}
	if len(FuseRRF(RRFK, nil, nil)) != 0 {
		t.Error("fusing nothing gave hits")
	}
}

func TestConfidence(t *testing.T) {
	tests := []struct {
		sims []float64
		want float64
	}{
		{nil, 0},
		{[]float64{0.5}, 0.5},
		{[]float64{0.2, 0.9, 0.6, 0.7}, (0.9 + 0.7 + 0.6) / 3},
		{[]float64{1.2, 1.1, 1.0}, 1},
		{[]float64{-0.5, -0.2}, 0},
	}
	for _, tt := range tests {
		if got := Confidence(tt.sims); got < tt.want-1e-12 || got > tt.want+1e-12 {
			t.Errorf("Confidence(%v) = %v, want %v", tt.sims, got, tt.want)
		}
	}
}

func TestIsSelfHarm(t *testing.T) {
	for _, q := range []string{"how to kill myself", "I want to end my life", "Self-harm methods", "suicide ideas", "ways of hurting myself"} {
		if !IsSelfHarm(q) {
			t.Errorf("%q not flagged", q)
		}
	}
	for _, q := range []string{"how to kill a process", "install the server", "harmless self-test"} {
		if IsSelfHarm(q) {
			t.Errorf("%q flagged", q)
		}
	}
}

func TestSentences(t *testing.T) {
	got := Sentences("First one. Second one! Third?\nFourth line\n\nFifth. ")
	want := []string{"First one.", "Second one!", "Third?", "Fourth line", "Fifth."}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestExtractiveAnswer(t *testing.T) {
	sources := []Source{
		{Text: "Bananas are yellow. The installer needs root."},
		{Text: "To install the server, run make install. It takes a minute."},
	}
	ans, ok := ExtractiveAnswer("How do I install the server?", sources)
	if !ok {
		t.Fatal("no answer")
	}
	if !strings.Contains(ans, "“To install the server, run make install.” [2]") || !strings.Contains(ans, "“The installer needs root.” [1]") {
		t.Errorf("answer %q", ans)
	}
	if strings.Index(ans, "[2]") > strings.Index(ans, "[1]") {
		t.Errorf("best sentence (2 terms) should come first: %q", ans)
	}
	if strings.Contains(ans, "Bananas") {
		t.Errorf("irrelevant sentence quoted: %q", ans)
	}
	ans, ok = ExtractiveAnswer("quantum chromodynamics", sources)
	if ok || ans != NoAnswer || strings.Contains(ans, "[") {
		t.Errorf("unrelated query: %q %v", ans, ok)
	}
}

func TestFollowUps(t *testing.T) {
	sources := []Source{{Title: "Guide"}, {Title: "Guide"}, {Title: "FAQ"}, {Title: ""}, {Title: "A"}, {Title: "B"}, {Title: "C"}}
	headings := []string{"Guide > Install", "Guide > Install", "", "X > Usage", "", "", ""}
	got := FollowUps("guide", sources, headings)
	want := []string{"Tell me more about Install", "Tell me more about FAQ", "Tell me more about Usage", "Tell me more about A", "Tell me more about B"} // "Guide" is the query itself
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestFuseHybrid(t *testing.T) {
	hit := func(id, text string) Hit { return Hit{Chunk: Chunk{ID: id, Text: text}} }
	vector := []Hit{hit("good", "Caffeine blocks adenosine receptors."), hit("other", "Tea leaves are oxidised.")}
	tests := []struct {
		name    string
		terms   []string
		keyword []Hit
		want    []string
		why     string
	}{
		{"incidental keyword match cannot lift a weak vector hit", []string{"espresso", "keep", "awake"},
			[]Hit{hit("other", "Tea leaves keep their flavour.")}, []string{"good", "other"},
			"1 of 3 terms is below MinKeywordCoverage: the keyword hit adds nothing"},
		{"a real keyword match still fuses", []string{"tea", "leaves"},
			[]Hit{hit("other", "Tea leaves are oxidised.")}, []string{"other", "good"},
			"2 of 2 terms: full weight, vector rank 2 + keyword rank 1 beats vector rank 1"},
		{"no terms: plain RRF", nil,
			[]Hit{hit("other", "anything")}, []string{"other", "good"}, "stopword-only queries keep RRF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, f := range FuseHybrid(vector, tt.keyword, tt.terms) {
				got = append(got, f.Chunk.ID)
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("order %v, want %v (%s)", got, tt.want, tt.why)
			}
		})
	}
}

func TestMinAnswerSimilarityFor(t *testing.T) {
	tests := []struct {
		model string
		want  float64
	}{
		{"local/minilm", DefaultMinAnswerSimilarity},
		{"multilingual-e5-small-q4", E5MinAnswerSimilarity},
		{"intfloat/e5-base-v2", E5MinAnswerSimilarity},
		{"@cf/baai/bge-m3", DefaultMinAnswerSimilarity},
		{"text-embedding-3-small", DefaultMinAnswerSimilarity},
	}
	for _, tt := range tests {
		if got := MinAnswerSimilarityFor(tt.model); got != tt.want {
			t.Errorf("MinAnswerSimilarityFor(%q) = %v, want %v", tt.model, got, tt.want)
		}
	}
}
