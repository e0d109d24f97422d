package gateway

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"unicode"
	"unicode/utf8"
)

// ExtractiveModelID is the built-in model that answers by quoting documents. It is not a language model
// and says so.
const ExtractiveModelID = "local/extractive"

// LocalProviderName names the built-in models' provider.
const LocalProviderName = "local"

// Passage is one retrieved piece of a tenant's documents.
type Passage struct {
	ID     string // e.g. "<docId>:<i>"
	DocID  string
	Title  string
	Source string
	URL    string
	Text   string
	Score  float64 // higher is more relevant; <= 0 counts as not relevant
}

// Retriever finds a tenant's passages most relevant to a query, best first. The RAG package implements
// it; Extractive declares it because Extractive is what consumes it.
type Retriever interface {
	Retrieve(ctx context.Context, tenantID, query string, k int) ([]Passage, error)
}

// Extractive is the built-in local/extractive model. Without a Retriever it explains that no language
// model is configured and how to configure one; with one it quotes the best passages for the last user
// message with [1], [2] citations, or says that nothing relevant was found. Its reply streams word by
// word like any model, with estimated usage.
type Extractive struct {
	retriever Retriever
	k         int
}

var _ ChatModel = (*Extractive)(nil)

// maxQuoteRunes bounds one quoted passage.
const maxQuoteRunes = 300

// NewExtractive returns the model; r may be nil (no documents to search yet).
func NewExtractive(r Retriever) *Extractive {
	return &Extractive{retriever: r, k: 3}
}

// NoModelConfiguredReply is local/extractive's answer while it has no documents to quote.
const NoModelConfiguredReply = "No language model is configured on this server, so this reply comes from " +
	"local/extractive, a built-in that can only quote your documents; it is not a language model and " +
	"generates no text. To chat with a model, point the server at an OpenAI-compatible server such as " +
	"Ollama, vLLM or llama.cpp with CRISPY_OPENAI_BASE_URL (or --openai-base-url), e.g. " +
	"http://127.0.0.1:11434/v1, and choose the model with MODEL_ID or the tenant's aiModels.chat."

// OpenChat builds the whole reply up front (it is cheap) and streams it word by word.
func (e *Extractive) OpenChat(ctx context.Context, req ChatRequest) (ChatStream, error) {
	reply, err := e.reply(ctx, req)
	if err != nil {
		return nil, err
	}
	return newTextStream(ExtractiveModelID, reply, estimateMessages(req.Messages)), nil
}

func (e *Extractive) reply(ctx context.Context, req ChatRequest) (string, error) {
	if e.retriever == nil {
		return NoModelConfiguredReply, nil
	}
	query := lastUserMessage(req.Messages)
	if strings.TrimSpace(query) == "" {
		return "Ask a question and local/extractive (a built-in that quotes your documents; not a " +
			"language model) will quote the passages that match it.", nil
	}
	passages, err := e.retriever.Retrieve(ctx, req.Meta.TenantID, query, e.k)
	if err != nil {
		return "", fmt.Errorf("%s: retrieve passages: %w", ExtractiveModelID, err)
	}
	var relevant []Passage
	for _, p := range passages {
		if p.Score > 0 && strings.TrimSpace(p.Text) != "" {
			relevant = append(relevant, p)
		}
	}
	if len(relevant) == 0 {
		return "I found nothing relevant to that in your documents. (local/extractive answers only by " +
			"quoting your documents; it is not a language model.)", nil
	}
	var b strings.Builder
	b.WriteString("From your documents (quoted by local/extractive, which does not generate text):")
	terms := queryTerms(query)
	for i, p := range relevant {
		fmt.Fprintf(&b, "\n\n[%d] \"%s\"", i+1, bestQuote(p.Text, terms))
		if p.Title != "" {
			fmt.Fprintf(&b, " (%s)", p.Title)
		}
	}
	return b.String(), nil
}

func lastUserMessage(msgs []Message) string {
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Role == "user" {
			return msgs[i].Content
		}
	}
	return ""
}

// queryTerms are the lower-cased words of the query longer than two letters (a crude stop-word filter).
func queryTerms(q string) map[string]bool {
	terms := map[string]bool{}
	for _, w := range strings.FieldsFunc(strings.ToLower(q), notWordRune) {
		if utf8.RuneCountInString(w) > 2 {
			terms[w] = true
		}
	}
	return terms
}

func notWordRune(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsNumber(r) }

// bestQuote picks the passage's sentence sharing the most words with the query (the first on ties) and
// extends it with the following sentences while it stays under maxQuoteRunes.
func bestQuote(text string, terms map[string]bool) string {
	sentences := splitSentences(strings.Join(strings.Fields(text), " "))
	best, bestScore := 0, -1
	for i, s := range sentences {
		score := 0
		for _, w := range strings.FieldsFunc(strings.ToLower(s), notWordRune) {
			if terms[w] {
				score++
			}
		}
		if score > bestScore {
			best, bestScore = i, score
		}
	}
	quote := sentences[best]
	for j := best + 1; j < len(sentences); j++ {
		if utf8.RuneCountInString(quote)+1+utf8.RuneCountInString(sentences[j]) > maxQuoteRunes {
			break
		}
		quote += " " + sentences[j]
	}
	if utf8.RuneCountInString(quote) > maxQuoteRunes {
		r := []rune(quote)[:maxQuoteRunes]
		if i := strings.LastIndexByte(string(r), ' '); i > maxQuoteRunes/2 {
			return string(r)[:i] + "…"
		}
		return string(r) + "…"
	}
	return quote
}

// splitSentences splits after '.', '!' or '?' followed by a space; it never returns an empty slice.
func splitSentences(s string) []string {
	var out []string
	start := 0
	for i := 0; i+1 < len(s); i++ {
		if (s[i] == '.' || s[i] == '!' || s[i] == '?') && s[i+1] == ' ' {
			out = append(out, s[start:i+1])
			start = i + 2
		}
	}
	if start < len(s) || len(out) == 0 {
		out = append(out, s[start:])
	}
	return out
}

// textStream streams a reply that is already complete, one word (with its trailing whitespace) at a
// time, with estimated usage.
type textStream struct {
	model string
	rest  string
	inEst int
	out   int // runes streamed

	closed atomic.Bool // Close may come from another goroutine than Next
}

func newTextStream(model, text string, inEst int) *textStream {
	return &textStream{model: model, rest: text, inEst: inEst}
}

func (s *textStream) Next(ctx context.Context) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if s.closed.Load() {
		return "", errStreamClosed
	}
	if s.rest == "" {
		return "", io.EOF
	}
	// A token is a run of non-space followed by its spaces, so the concatenation is the exact text.
	i := strings.IndexFunc(s.rest, unicode.IsSpace)
	if i < 0 {
		i = len(s.rest)
	} else if j := strings.IndexFunc(s.rest[i:], func(r rune) bool { return !unicode.IsSpace(r) }); j >= 0 {
		i += j
	} else {
		i = len(s.rest)
	}
	if i == 0 {
		i = len(s.rest)
	}
	tok := s.rest[:i]
	s.rest = s.rest[i:]
	s.out += utf8.RuneCountInString(tok)
	return tok, nil
}

func (s *textStream) Usage() Usage {
	return Usage{TokensIn: s.inEst, TokensOut: runesToTokens(s.out), Estimated: true}
}

func (s *textStream) Model() string { return s.model }

func (s *textStream) Close() error {
	s.closed.Store(true)
	return nil
}
