// Package gateway is the AI gateway: chat providers behind one streaming interface, model routing,
// retries and fallback (docs/architecture.md). Embeddings and speech live beside the chat side.
package gateway

import (
	"context"
	"encoding/json"
	"unicode/utf8"

	"github.com/crispy-enigma/crispy/config"
)

// Message is one chat turn sent to a model. Role is "system", "user", "assistant" or "tool". An
// assistant turn may carry the ToolCalls it asked for; a "tool" turn answers the call ToolCallID.
type Message struct {
	Role       string     `json:"role"`
	Content    string     `json:"content"`
	ToolCalls  []ToolCall `json:"tool_calls,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
}

// RequestMeta identifies who a model call is for. It never reaches the model itself: providers use it
// for routing (Cloudflare account and AI Gateway) and tagging (AI Gateway metadata), never for the prompt.
type RequestMeta struct {
	TenantID  string
	AccountID string // Cloudflare account of the tenant, for @cf/ models
	GatewayID string // Cloudflare AI Gateway of the tenant; empty calls Workers AI directly
	TraceID   string
	SessionID string
	Route     string
	UserID    string // the caller's user, as the request named it (audit); "" when none
	// Tenant is the resolved tenant config the call is made for: a Meter reads its budget, cache
	// and model rules from it. A metered Router refuses a call without one.
	Tenant *config.TenantConfig
	// AllowCached lets a Meter answer the call from the tenant's response cache: set it only for a
	// reply that is returned whole (not streamed) and has no side effects.
	AllowCached bool
}

// ChatRequest is one chat completion request. MaxTokens 0 and a nil Temperature leave the provider's
// defaults.
type ChatRequest struct {
	Model       string
	Messages    []Message
	MaxTokens   int
	Temperature *float64
	Meta        RequestMeta
	// Tools are offered to the model (OpenAI `tools`); a stream that implements ToolCallStream reports
	// the calls it asked for. Models that cannot call tools ignore them.
	Tools []ToolSpec
	// Sampling and output options of OpenAI's chat completions, passed through unchanged to the
	// providers that speak it (the built-in local models ignore them). nil/empty leaves the
	// provider's default. ResponseFormat and ToolChoice are OpenAI's JSON values as the client sent
	// them; User is the client's end-user ID (OpenAI's `user`).
	TopP           *float64
	Stop           []string
	Seed           *int64
	ResponseFormat json.RawMessage
	ToolChoice     json.RawMessage
	User           string
	// Whole: the caller uses the reply only once it is complete (a JSON answer, a summary), so the
	// provider may ask its upstream for one completion rather than a stream: one response to read
	// instead of an event per chunk, each a wakeup of the node (0.17 ms of added latency per call
	// against a local upstream, `make bench-peers`). Providers that only stream ignore it; a Router
	// with a first-token bound streams anyway, since only a stream shows its first token early.
	Whole bool
}

// Usage counts a call's tokens. Estimated is true when the provider reported none and the counts come
// from EstimateTokens.
type Usage struct {
	TokensIn  int
	TokensOut int
	Estimated bool
}

// ChatStream is one streamed chat reply. It is used by one goroutine at a time; Close may be called from
// another goroutine to abort a blocked Next.
type ChatStream interface {
	// Next returns the next non-empty delta of the reply, io.EOF at the normal end.
	Next(ctx context.Context) (string, error)
	// Usage is valid after Next returned io.EOF: exact from the provider when it reports usage, else
	// estimated.
	Usage() Usage
	// Model names the model that actually serves the reply (after any fallback).
	Model() string
	// Close cancels the upstream call and releases its connection. It is safe to call more than once.
	Close() error
}

// ChatModel opens streamed chat completions. OpenChat returns once the call is set up (the upstream
// answered with a stream); errors after that come from the stream's Next.
type ChatModel interface {
	OpenChat(ctx context.Context, req ChatRequest) (ChatStream, error)
}

// EstimateTokens is docs/api.md's estimate ("Token budgets"): ceil(chars/4) per message, so at least 1
// for each non-empty message, summed. Characters are runes, so non-ASCII text is not over-counted by its
// UTF-8 byte length. Summing per message (rather than ceil of the total) never under-estimates, which
// is the safe side for budget reservations.
func EstimateTokens(msgs ...string) int {
	n := 0
	for _, m := range msgs {
		if m == "" {
			continue
		}
		n += (utf8.RuneCountInString(m) + 3) / 4
	}
	return n
}

// estimateMessages estimates the input tokens of a request's messages.
func estimateMessages(msgs []Message) int {
	n := 0
	for _, m := range msgs {
		n += EstimateTokens(m.Content)
	}
	return n
}

// runesToTokens applies EstimateTokens' rule to a rune count already known.
func runesToTokens(runes int) int {
	return (runes + 3) / 4
}
