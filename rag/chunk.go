// Package rag ingests documents (parse → chunk → embed → store) and answers
// searches over them (rewrite → embed → vector + BM25 retrieval fused by
// reciprocal rank → extractive answer with citations). It has no HTTP: the api
// package calls Ingester and Searcher.
package rag

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// Chunking defaults of the original implementation (docs/api.md, POST /ingest).
const (
	DefaultMaxChunkSize = 1000
	DefaultOverlap      = 100
)

// ErrInvalidChunking reports chunking options that cannot make progress.
var ErrInvalidChunking = errors.New("invalid chunking options")

// ChunkOptions are sizes in characters (Unicode code points).
type ChunkOptions struct {
	MaxChunkSize int `json:"maxChunkSize"`
	Overlap      int `json:"overlap"`
}

// DefaultChunkOptions returns {1000, 100}.
func DefaultChunkOptions() ChunkOptions {
	return ChunkOptions{MaxChunkSize: DefaultMaxChunkSize, Overlap: DefaultOverlap}
}

// Validate requires MaxChunkSize ≥ 1 and 0 ≤ Overlap < MaxChunkSize.
func (o ChunkOptions) Validate() error {
	if o.MaxChunkSize < 1 {
		return fmt.Errorf("%w: maxChunkSize %d must be at least 1", ErrInvalidChunking, o.MaxChunkSize)
	}
	if o.Overlap < 0 || o.Overlap >= o.MaxChunkSize {
		return fmt.Errorf("%w: overlap %d must be in [0, maxChunkSize %d)", ErrInvalidChunking, o.Overlap, o.MaxChunkSize)
	}
	return nil
}

// TextSpan is one chunk of a text: Text is r[Start:End] of the text's runes.
type TextSpan struct {
	Text       string
	Start, End int
}

// ChunkText is the original's character chunker. It reproduces docs/api.md's
// fixtures: "one two three four five six seven eight nine" at (14, 4) gives
// "one two three", "three four", "four five six", "five six seven",
// "seven eight", "eight nine"; "supercalifragilisticexpialidocious" at
// (10, 0) gives "supercalif", "ragilistic", "expialidoc", "ious"; blank text
// gives no chunks.
//
// The algorithm, in characters (code points, so a multi-byte character is
// never cut):
//  1. A chunk starts at a non-space character and takes the longest run of
//     whole words that fits in MaxChunkSize (it ends at the last whitespace
//     within start+MaxChunkSize, trailing whitespace trimmed). If not even
//     the first word fits, the word is split hard at MaxChunkSize.
//  2. The next chunk starts Overlap characters before the previous chunk's
//     end, moved back to the start of the word that position falls in (or
//     the word just before it when it falls on a space). So the overlap is
//     carried as whole trailing words covering at least Overlap characters:
//     at (14, 4) "four five six" ends at "six", 4 characters back is the
//     space after "five", hence "five six seven".
//  3. That overlap is used only when it moves forward (starts after the
//     previous chunk's start) and the new chunk reaches past the previous
//     end; inside a hard-split word the overlap is taken as raw characters;
//     otherwise the next chunk starts right after the previous one. This
//     guarantees progress, so every non-space character lands in a chunk.
func ChunkText(text string, opts ChunkOptions) ([]TextSpan, error) {
	return chunkText(text, opts, 0)
}

// chunkText is ChunkText that stops, with ErrTooManyChunks, once it made more than limit chunks
// (0: no limit), so a tiny chunk size over a large text costs no more than limit chunks' work.
func chunkText(text string, opts ChunkOptions, limit int) ([]TextSpan, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	r := []rune(text)
	n := len(r)
	skip := func(p int) int {
		for p < n && unicode.IsSpace(r[p]) {
			p++
		}
		return p
	}
	// chunkEnd returns where a chunk starting at pos (a non-space) ends.
	chunkEnd := func(pos int) int {
		limit := pos + opts.MaxChunkSize
		if limit >= n {
			e := n
			for e > pos && unicode.IsSpace(r[e-1]) {
				e--
			}
			return e
		}
		e := limit
		for e > pos && !unicode.IsSpace(r[e]) {
			e--
		}
		for e > pos && unicode.IsSpace(r[e-1]) {
			e--
		}
		if e == pos { // the first word alone is longer than a chunk
			return limit
		}
		return e
	}
	var spans []TextSpan
	pos := skip(0)
	for pos < n {
		end := chunkEnd(pos)
		if limit > 0 && len(spans) == limit {
			return nil, errTooManyChunks(limit, opts)
		}
		spans = append(spans, TextSpan{Text: string(r[pos:end]), Start: pos, End: end})
		if skip(end) >= n {
			break
		}
		next := end
		if opts.Overlap > 0 {
			c := end - opts.Overlap
			ws := c
			for ws > 0 && !unicode.IsSpace(r[ws-1]) {
				ws--
			}
			switch {
			case ws > pos:
				if s := skip(ws); s < end && chunkEnd(s) > end {
					next = s
				}
			case c > pos && !unicode.IsSpace(r[c]):
				// Still inside a word that was split hard: overlap by characters.
				if chunkEnd(c) > end {
					next = c
				}
			}
		}
		pos = skip(next)
	}
	return spans, nil
}

// Section is a part of a document under one heading path (empty for text
// before the first heading or for formats without headings).
type Section struct {
	HeadingPath []string
	Text        string
}

// HeadingPathString joins a heading path as "Guide > Install".
func HeadingPathString(path []string) string { return strings.Join(path, " > ") }

// ChunkID is the deterministic chunk (and vector) ID "<docId>:<i>".
func ChunkID(docID string, i int) string { return fmt.Sprintf("%s:%d", docID, i) }

// SectionChunk is a chunk of a section, numbered across the whole document.
type SectionChunk struct {
	ID          string
	Index       int
	Text        string
	HeadingPath []string
}

// ChunkSections chunks each section separately (so a chunk never straddles a
// heading) and numbers the chunks across the document as <docId>:<i>.
func ChunkSections(docID string, sections []Section, opts ChunkOptions) ([]SectionChunk, error) {
	return chunkSections(docID, sections, opts, 0)
}

// chunkSections is ChunkSections that stops with ErrTooManyChunks past limit chunks (0: none).
func chunkSections(docID string, sections []Section, opts ChunkOptions, limit int) ([]SectionChunk, error) {
	var out []SectionChunk
	for _, s := range sections {
		left := 0
		if limit > 0 {
			if left = limit - len(out); left == 0 && strings.TrimSpace(s.Text) != "" {
				return nil, errTooManyChunks(limit, opts)
			}
		}
		spans, err := chunkText(s.Text, opts, left)
		if err != nil {
			if errors.Is(err, ErrTooManyChunks) {
				return nil, errTooManyChunks(limit, opts)
			}
			return nil, err
		}
		for _, sp := range spans {
			i := len(out)
			out = append(out, SectionChunk{ID: ChunkID(docID, i), Index: i, Text: sp.Text, HeadingPath: s.HeadingPath})
		}
	}
	return out, nil
}

func errTooManyChunks(limit int, opts ChunkOptions) error {
	return fmt.Errorf("%w: %w: the document makes more than %d chunks at maxChunkSize %d; use a larger maxChunkSize or split the document",
		ErrInvalidChunking, ErrTooManyChunks, limit, opts.MaxChunkSize)
}
