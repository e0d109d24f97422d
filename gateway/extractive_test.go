package gateway

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestExtractiveWithoutRetrieverSaysNoModelIsConfigured(t *testing.T) {
	req := ChatRequest{Model: ExtractiveModelID, Messages: []Message{{Role: "user", Content: "What is the capital of France?"}}}
	s, err := NewExtractive(nil).OpenChat(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	toks, err := drain(t, s)
	if err != nil {
		t.Fatal(err)
	}
	if len(toks) < 10 {
		t.Errorf("streamed %d tokens, want it streamed word by word like any model", len(toks))
	}
	reply := strings.Join(toks, "")
	if reply != NoModelConfiguredReply {
		t.Errorf("tokens do not join to the reply: %q", reply)
	}
	for _, must := range []string{"No language model is configured", "not a language model", "CRISPY_OPENAI_BASE_URL", "MODEL_ID"} {
		if !strings.Contains(reply, must) {
			t.Errorf("reply lacks %q: %q", must, reply)
		}
	}
	if s.Model() != ExtractiveModelID {
		t.Errorf("Model() = %q", s.Model())
	}
	want := Usage{TokensIn: EstimateTokens(req.Messages[0].Content), TokensOut: EstimateTokens(reply), Estimated: true}
	if got := s.Usage(); got != want {
		t.Errorf("usage = %+v, want %+v", got, want)
	}
}

// staticRetriever returns fixed passages and records its calls.
type staticRetriever struct {
	passages []Passage
	err      error
	calls    []string
}

func (r *staticRetriever) Retrieve(_ context.Context, tenantID, query string, k int) ([]Passage, error) {
	r.calls = append(r.calls, tenantID+"|"+query)
	if len(r.passages) > k {
		return r.passages[:k], r.err
	}
	return r.passages, r.err
}

func TestExtractiveQuotesPassagesWithCitations(t *testing.T) {
	ret := &staticRetriever{passages: []Passage{
		{ID: "d1:0", Title: "Billing FAQ", Score: 0.9, Text: "Our office is in Lisbon. Refunds are issued within 14 days of a request. Contact support for help."},
		{ID: "d2:3", Score: 0.4, Text: "Refund requests go through the billing portal."},
		{ID: "d3:1", Score: 0, Text: "Irrelevant text about llamas."},
	}}
	req := ChatRequest{
		Model: ExtractiveModelID,
		Meta:  RequestMeta{TenantID: "acme"},
		Messages: []Message{
			{Role: "user", Content: "earlier question"},
			{Role: "assistant", Content: "earlier answer"},
			{Role: "user", Content: "How long do refunds take?"},
		},
	}
	text, err := completeModel(t, NewExtractive(ret), req)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"acme|How long do refunds take?"}, ret.calls); diff != "" {
		t.Errorf("retriever calls (-want +got): %s", diff)
	}
	want := "From your documents (quoted by local/extractive, which does not generate text):\n\n" +
		"[1] \"Refunds are issued within 14 days of a request. Contact support for help.\" (Billing FAQ)\n\n" +
		"[2] \"Refund requests go through the billing portal.\""
	if diff := cmp.Diff(want, text); diff != "" {
		t.Errorf("reply (-want +got):\n%s", diff)
	}
	if strings.Contains(text, "llamas") {
		t.Error("a passage with score 0 was quoted")
	}
}

func TestExtractiveSaysWhenNothingIsRelevant(t *testing.T) {
	for _, passages := range [][]Passage{nil, {{Text: "x", Score: 0}}} {
		text, err := completeModel(t, NewExtractive(&staticRetriever{passages: passages}),
			ChatRequest{Messages: []Message{{Role: "user", Content: "anything"}}})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(text, "found nothing relevant") || !strings.Contains(text, "not a language model") {
			t.Errorf("reply = %q", text)
		}
	}
}

func TestExtractiveRetrieverErrorFailsTheCall(t *testing.T) {
	boom := errors.New("vector store down")
	_, err := NewExtractive(&staticRetriever{err: boom}).OpenChat(t.Context(),
		ChatRequest{Messages: []Message{{Role: "user", Content: "q"}}})
	if !errors.Is(err, boom) {
		t.Errorf("err = %v, want it to wrap the retriever's error", err)
	}
}

func TestBestQuoteIsBoundedAndOnAWordBoundary(t *testing.T) {
	long := strings.Repeat("lorem ipsum dolor ", 50)
	q := bestQuote(long, map[string]bool{"ipsum": true})
	if n := len([]rune(q)); n > maxQuoteRunes+1 {
		t.Errorf("quote is %d runes, want at most %d plus an ellipsis", n, maxQuoteRunes)
	}
	if !strings.HasSuffix(q, "…") || strings.HasSuffix(strings.TrimSuffix(q, "…"), " ") {
		t.Errorf("quote = %q, want a cut at a word boundary marked with …", q)
	}
}

func completeModel(t *testing.T, m ChatModel, req ChatRequest) (string, error) {
	t.Helper()
	s, err := m.OpenChat(t.Context(), req)
	if err != nil {
		return "", err
	}
	defer s.Close()
	toks, err := drain(t, s)
	return strings.Join(toks, ""), err
}
