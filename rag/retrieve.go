package rag

import (
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/crispy-enigma/crispy/gateway"
)

// RRFK is the reciprocal-rank-fusion constant of Cormack et al.; 60 damps
// the head of each list so one list's top hit cannot dominate.
const RRFK = 60

// FusedHit is a chunk after fusion: Score is its RRF score; VectorRank and
// KeywordRank are 1-based positions in each list (0 when absent).
type FusedHit struct {
	Chunk       Chunk
	Score       float64
	VectorScore float64
	VectorRank  int
	KeywordRank int
}

// FuseRRF merges vector and keyword hits by reciprocal rank fusion:
// score(c) = Σ 1/(k + rank of c in each list). Ties break by vector score,
// then chunk ID, so the order is deterministic.
func FuseRRF(k int, vector, keyword []Hit) []FusedHit {
	return fuse(k, vector, keyword, nil)
}

// MinKeywordCoverage is the share of a query's content words a keyword hit must contain to enter
// fusion. BM25 ranks whatever matches at least one word, so for a question phrased differently from
// every passage its list is made of incidental matches ("keep", "day"); fused with equal weight,
// those pushed the right semantic hit down (quality_test.go, the paraphrase set).
const MinKeywordCoverage = 0.5

// FuseHybrid is the fusion Search uses: reciprocal rank fusion in which a keyword hit counts in
// proportion to the share of the query's content words (terms) its text contains, and not at all
// below MinKeywordCoverage. A passage that really matches the words keeps the full weight, so
// lexical queries (names, codes, exact phrases) rank as before; a list of incidental matches adds
// nothing. With no terms (a query of stopwords) keyword hits count fully.
func FuseHybrid(vector, keyword []Hit, terms []string) []FusedHit {
	if len(terms) == 0 {
		return fuse(RRFK, vector, keyword, nil)
	}
	weights := make([]float64, len(keyword))
	for i, h := range keyword {
		if c := termCoverage(terms, h.Chunk.Text); c >= MinKeywordCoverage {
			weights[i] = c
		}
	}
	return fuse(RRFK, vector, keyword, weights)
}

// termCoverage is the share of terms that occur in text (termMatches: exact, or a shared prefix of
// five characters or more).
func termCoverage(terms []string, text string) float64 {
	return float64(matchedTerms(terms, text)) / float64(len(terms))
}

// matchedTerms counts the terms that occur in text (termMatches).
func matchedTerms(terms []string, text string) int {
	words := map[string]bool{}
	for _, w := range gateway.Words(text) {
		words[w] = true
	}
	n := 0
	for _, t := range terms {
		if termMatches(t, words) {
			n++
		}
	}
	return n
}

// fuse is RRF with an optional weight per keyword hit (nil: all 1; 0 drops the hit).
func fuse(k int, vector, keyword []Hit, weights []float64) []FusedHit {
	byID := make(map[string]*FusedHit, len(vector)+len(keyword))
	var order []string
	get := func(h Hit) *FusedHit {
		f, ok := byID[h.Chunk.ID]
		if !ok {
			f = &FusedHit{Chunk: h.Chunk}
			byID[h.Chunk.ID] = f
			order = append(order, h.Chunk.ID)
		}
		return f
	}
	for i, h := range vector {
		f := get(h)
		if f.VectorRank == 0 {
			f.VectorRank, f.VectorScore = i+1, h.Score
			f.Score += 1 / float64(k+i+1)
		}
	}
	rank := 0
	for i, h := range keyword {
		w := 1.0
		if weights != nil {
			if w = weights[i]; w <= 0 {
				continue
			}
		}
		rank++
		f := get(h)
		if f.KeywordRank == 0 {
			f.KeywordRank = rank
			f.Score += w / float64(k+rank)
		}
	}
	out := make([]FusedHit, len(order))
	for i, id := range order {
		out[i] = *byID[id]
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Score != out[j].Score {
			return out[i].Score > out[j].Score
		}
		if out[i].VectorScore != out[j].VectorScore {
			return out[i].VectorScore > out[j].VectorScore
		}
		return out[i].Chunk.ID < out[j].Chunk.ID
	})
	return out
}

// Confidence is the mean of the top three similarities, clamped to [0, 1]
// (the original: mean of the top 3 scores); 0 without hits.
func Confidence(similarities []float64) float64 {
	s := append([]float64(nil), similarities...)
	sort.Sort(sort.Reverse(sort.Float64Slice(s)))
	if len(s) > 3 {
		s = s[:3]
	}
	if len(s) == 0 {
		return 0
	}
	var sum float64
	for _, x := range s {
		sum += x
	}
	return clamp01(sum / float64(len(s)))
}

func clamp01(x float64) float64 {
	switch {
	case x < 0 || x != x:
		return 0
	case x > 1:
		return 1
	}
	return x
}

// RefusalAnswer is docs/api.md's answer to a self-harm query.
const RefusalAnswer = "I'm sorry, I can't help with that."

// NoAnswer is the answer when no passage is relevant (docs/api.md: the
// answer is never empty).
const NoAnswer = "No answer available: no passage in the knowledge base matches the question."

var selfHarm = regexp.MustCompile(`(?i)\b(suicid\w*|kill(ing)?\s+(my\s*self|myself)|end(ing)?\s+(my|your)\s+(own\s+)?life|take\s+my\s+(own\s+)?life|self[-\s]?harm\w*|hurt(ing)?\s+myself|cut(ting)?\s+myself|want\s+to\s+die|overdos\w*)\b`)

// IsSelfHarm reports whether a query is about self-harm (the safety rule).
func IsSelfHarm(query string) bool { return selfHarm.MatchString(query) }

// stopwords are dropped from queries before matching sentences: they match
// everything and would make any passage look relevant.
var stopwords = wordSet(`a an the and or but if of to in on at by for with from into about as is are was were be been being
		do does did doing have has had having i me my we our you your he she it its they them their this that these those
		what which who whom whose when where why how can could should would will shall may might must not no yes
		there here than then so too very just also any all some such only own same other more most s t don
		tell explain describe please give show find know want need get use using`)

func wordSet(list string) map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(list) {
		m[w] = true
	}
	return m
}

// QueryTerms are the query's words without stopwords (all words if every
// word is a stopword).
func QueryTerms(query string) []string {
	words := gateway.Words(query)
	seen := map[string]bool{}
	var terms []string
	for _, w := range words {
		if !stopwords[w] && !seen[w] {
			seen[w] = true
			terms = append(terms, w)
		}
	}
	return terms
}

var sentenceEnd = regexp.MustCompile(`[.!?。！？]+["'”’)]*\s+|\n+`)

// Sentences splits a passage at sentence ends and line breaks.
func Sentences(text string) []string {
	var out []string
	last := 0
	for _, m := range sentenceEnd.FindAllStringIndex(text, -1) {
		if s := strings.TrimSpace(text[last:m[1]]); s != "" {
			out = append(out, s)
		}
		last = m[1]
	}
	if s := strings.TrimSpace(text[last:]); s != "" {
		out = append(out, s)
	}
	return out
}

// termMatches is exact, or a shared prefix of at least 5 characters covering
// the shorter word ("install" ~ "installer"), so inflections still count.
func termMatches(term string, words map[string]bool) bool {
	if words[term] {
		return true
	}
	if utf8.RuneCountInString(term) < 5 {
		return false
	}
	for w := range words {
		if utf8.RuneCountInString(w) >= 5 && (strings.HasPrefix(w, term) || strings.HasPrefix(term, w)) {
			return true
		}
	}
	return false
}

// Extractive answer limits.
const (
	maxAnswerSentences = 3
	maxQuoteRunes      = 300
)

// ExtractiveAnswer is local/extractive: it quotes the sentences of the
// sources that share the most query terms, each followed by the citation
// [n] of its source (n is the 1-based position in sources). It is not a
// language model: it never writes a claim that is not in a source. ok is
// false when no sentence shares a term with the query; the answer is then
// NoAnswer and cites nothing.
func ExtractiveAnswer(query string, sources []Source) (answer string, ok bool) {
	terms := QueryTerms(query)
	if len(terms) == 0 {
		return NoAnswer, false
	}
	type candidate struct {
		text   string
		source int
		score  int
		order  int
	}
	var cands []candidate
	for si, src := range sources {
		for _, sent := range Sentences(src.Text) {
			if score := matchedTerms(terms, sent); score > 0 {
				cands = append(cands, candidate{text: sent, source: si, score: score, order: len(cands)})
			}
		}
	}
	if len(cands) == 0 {
		return NoAnswer, false
	}
	sort.SliceStable(cands, func(i, j int) bool {
		if cands[i].score != cands[j].score {
			return cands[i].score > cands[j].score
		}
		return cands[i].order < cands[j].order // better-ranked source first
	})
	var b strings.Builder
	b.WriteString("From the knowledge base:")
	seen := map[string]bool{}
	n := 0
	for _, c := range cands {
		if n == maxAnswerSentences {
			break
		}
		key := strings.ToLower(c.text)
		if seen[key] {
			continue // overlapping chunks repeat sentences
		}
		seen[key] = true
		b.WriteString(" “")
		b.WriteString(strings.TrimFunc(truncateRunes(c.text, maxQuoteRunes), unicode.IsSpace))
		b.WriteString("” [")
		b.WriteString(strconv.Itoa(c.source + 1))
		b.WriteString("]")
		n++
	}
	return b.String(), true
}

// LeadAnswer is local/extractive's answer when a semantic embedder found passages that share no
// word with the question (a paraphrase): it quotes the first sentence of each source, in rank
// order, at most maxAnswerSentences, each followed by its citation [n]. Like ExtractiveAnswer it
// never writes a claim that is not in a source.
func LeadAnswer(sources []Source) string {
	var b strings.Builder
	b.WriteString("From the knowledge base:")
	for i, src := range sources {
		if i == maxAnswerSentences {
			break
		}
		sents := Sentences(src.Text)
		if len(sents) == 0 {
			continue
		}
		b.WriteString(" “")
		b.WriteString(strings.TrimFunc(truncateRunes(sents[0], maxQuoteRunes), unicode.IsSpace))
		b.WriteString("” [")
		b.WriteString(strconv.Itoa(i + 1))
		b.WriteString("]")
	}
	return b.String()
}

// MaxFollowUps is docs/api.md's limit.
const MaxFollowUps = 5

// FollowUps suggests further questions from the sources' heading paths and
// titles (what the retrieved documents are about), at most MaxFollowUps,
// without repeats or the query itself.
func FollowUps(query string, sources []Source, headingPaths []string) []string {
	seen := map[string]bool{strings.ToLower(strings.TrimSpace(query)): true}
	out := []string{}
	add := func(topic string) {
		topic = strings.TrimSpace(topic)
		key := strings.ToLower(topic)
		if topic == "" || seen[key] || len(out) == MaxFollowUps {
			return
		}
		seen[key] = true
		out = append(out, "Tell me more about "+topic)
	}
	for i, src := range sources {
		if i < len(headingPaths) && headingPaths[i] != "" {
			parts := strings.Split(headingPaths[i], " > ")
			add(parts[len(parts)-1])
		}
		add(src.Title)
	}
	return out
}
