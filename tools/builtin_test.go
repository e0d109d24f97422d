package tools

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/crispy-enigma/crispy/config"
)

// fakeCompleter answers every prompt with answer (or err) and remembers the last system prompt.
type fakeCompleter struct {
	answer     string
	err        error
	lastSystem string
}

func (f *fakeCompleter) Complete(ctx context.Context, tenant *config.TenantConfig, system, prompt string) (string, error) {
	f.lastSystem = system
	return f.answer, f.err
}

func execData(t *testing.T, r *Registry, tool, params string) map[string]any {
	t.Helper()
	res, err := r.Execute(context.Background(), ExecuteRequest{Tenant: tenant(nil), Tool: tool, Params: json.RawMessage(params)})
	if err != nil {
		t.Fatalf("%s: %v", tool, err)
	}
	if !res.Success {
		t.Fatalf("%s: tool failure %+v", tool, res.Error)
	}
	// Round-trip through JSON as the HTTP layer would.
	b, jerr := json.Marshal(res.Data)
	if jerr != nil {
		t.Fatal(jerr)
	}
	var m map[string]any
	if jerr := json.Unmarshal(b, &m); jerr != nil {
		t.Fatal(jerr)
	}
	return m
}

func TestExtractEntities(t *testing.T) {
	text := "Ada Lovelace met Charles Babbage in London. Ada wrote notes."
	tests := []struct {
		name   string
		answer string
		params string
		want   []any
	}{
		{
			name:   "valid JSON, offsets recomputed, hallucination dropped",
			answer: "```json\n" + `{"entities":[{"text":"Ada Lovelace","type":"person","start_offset":99,"end_offset":3},{"text":"London","type":"location"},{"text":"Paris","type":"location"}]}` + "\n```",
			params: `{"text":"` + text + `"}`,
			want: []any{
				map[string]any{"text": "Ada Lovelace", "type": "person", "start_offset": 0.0, "end_offset": 12.0},
				map[string]any{"text": "London", "type": "location", "start_offset": 36.0, "end_offset": 42.0},
			},
		},
		{
			name:   "filtered to the requested types",
			answer: `Sure! {"entities":[{"text":"Ada","type":"person"},{"text":"Ada","type":"person"},{"text":"London","type":"location"}]}`,
			params: `{"text":"` + text + `","entity_types":["PERSON"]}`,
			want: []any{
				map[string]any{"text": "Ada", "type": "person", "start_offset": 0.0, "end_offset": 3.0},
				map[string]any{"text": "Ada", "type": "person", "start_offset": 44.0, "end_offset": 47.0},
			},
		},
		{"garbage degrades to no entities", "I cannot do that.", `{"text":"` + text + `"}`, []any{}},
		{"wrong shape degrades", `{"entities":"none"}`, `{"text":"` + text + `"}`, []any{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := mustRegistry(t, ExtractEntities(&fakeCompleter{answer: tc.answer}))
			got := execData(t, r, "extract_entities", tc.params)
			if diff := cmp.Diff(tc.want, got["entities"]); diff != "" {
				t.Errorf("entities (-want +got):\n%s", diff)
			}
			if got["count"] != float64(len(tc.want)) {
				t.Errorf("count = %v, want %d", got["count"], len(tc.want))
			}
		})
	}
}

func TestClassifyIntent(t *testing.T) {
	tests := []struct {
		name, answer, params string
		wantIntent           string
		wantConf             float64
	}{
		{"valid", `{"intent":"complaint","confidence":0.9}`, `{"text":"this is broken"}`, "complaint", 0.9},
		{"confidence clamped", `{"intent":"question","confidence":7}`, `{"text":"why?"}`, "question", 1},
		{"outside the categories becomes other", `{"intent":"rant","confidence":0.8}`, `{"text":"x","categories":["billing","support"]}`, "other", 0},
		{"custom category", `{"intent":"billing","confidence":0.5}`, `{"text":"x","categories":["billing","support"]}`, "billing", 0.5},
		{"garbage", `<html>oops</html>`, `{"text":"x"}`, "other", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := mustRegistry(t, ClassifyIntent(&fakeCompleter{answer: tc.answer}))
			got := execData(t, r, "classify_intent", tc.params)
			if got["intent"] != tc.wantIntent || got["confidence"] != tc.wantConf {
				t.Errorf("got intent=%v confidence=%v, want %s %v", got["intent"], got["confidence"], tc.wantIntent, tc.wantConf)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	fc := &fakeCompleter{answer: "  A short summary.  "}
	r := mustRegistry(t, Summarize(fc))
	got := execData(t, r, "summarize", `{"text":"long text","format":"bullet_points","max_length":100}`)
	if got["summary"] != "A short summary." || got["format"] != "bullet_points" {
		t.Errorf("got %v", got)
	}
	if want := "bullet points"; !strings.Contains(fc.lastSystem, want) {
		t.Errorf("system prompt %q lacks %q", fc.lastSystem, want)
	}

	fc.answer = "   "
	res, err := r.Execute(context.Background(), ExecuteRequest{Tenant: tenant(nil), Tool: "summarize", Params: json.RawMessage(`{"text":"x"}`)})
	if err != nil || res.Success || res.Error.Code != "NO_CONTENT" {
		t.Errorf("empty answer: %+v %v, want NO_CONTENT tool failure", res, err)
	}

	fc.err = errors.New("upstream 503")
	res, err = r.Execute(context.Background(), ExecuteRequest{Tenant: tenant(nil), Tool: "summarize", Params: json.RawMessage(`{"text":"x"}`)})
	if err != nil || res.Success || res.Error.Code != "UPSTREAM_ERROR" || strings.Contains(res.Error.Message, "503") {
		t.Errorf("model error: %+v %v, want a client-safe UPSTREAM_ERROR", res, err)
	}

	for _, p := range []string{`{"text":"x","max_length":49}`, `{"text":"x","max_length":5001}`, `{"text":"x","format":"haiku"}`} {
		if _, err := r.Execute(context.Background(), ExecuteRequest{Tenant: tenant(nil), Tool: "summarize", Params: json.RawMessage(p)}); err == nil || err.Code != CodeValidationFailed {
			t.Errorf("%s: err = %v, want VALIDATION_FAILED", p, err)
		}
	}
}

func TestTagChunkDocsDeterministic(t *testing.T) {
	content := "Go channels carry values between goroutines. Channels block until ready. " +
		"Goroutines are cheap. Mutexes protect shared memory; channels share memory by communicating. " +
		"The scheduler multiplexes goroutines onto threads."
	r := mustRegistry(t, TagChunkDocs())
	a := execData(t, r, "tag_chunk_docs", `{"content":"`+content+`","chunk_size":100}`)
	b := execData(t, r, "tag_chunk_docs", `{"content":"`+content+`","chunk_size":100}`)
	if diff := cmp.Diff(a, b); diff != "" {
		t.Fatalf("not deterministic:\n%s", diff)
	}
	chunks := a["chunks"].([]any)
	if a["chunk_count"] != float64(len(chunks)) || len(chunks) < 2 {
		t.Fatalf("chunk_count %v, %d chunks", a["chunk_count"], len(chunks))
	}
	runes := []rune(content)
	for i, c := range chunks {
		m := c.(map[string]any)
		start, end := int(m["start_offset"].(float64)), int(m["end_offset"].(float64))
		if string(runes[start:end]) != m["text"] {
			t.Errorf("chunk %d: offsets [%d,%d) do not select its text", i, start, end)
		}
		if end-start > 100 {
			t.Errorf("chunk %d longer than chunk_size", i)
		}
	}
	first := chunks[0].(map[string]any)["tags"].([]any)
	if len(first) == 0 || first[0] != "channels" {
		t.Errorf("first chunk tags = %v, want channels first (most frequent)", first)
	}
}

type fakeIngester struct{ tenant, doc, text string }

func (f *fakeIngester) IngestText(ctx context.Context, tenantID, docID, text string) (int, error) {
	f.tenant, f.doc, f.text = tenantID, docID, text
	return 3, nil
}

type fakeSearcher struct{ tenant string }

func (f *fakeSearcher) SearchKB(ctx context.Context, tenantID, query string, topK int) (any, error) {
	f.tenant = tenantID
	return []map[string]any{{"text": "hit for " + query, "score": 1}}, nil
}

func TestIngestAndSearchUseCallersTenant(t *testing.T) {
	in, se := &fakeIngester{}, &fakeSearcher{}
	r := NewRegistry()
	if err := RegisterBuiltins(r, Deps{Completer: &fakeCompleter{}, Ingester: in, Searcher: se}); err != nil {
		t.Fatal(err)
	}
	if n := len(r.List(tenant(map[string]bool{"http_fetch": true}))); n != 9 {
		t.Errorf("%d built-ins listed, want 9", n)
	}
	got := execData(t, r, "ingest_docs", `{"content":"hello","doc_id":"d1"}`)
	if got["chunks_ingested"] != 3.0 || in.tenant != "acme" || in.doc != "d1" {
		t.Errorf("ingest: %v, ingester saw %+v", got, in)
	}
	got = execData(t, r, "kb_search", `{"query":"q","top_k":2}`)
	if se.tenant != "acme" || got["results"] == nil {
		t.Errorf("search: %v, searcher tenant %q", got, se.tenant)
	}
	if _, err := r.Execute(context.Background(), ExecuteRequest{Tenant: tenant(nil), Tool: "kb_search", Params: json.RawMessage(`{"query":"q","top_k":21}`)}); err == nil || err.Code != CodeValidationFailed {
		t.Errorf("top_k 21: %v, want VALIDATION_FAILED", err)
	}
}

func TestCurrentTime(t *testing.T) {
	now := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	r := mustRegistry(t, CurrentTime(func() time.Time { return now }))
	got := execData(t, r, "current_time", `{}`)
	if got["iso"] != "2026-07-01T12:00:00Z" || got["utc_offset"] != "+00:00" {
		t.Errorf("UTC: %v", got)
	}
	got = execData(t, r, "current_time", `{"timezone":"Europe/Paris"}`)
	if got["iso"] != "2026-07-01T14:00:00+02:00" || got["utc_offset"] != "+02:00" {
		t.Errorf("Paris: %v", got)
	}
	for _, tz := range []string{"Mars/Olympus", "../../etc/passwd", "Local"} {
		res, err := r.Execute(context.Background(), ExecuteRequest{Tenant: tenant(nil), Tool: "current_time", Params: json.RawMessage(`{"timezone":"` + tz + `"}`)})
		if err != nil || res.Success || res.Error.Code != "INVALID_TIMEZONE" {
			t.Errorf("%s: %+v %v, want INVALID_TIMEZONE", tz, res, err)
		}
	}
}

// issue 16: ingest_docs accepted doc_ids that POST /ingest refuses and then failed with
// UPSTREAM_ERROR. The tool applies the same rule (config.CheckDocID) and answers VALIDATION_FAILED
// before the ingester is called.
func TestIngestDocsDocIDRule(t *testing.T) {
	for _, id := range []string{"../etc/passwd", "-x", ".hidden", "a..b", "a/b", "a b", strings.Repeat("d", 129)} {
		t.Run(id[:min(len(id), 16)], func(t *testing.T) {
			in := &fakeIngester{}
			r := NewRegistry()
			if err := RegisterBuiltins(r, Deps{Completer: &fakeCompleter{}, Ingester: in, Searcher: &fakeSearcher{}}); err != nil {
				t.Fatal(err)
			}
			params, _ := json.Marshal(map[string]string{"content": "hello", "doc_id": id})
			_, err := r.Execute(context.Background(), ExecuteRequest{Tenant: tenant(nil), Tool: "ingest_docs", Params: params})
			if err == nil || err.Code != CodeValidationFailed || err.Status != 400 || !strings.Contains(err.Message, "doc_id") {
				t.Errorf("doc_id %q: %+v, want 400 VALIDATION_FAILED naming doc_id", id, err)
			}
			if in.doc != "" {
				t.Errorf("the ingester was called with %q", in.doc)
			}
		})
	}
}
