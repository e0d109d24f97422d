package gateway

import (
	"context"
	"fmt"
	"math"
	"strings"
	"unicode"
)

// HashEmbedID is the model ID of the built-in lexical embedder.
const HashEmbedID = "local/hash-embed"

// DefaultHashEmbedDimension matches the common small sentence-embedding size,
// so a tenant can switch to a neural model of the same width without a new
// collection.
const DefaultHashEmbedDimension = 384

// Feature weights: whole words carry most of the signal, bigrams reward
// phrase matches, character n-grams give robustness to inflection and typos
// ("install" ~ "installing") and work for scripts written without spaces.
const (
	weightUnigram = 1.0
	weightBigram  = 0.5
	weightCharNG  = 0.25
	minCharNGram  = 3
	maxCharNGram  = 5
)

var _ EmbeddingModel = (*HashEmbedder)(nil)

// HashEmbedder is local/hash-embed: a lexical embedder, not a neural model.
// It maps a text to a fixed-dimension vector by feature hashing ("the hashing
// trick") of lower-cased word unigrams and bigrams plus character 3–5-grams
// of each word, with signed FNV-1a hashing (the sign bit halves the bias of
// collisions), sublinear term frequency (1+ln tf) and L2 normalisation, so a
// dot product is a cosine similarity. Texts that share words and word pieces
// get similar vectors; it knows nothing about synonyms or meaning. It is
// deterministic across runs and machines and safe for concurrent use. An
// empty text (or one without letters or digits) embeds to the zero vector,
// whose similarity to anything is 0.
type HashEmbedder struct {
	dim int
}

// NewHashEmbedder returns a hash embedder of the given dimension; dim ≤ 0
// selects DefaultHashEmbedDimension.
func NewHashEmbedder(dim int) *HashEmbedder {
	if dim <= 0 {
		dim = DefaultHashEmbedDimension
	}
	return &HashEmbedder{dim: dim}
}

// ID returns "local/hash-embed".
func (h *HashEmbedder) ID() string { return HashEmbedID }

// Lexical reports that this embedder matches words, not meaning: callers
// may embed only a query's content words (stopwords dilute lexical vectors
// but carry meaning for neural models).
func (h *HashEmbedder) Lexical() bool { return true }

// Dimension returns the vector length.
func (h *HashEmbedder) Dimension() int { return h.dim }

// Embed embeds each text; it only fails when ctx is done.
func (h *HashEmbedder) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	out := make([][]float32, len(texts))
	for i, t := range texts {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("hash-embed: %w", err)
		}
		out[i] = h.EmbedOne(t)
	}
	return out, nil
}

// EmbedOne embeds a single text.
func (h *HashEmbedder) EmbedOne(text string) []float32 {
	words := Words(text)
	// Count features by their 64-bit hash: collisions at 64 bits are
	// negligible and it avoids building a string per n-gram.
	tf := make(map[uint64]float64, len(words)*12)
	weight := make(map[uint64]float64, len(words)*12)
	add := func(sum uint64, w float64) {
		tf[sum]++
		weight[sum] = w
	}
	offsets := make([]int, 0, 32)
	for i, w := range words {
		add(fnvString(fnvString(fnvOffset, "w\x00"), w), weightUnigram)
		if i > 0 {
			add(fnvString(fnvString(fnvString(fnvString(fnvOffset, "b\x00"), words[i-1]), " "), w), weightBigram)
		}
		marked := "<" + w + ">"
		offsets = offsets[:0]
		for off := range marked {
			offsets = append(offsets, off)
		}
		offsets = append(offsets, len(marked))
		runes := len(offsets) - 1
		for n := minCharNGram; n <= maxCharNGram; n++ {
			for j := 0; j+n <= runes; j++ {
				add(fnvString(fnvString(fnvOffset, "c\x00"), marked[offsets[j]:offsets[j+n]]), weightCharNG)
			}
		}
	}
	vec := make([]float64, h.dim)
	for sum, count := range tf {
		idx := int(sum % uint64(h.dim))
		sign := 1.0
		if sum>>63 == 1 {
			sign = -1.0
		}
		vec[idx] += sign * weight[sum] * (1 + math.Log(count))
	}
	var norm float64
	for _, v := range vec {
		norm += v * v
	}
	res := make([]float32, h.dim)
	if norm == 0 {
		return res
	}
	norm = math.Sqrt(norm)
	for i, v := range vec {
		res[i] = float32(v / norm)
	}
	return res
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// fnvString continues an FNV-1a 64 hash over s.
func fnvString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// Words splits text into lower-cased runs of letters and digits. It is the
// tokenizer of the lexical embedder and of the extractive answerer, so both
// agree on what a term is.
func Words(text string) []string {
	return strings.FieldsFunc(strings.ToLower(text), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	})
}
