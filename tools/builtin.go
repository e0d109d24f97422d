package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/crispy-enigma/crispy/config"
)

// Completer asks the tenant's chat model for one answer (non-streamed). The gateway implements it.
type Completer interface {
	Complete(ctx context.Context, tenant *config.TenantConfig, system, prompt string) (string, error)
}

// Ingester stores a text document for a tenant and reports how many chunks it made (rag implements it).
type Ingester interface {
	IngestText(ctx context.Context, tenantID, docID, text string) (int, error)
}

// Searcher searches a tenant's documents (rag implements it).
type Searcher interface {
	SearchKB(ctx context.Context, tenantID, query string, topK int) (any, error)
}

// Deps are the dependencies of the built-ins; a nil dependency leaves its tools out.
type Deps struct {
	Completer Completer
	Ingester  Ingester
	Searcher  Searcher
	// Now is the clock of current_time; nil means time.Now.
	Now func() time.Time
	// Fetch configures http_fetch.
	Fetch []FetchOption
}

// RegisterBuiltins registers every built-in whose dependencies are present.
func RegisterBuiltins(r *Registry, d Deps) error {
	ts := []Tool{Calculate(), CurrentTime(d.Now), HTTPFetch(d.Fetch...), TagChunkDocs()}
	if d.Completer != nil {
		ts = append(ts, Summarize(d.Completer), ExtractEntities(d.Completer), ClassifyIntent(d.Completer))
	}
	if d.Ingester != nil {
		ts = append(ts, IngestDocs(d.Ingester))
	}
	if d.Searcher != nil {
		ts = append(ts, KBSearch(d.Searcher))
	}
	for _, t := range ts {
		if err := r.Register(t); err != nil {
			return err
		}
	}
	return nil
}

// upstreamFailure hides a dependency's error from the client (it stays in Cause for the log).
func upstreamFailure(what string, err error) *ToolFailure {
	return &ToolFailure{Code: "UPSTREAM_ERROR", Message: what + " failed", Cause: err}
}

// CurrentTime is the current_time tool; now nil means time.Now.
func CurrentTime(now func() time.Time) Tool {
	if now == nil {
		now = time.Now
	}
	return Tool{
		Name:        "current_time",
		Description: "The current date and time, in UTC or in an IANA time zone such as Europe/Paris.",
		Parameters: json.RawMessage(`{"type":"object","properties":{
			"timezone":{"type":"string","description":"IANA time zone name; default UTC","minLength":1,"maxLength":64}},
			"additionalProperties":false}`),
		Timeout: MinTimeout,
		Run: func(ctx context.Context, call Call) (any, error) {
			var p struct {
				Timezone string `json:"timezone"`
			}
			if err := call.Decode(&p); err != nil {
				return nil, err
			}
			if p.Timezone == "" {
				p.Timezone = "UTC"
			}
			// "Local" would reveal the server's zone; only real IANA names are accepted.
			if p.Timezone == "Local" {
				return nil, Fail("INVALID_TIMEZONE", "unknown time zone %q", p.Timezone)
			}
			loc, err := time.LoadLocation(p.Timezone)
			if err != nil {
				return nil, Fail("INVALID_TIMEZONE", "unknown time zone %q", p.Timezone)
			}
			t := now().In(loc)
			_, offset := t.Zone()
			return map[string]any{
				"iso":        t.Format(time.RFC3339),
				"unix":       t.Unix(),
				"timezone":   p.Timezone,
				"utc_offset": formatOffset(offset),
				"weekday":    t.Weekday().String(),
			}, nil
		},
	}
}

func formatOffset(sec int) string {
	sign := '+'
	if sec < 0 {
		sign, sec = '-', -sec
	}
	return fmt.Sprintf("%c%02d:%02d", sign, sec/3600, sec%3600/60)
}

// extractJSONObject finds a JSON object in a model's answer: the whole answer, a fenced block, or the
// first '{' to the last '}'. It returns nil when there is none.
func extractJSONObject(s string) map[string]any {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "```json")
	s = strings.TrimPrefix(s, "```JSON")
	s = strings.TrimPrefix(s, "```")
	s = strings.TrimSuffix(strings.TrimSpace(s), "```")
	s = strings.TrimSpace(s)
	var m map[string]any
	if json.Unmarshal([]byte(s), &m) == nil {
		return m
	}
	i, j := strings.IndexByte(s, '{'), strings.LastIndexByte(s, '}')
	if i < 0 || j <= i {
		return nil
	}
	if json.Unmarshal([]byte(s[i:j+1]), &m) == nil {
		return m
	}
	return nil
}

// Summarize is the summarize tool (the original's).
func Summarize(c Completer) Tool {
	return Tool{
		Name:        "summarize",
		Description: "Summarize text into a concise format (bullet points or paragraph)",
		Parameters: json.RawMessage(`{"type":"object","properties":{
			"text":{"type":"string","description":"The text to summarize","minLength":1,"maxLength":100000},
			"max_length":{"type":"integer","description":"Maximum length of the summary in characters","minimum":50,"maximum":5000},
			"format":{"type":"string","description":"Output format for the summary","enum":["bullet_points","paragraph"]}},
			"required":["text"],"additionalProperties":false}`),
		Timeout: 30 * time.Second,
		Run: func(ctx context.Context, call Call) (any, error) {
			var p struct {
				Text      string `json:"text"`
				MaxLength int    `json:"max_length"`
				Format    string `json:"format"`
			}
			if err := call.Decode(&p); err != nil {
				return nil, err
			}
			if p.Format == "" {
				p.Format = "paragraph"
			}
			if p.MaxLength == 0 {
				p.MaxLength = 500
			}
			instr := "Format the summary as a single coherent paragraph."
			if p.Format == "bullet_points" {
				instr = "Format the summary as concise bullet points."
			}
			system := fmt.Sprintf("You are a precise summarization assistant. Summarize the given text in no more than %d characters. %s Return only the summary, no extra text.", p.MaxLength, instr)
			out, err := c.Complete(ctx, call.Tenant, system, p.Text)
			if err != nil {
				return nil, upstreamFailure("the model call", err)
			}
			summary := truncateRunes(strings.TrimSpace(out), p.MaxLength)
			if summary == "" {
				return nil, Fail("NO_CONTENT", "the model returned an empty summary")
			}
			return map[string]any{"summary": summary, "format": p.Format}, nil
		},
	}
}

// truncateRunes cuts s to at most n characters, at a word boundary when there is one.
func truncateRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)[:n]
	cut := strings.LastIndexFunc(string(r), unicode.IsSpace)
	if cut > len(string(r))/2 {
		return strings.TrimSpace(string(r)[:cut])
	}
	return string(r)
}

// Entity is one extracted entity; offsets are in characters (Unicode code points) of the input.
type Entity struct {
	Text        string `json:"text"`
	Type        string `json:"type"`
	StartOffset int    `json:"start_offset"`
	EndOffset   int    `json:"end_offset"`
}

// ExtractEntities is the extract_entities tool (the original's). The model's offsets are not trusted:
// each entity is located in the text, and an entity that is not in the text is dropped.
func ExtractEntities(c Completer) Tool {
	return Tool{
		Name:        "extract_entities",
		Description: "Extract named entities (people, places, orgs, dates) from text",
		Parameters: json.RawMessage(`{"type":"object","properties":{
			"text":{"type":"string","description":"The text to extract entities from","minLength":1,"maxLength":100000},
			"entity_types":{"type":"array","description":"Specific entity types to extract","items":{"type":"string","minLength":1,"maxLength":64},"maxItems":50}},
			"required":["text"],"additionalProperties":false}`),
		Timeout: 30 * time.Second,
		Run: func(ctx context.Context, call Call) (any, error) {
			var p struct {
				Text        string   `json:"text"`
				EntityTypes []string `json:"entity_types"`
			}
			if err := call.Decode(&p); err != nil {
				return nil, err
			}
			hint := "Extract all entity types (person, organization, location, date, etc.)."
			if len(p.EntityTypes) > 0 {
				hint = "Focus on these entity types: " + strings.Join(p.EntityTypes, ", ") + "."
			}
			system := "You are a named entity extraction assistant. Extract entities from the given text. " + hint +
				` Return only valid JSON with key "entities" containing an array of objects with keys: text, type, start_offset, end_offset. No extra text.`
			out, err := c.Complete(ctx, call.Tenant, system, p.Text)
			if err != nil {
				return nil, upstreamFailure("the model call", err)
			}
			ents := parseEntities(out, p.Text, p.EntityTypes)
			return map[string]any{"entities": ents, "count": len(ents)}, nil
		},
	}
}

func parseEntities(answer, text string, types []string) []Entity {
	ents := []Entity{}
	obj := extractJSONObject(answer)
	raw, _ := obj["entities"].([]any)
	want := map[string]bool{}
	for _, t := range types {
		want[strings.ToLower(t)] = true
	}
	seen := map[[2]int]bool{}
	for _, item := range raw {
		m, ok := item.(map[string]any)
		if !ok {
			continue
		}
		et, _ := m["text"].(string)
		typ, _ := m["type"].(string)
		if et == "" {
			continue
		}
		if typ == "" {
			typ = "unknown"
		}
		if len(want) > 0 && !want[strings.ToLower(typ)] {
			continue
		}
		start := locate(text, et, seen)
		if start < 0 {
			continue
		}
		end := start + utf8.RuneCountInString(et)
		seen[[2]int{start, end}] = true
		ents = append(ents, Entity{Text: et, Type: typ, StartOffset: start, EndOffset: end})
	}
	return ents
}

// locate returns the character offset of the first occurrence of needle in text not already taken.
func locate(text, needle string, taken map[[2]int]bool) int {
	n := utf8.RuneCountInString(needle)
	from := 0
	for from <= len(text) {
		i := strings.Index(text[from:], needle)
		if i < 0 {
			return -1
		}
		b := from + i
		start := utf8.RuneCountInString(text[:b])
		if !taken[[2]int{start, start + n}] {
			return start
		}
		from = b + len(needle)
	}
	return -1
}

var defaultIntentCategories = []string{"question", "request", "complaint", "feedback", "greeting", "other"}

// ClassifyIntent is the classify_intent tool (the original's): an intent outside the categories, or
// an answer that is not JSON, becomes "other" with confidence 0.
func ClassifyIntent(c Completer) Tool {
	return Tool{
		Name:        "classify_intent",
		Description: "Classify the intent of a text message into predefined categories",
		Parameters: json.RawMessage(`{"type":"object","properties":{
			"text":{"type":"string","description":"The text to classify","minLength":1,"maxLength":10000},
			"categories":{"type":"array","description":"Custom categories to classify into","items":{"type":"string","minLength":1,"maxLength":64},"maxItems":50}},
			"required":["text"],"additionalProperties":false}`),
		Timeout: 30 * time.Second,
		Run: func(ctx context.Context, call Call) (any, error) {
			var p struct {
				Text       string   `json:"text"`
				Categories []string `json:"categories"`
			}
			if err := call.Decode(&p); err != nil {
				return nil, err
			}
			cats := p.Categories
			if len(cats) == 0 {
				cats = defaultIntentCategories
			}
			system := "You are an intent classification assistant. Classify the user's text into one of the following categories: " +
				strings.Join(cats, ", ") + ". Return only valid JSON with keys: intent (string), confidence (number 0-1). No extra text."
			out, err := c.Complete(ctx, call.Tenant, system, p.Text)
			if err != nil {
				return nil, upstreamFailure("the model call", err)
			}
			intent, conf := "other", 0.0
			if obj := extractJSONObject(out); obj != nil {
				if s, ok := obj["intent"].(string); ok && contains(cats, s) {
					intent = s
					if f, ok := obj["confidence"].(float64); ok {
						conf = min(1, max(0, f))
					}
				}
			}
			return map[string]any{"intent": intent, "confidence": conf, "categories_considered": cats}, nil
		},
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TaggedChunk is one chunk of tag_chunk_docs; offsets are in characters of the content.
type TaggedChunk struct {
	Index       int      `json:"index"`
	Text        string   `json:"text"`
	Tags        []string `json:"tags"`
	StartOffset int      `json:"start_offset"`
	EndOffset   int      `json:"end_offset"`
}

// TagChunkDocs is the tag_chunk_docs tool. Unlike the original it asks no model: chunks end at the
// last whitespace before chunk_size and the tags are each chunk's most frequent content words, so the
// same content always gives the same chunks and tags.
func TagChunkDocs() Tool {
	return Tool{
		Name:        "tag_chunk_docs",
		Description: "Chunk a document into pieces and tag each chunk with topic labels",
		Parameters: json.RawMessage(`{"type":"object","properties":{
			"content":{"type":"string","description":"The document content to chunk and tag","minLength":1,"maxLength":500000},
			"chunk_size":{"type":"integer","description":"Maximum chunk size in characters (default 1000)","minimum":100,"maximum":10000}},
			"required":["content"],"additionalProperties":false}`),
		Timeout: 10 * time.Second,
		Run: func(ctx context.Context, call Call) (any, error) {
			var p struct {
				Content   string `json:"content"`
				ChunkSize int    `json:"chunk_size"`
			}
			if err := call.Decode(&p); err != nil {
				return nil, err
			}
			if p.ChunkSize == 0 {
				p.ChunkSize = 1000
			}
			chunks := ChunkAndTag(p.Content, p.ChunkSize, 5)
			if len(chunks) == 0 {
				return nil, Fail("NO_CONTENT", "the content has no text")
			}
			return map[string]any{"chunks": chunks, "chunk_count": len(chunks)}, nil
		},
	}
}

// ChunkAndTag splits content into chunks of at most size characters, preferring to end a chunk at
// whitespace, and tags each with its top maxTags content words (ties alphabetical).
func ChunkAndTag(content string, size, maxTags int) []TaggedChunk {
	runes := []rune(content)
	var out []TaggedChunk
	for start := 0; start < len(runes); {
		// Skip leading whitespace so chunks start at text.
		for start < len(runes) && unicode.IsSpace(runes[start]) {
			start++
		}
		if start >= len(runes) {
			break
		}
		end := min(start+size, len(runes))
		if end < len(runes) {
			for cut := end; cut > start+size/2; cut-- {
				if unicode.IsSpace(runes[cut]) {
					end = cut
					break
				}
			}
		}
		text := strings.TrimRightFunc(string(runes[start:end]), unicode.IsSpace)
		out = append(out, TaggedChunk{
			Index:       len(out),
			Text:        text,
			Tags:        topWords(text, maxTags),
			StartOffset: start,
			EndOffset:   start + utf8.RuneCountInString(text),
		})
		start = end
	}
	return out
}

var stopWords = func() map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(`the and for are but not you all any can had her was one our out has him his how its may new now old see two way who did get let put say she too use that with have this will your from they know want been good much some time very when come here just like long make many more only over such take than them well were what into also then there these their which would about could other after first where those while being does each most should because between through under again further once both same both`) {
		m[w] = true
	}
	return m
}()

func topWords(text string, n int) []string {
	counts := map[string]int{}
	for _, w := range strings.FieldsFunc(strings.ToLower(text), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) {
		if utf8.RuneCountInString(w) < 3 || stopWords[w] {
			continue
		}
		counts[w]++
	}
	words := make([]string, 0, len(counts))
	for w := range counts {
		words = append(words, w)
	}
	sort.Slice(words, func(i, j int) bool {
		if counts[words[i]] != counts[words[j]] {
			return counts[words[i]] > counts[words[j]]
		}
		return words[i] < words[j]
	})
	if len(words) > n {
		words = words[:n]
	}
	return words
}

// IngestDocs is the ingest_docs tool (the original's).
func IngestDocs(in Ingester) Tool {
	return Tool{
		Name:        "ingest_docs",
		Description: "Ingest a text document into the tenant's knowledge base",
		Parameters: json.RawMessage(`{"type":"object","properties":{
			"content":{"type":"string","description":"The document text","minLength":1,"maxLength":1000000},
			"doc_id":{"type":"string","description":"Document ID (as POST /ingest's docId): letters, digits and . _ : -, starting with a letter or digit, no \"..\"; re-ingesting an ID replaces the document","minLength":1,"maxLength":128,"pattern":"` + config.DocIDPattern + `"}},
			"required":["content","doc_id"],"additionalProperties":false}`),
		Timeout: 60 * time.Second,
		Run: func(ctx context.Context, call Call) (any, error) {
			var p struct {
				Content string `json:"content"`
				DocID   string `json:"doc_id"`
			}
			if err := call.Decode(&p); err != nil {
				return nil, err
			}
			// The schema's pattern cannot say "no ..": the one rule decides, as for /ingest.
			if err := config.CheckDocID(p.DocID); err != nil {
				msg := "doc_id: " + err.Error()
				return nil, &Error{Status: 400, Code: CodeValidationFailed, Message: msg, Details: []string{msg}}
			}
			if strings.TrimSpace(p.Content) == "" {
				return nil, Fail("NO_CONTENT", "the content has no text")
			}
			n, err := in.IngestText(ctx, call.TenantID(), p.DocID, p.Content)
			if err != nil {
				return nil, upstreamFailure("ingestion", err)
			}
			return map[string]any{"doc_id": p.DocID, "chunks_ingested": n}, nil
		},
	}
}

// KBSearch is the kb_search tool: a search of the caller's own documents.
func KBSearch(s Searcher) Tool {
	return Tool{
		Name:        "kb_search",
		Description: "Search the tenant's knowledge base and return the most relevant passages",
		Parameters: json.RawMessage(`{"type":"object","properties":{
			"query":{"type":"string","description":"What to look for","minLength":1,"maxLength":2000},
			"top_k":{"type":"integer","description":"How many results (default 5)","minimum":1,"maximum":20}},
			"required":["query"],"additionalProperties":false}`),
		Timeout: 20 * time.Second,
		Run: func(ctx context.Context, call Call) (any, error) {
			var p struct {
				Query string `json:"query"`
				TopK  int    `json:"top_k"`
			}
			if err := call.Decode(&p); err != nil {
				return nil, err
			}
			if p.TopK == 0 {
				p.TopK = 5
			}
			res, err := s.SearchKB(ctx, call.TenantID(), p.Query, p.TopK)
			if err != nil {
				return nil, upstreamFailure("the search", err)
			}
			return map[string]any{"query": p.Query, "results": res}, nil
		},
	}
}
