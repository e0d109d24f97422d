package gateway

import (
	"context"
	"io"
	"unicode/utf8"
)

// limitOutput enforces req.MaxTokens on s, whatever the provider does with max_tokens: a provider
// that ignores it, and local/extractive, which has no such notion, once charged 2,200 tokens to a
// 1,000-token budget, and 40 chats with maxTokens 1 charged 1,260 to a 300-token one. The reply
// is cut once its estimated tokens (EstimateTokens' rule, the one budgets reserve by) reach
// MaxTokens, the upstream call is cancelled, and Usage never reports more output than MaxTokens.
// MaxTokens 0 leaves s as it is.
func limitOutput(s ChatStream, req ChatRequest) ChatStream {
	if req.MaxTokens <= 0 {
		return s
	}
	return &cappedStream{ChatStream: s, maxTokens: req.MaxTokens, maxRunes: 4 * req.MaxTokens, msgs: req.Messages}
}

type cappedStream struct {
	ChatStream
	maxTokens, maxRunes int
	msgs                []Message
	runes               int  // runes returned so far
	cut                 bool // the reply reached maxRunes and the upstream was closed
	closeErr            error
}

func (s *cappedStream) Next(ctx context.Context) (string, error) {
	if s.cut {
		return "", io.EOF
	}
	tok, err := s.ChatStream.Next(ctx)
	if err != nil {
		return tok, err
	}
	n := utf8.RuneCountInString(tok)
	if s.runes+n <= s.maxRunes {
		s.runes += n
		return tok, nil
	}
	keep := s.maxRunes - s.runes
	s.runes = s.maxRunes
	s.cut = true
	// Stop the upstream now: what it would still send is neither shown nor charged.
	s.closeErr = s.ChatStream.Close()
	if keep == 0 {
		return "", io.EOF
	}
	return firstRunes(tok, keep), nil
}

// Usage is the provider's, with the output capped at MaxTokens; after a cut, when the provider
// never got to report, both counts are estimated.
func (s *cappedStream) Usage() Usage {
	if s.cut {
		return Usage{TokensIn: estimateMessages(s.msgs), TokensOut: runesToTokens(s.runes), Estimated: true}
	}
	u := s.ChatStream.Usage()
	u.TokensOut = min(u.TokensOut, s.maxTokens)
	return u
}

func (s *cappedStream) Close() error {
	if s.cut {
		return s.closeErr
	}
	return s.ChatStream.Close()
}

// ToolCalls are those of the reply, none when it was cut: calls streamed in part are not calls.
func (s *cappedStream) ToolCalls() []ToolCall {
	if s.cut {
		return nil
	}
	return ToolCallsOf(s.ChatStream)
}

var _ ToolCallStream = (*cappedStream)(nil)

// firstRunes returns the first n runes of t.
func firstRunes(t string, n int) string {
	for i := range t {
		if n == 0 {
			return t[:i]
		}
		n--
	}
	return t
}

// streamInfo is the ModelInfo of the model that serves a stream Open returned.
func streamInfo(s ChatStream) ModelInfo {
	switch v := s.(type) {
	case *routedStream:
		return v.info
	case *cappedStream:
		return streamInfo(v.ChatStream)
	}
	return ModelInfo{}
}
