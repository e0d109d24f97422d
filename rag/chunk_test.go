package rag

import (
	"errors"
	"strings"
	"testing"
	"unicode"

	"github.com/google/go-cmp/cmp"
)

func spanTexts(spans []TextSpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Text)
	}
	return out
}

// docs/api.md, POST /ingest: "The original's character chunker" fixtures.
func TestChunkTextContractFixtures(t *testing.T) {
	tests := []struct {
		name string
		text string
		opts ChunkOptions
		want []string
	}{
		{"words with overlap (14,4)", "one two three four five six seven eight nine", ChunkOptions{14, 4},
			[]string{"one two three", "three four", "four five six", "five six seven", "seven eight", "eight nine"}},
		{"long word split hard (10,0)", "supercalifragilisticexpialidocious", ChunkOptions{10, 0},
			[]string{"supercalif", "ragilistic", "expialidoc", "ious"}},
		{"blank text gives no chunks", "  \n\t ", ChunkOptions{10, 2}, nil},
		{"empty text gives no chunks", "", DefaultChunkOptions(), nil},
		{"short text is one chunk", "  hello world  ", DefaultChunkOptions(), []string{"hello world"}},
		{"long word with character overlap", "abcdefghijkl", ChunkOptions{5, 2}, []string{"abcde", "defgh", "ghijk", "jkl"}},
		{"unicode counted in characters", "ééé ççç ñññ", ChunkOptions{7, 0}, []string{"ééé ççç", "ñññ"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spans, err := ChunkText(tt.text, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, spanTexts(spans)); diff != "" {
				t.Errorf("chunks (-want +got):\n%s", diff)
			}
		})
	}
}

func TestChunkOptionsValidate(t *testing.T) {
	for _, o := range []ChunkOptions{{0, 0}, {10, 10}, {10, 11}, {10, -1}, {-5, 0}} {
		if _, err := ChunkText("abc", o); !errors.Is(err, ErrInvalidChunking) {
			t.Errorf("%+v: err %v, want ErrInvalidChunking", o, err)
		}
	}
	if err := (ChunkOptions{1, 0}).Validate(); err != nil {
		t.Errorf("{1,0} should be valid: %v", err)
	}
}

func TestChunkSectionsIDs(t *testing.T) {
	got, err := ChunkSections("doc", []Section{
		{HeadingPath: []string{"Guide"}, Text: "alpha beta"},
		{HeadingPath: []string{"Guide", "Install"}, Text: "gamma delta"},
	}, ChunkOptions{6, 0})
	if err != nil {
		t.Fatal(err)
	}
	want := []SectionChunk{
		{ID: "doc:0", Index: 0, Text: "alpha", HeadingPath: []string{"Guide"}},
		{ID: "doc:1", Index: 1, Text: "beta", HeadingPath: []string{"Guide"}},
		{ID: "doc:2", Index: 2, Text: "gamma", HeadingPath: []string{"Guide", "Install"}},
		{ID: "doc:3", Index: 3, Text: "delta", HeadingPath: []string{"Guide", "Install"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// checkCoverage asserts every chunk is within the size, matches its span, and
// every non-space character of the text is inside some chunk.
func checkCoverage(t *testing.T, text string, opts ChunkOptions, spans []TextSpan) {
	t.Helper()
	r := []rune(text)
	covered := make([]bool, len(r))
	prevStart := -1
	for _, s := range spans {
		if s.Start <= prevStart {
			t.Fatalf("chunk starts do not increase: %d after %d", s.Start, prevStart)
		}
		prevStart = s.Start
		if s.End-s.Start > opts.MaxChunkSize || s.End <= s.Start {
			t.Fatalf("chunk [%d,%d) size out of range (max %d)", s.Start, s.End, opts.MaxChunkSize)
		}
		if string(r[s.Start:s.End]) != s.Text {
			t.Fatalf("chunk text %q does not match its span", s.Text)
		}
		if strings.TrimSpace(s.Text) != s.Text {
			t.Fatalf("chunk %q has surrounding whitespace", s.Text)
		}
		for i := s.Start; i < s.End; i++ {
			covered[i] = true
		}
	}
	for i, c := range r {
		if !covered[i] && !unicode.IsSpace(c) {
			t.Fatalf("character %d (%q) of %q not covered", i, c, text)
		}
	}
}

func TestChunkTextCoversText(t *testing.T) {
	text := strings.Repeat("lorem ipsum dolor sit amet, consectetur adipiscing elit\n\n", 40) + "pneumonoultramicroscopicsilicovolcanoconiosis end"
	for _, o := range []ChunkOptions{{1, 0}, {7, 3}, {50, 10}, {200, 199}, {1000, 100}} {
		spans, err := ChunkText(text, o)
		if err != nil {
			t.Fatal(err)
		}
		checkCoverage(t, text, o, spans)
	}
}

func FuzzChunkText(f *testing.F) {
	f.Add("one two three four five six seven eight nine", 14, 4)
	f.Add("supercalifragilisticexpialidocious", 10, 0)
	f.Add("  a  bb   ccc dddd\teeeee\n", 3, 2)
	f.Add("日本語 テキスト\u00a0x", 2, 1)
	f.Fuzz(func(t *testing.T, text string, size, overlap int) {
		size = 1 + abs(size)%64
		overlap = abs(overlap) % size
		o := ChunkOptions{size, overlap}
		spans, err := ChunkText(text, o)
		if err != nil {
			t.Fatal(err)
		}
		checkCoverage(t, text, o, spans)
	})
}

// FuzzChunkLimit: with tiny chunk sizes the chunk cap (MaxChunksPerDocument, the request
// allowance) either refuses the text with ErrTooManyChunks, when it really makes more chunks than
// the cap, or gives exactly the uncapped chunks.
func FuzzChunkLimit(f *testing.F) {
	f.Add("one two three four five six seven eight nine", 1, 0, 3)
	f.Add("a b c d e f g h i a b c d e f g h i", 2, 1, 5)
	f.Add("supercalifragilisticexpialidocious", 1, 0, 40)
	f.Add("x\n\n# h\n\ny", 1, 0, 1)
	f.Fuzz(func(t *testing.T, text string, size, overlap, limit int) {
		size = 1 + abs(size)%16
		overlap = abs(overlap) % size
		limit = 1 + abs(limit)%64
		o := ChunkOptions{size, overlap}
		sections := []Section{{Text: text}, {HeadingPath: []string{"h"}, Text: text}}
		all, err := ChunkSections("d", sections, o)
		if err != nil {
			t.Fatal(err)
		}
		capped, err := chunkSections("d", sections, o, limit)
		if len(all) > limit {
			if !errors.Is(err, ErrTooManyChunks) || !errors.Is(err, ErrInvalidChunking) || capped != nil {
				t.Fatalf("%d chunks over a cap of %d: %d chunks, err %v", len(all), limit, len(capped), err)
			}
			return
		}
		if err != nil {
			t.Fatalf("%d chunks within a cap of %d: %v", len(all), limit, err)
		}
		if diff := cmp.Diff(all, capped); diff != "" {
			t.Fatalf("capped chunks differ (-uncapped +capped):\n%s", diff)
		}
	})
}

func abs(x int) int {
	if x < 0 {
		if -x < 0 {
			return 0
		}
		return -x
	}
	return x
}
