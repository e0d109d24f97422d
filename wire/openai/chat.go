package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Object names OpenAI puts in "object".
const (
	ObjectChatCompletion      = "chat.completion"
	ObjectChatCompletionChunk = "chat.completion.chunk"
	ObjectList                = "list"
	ObjectModel               = "model"
	ObjectEmbedding           = "embedding"
	ObjectResponse            = "response"
)

// Finish reasons of a chat completion choice.
const (
	FinishStop      = "stop"
	FinishLength    = "length"
	FinishToolCalls = "tool_calls"
)

// ChatCompletionRequest is the body of POST /v1/chat/completions. Pointers tell "absent" from zero.
type ChatCompletionRequest struct {
	Model               string          `json:"model"`
	Messages            []ChatMessage   `json:"messages"`
	Stream              bool            `json:"stream"`
	StreamOptions       *StreamOptions  `json:"stream_options,omitempty"`
	MaxTokens           *int            `json:"max_tokens,omitempty"`
	MaxCompletionTokens *int            `json:"max_completion_tokens,omitempty"`
	Temperature         *float64        `json:"temperature,omitempty"`
	TopP                *float64        `json:"top_p,omitempty"`
	N                   *int            `json:"n,omitempty"`
	Stop                StopSequences   `json:"stop,omitempty"`
	Seed                *int64          `json:"seed,omitempty"`
	ResponseFormat      json.RawMessage `json:"response_format,omitempty"`
	Tools               []Tool          `json:"tools,omitempty"`
	ToolChoice          json.RawMessage `json:"tool_choice,omitempty"`
	ParallelToolCalls   *bool           `json:"parallel_tool_calls,omitempty"`
	User                string          `json:"user,omitempty"`
	PresencePenalty     *float64        `json:"presence_penalty,omitempty"`
	FrequencyPenalty    *float64        `json:"frequency_penalty,omitempty"`
}

// OutputLimit is the request's cap on generated tokens: max_completion_tokens (the current name)
// wins over max_tokens (the deprecated one); 0 means none.
func (r *ChatCompletionRequest) OutputLimit() int {
	switch {
	case r.MaxCompletionTokens != nil:
		return *r.MaxCompletionTokens
	case r.MaxTokens != nil:
		return *r.MaxTokens
	}
	return 0
}

// IncludeUsage reports whether a stream must end with a usage chunk.
func (r *ChatCompletionRequest) IncludeUsage() bool {
	return r.StreamOptions != nil && r.StreamOptions.IncludeUsage
}

// StreamOptions is stream_options.
type StreamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// StopSequences is `stop`: a string or an array of strings; it decodes either into a slice.
type StopSequences []string

// UnmarshalJSON implements json.Unmarshaler.
func (s *StopSequences) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*s = nil
		return nil
	case len(b) > 0 && b[0] == '"':
		var one string
		if err := json.Unmarshal(b, &one); err != nil {
			return err
		}
		*s = StopSequences{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return Invalid("stop", "must be a string or an array of strings")
	}
	*s = many
	return nil
}

// ChatMessage is one message of a chat completion request or the message of a non-streamed choice.
// Content is the text: OpenAI's array form (content parts) is joined when every part is text; a part
// of another type (an image, audio, a file) is refused by Decode, since no model here reads it.
type ChatMessage struct {
	Role       string     `json:"role"`
	Content    *string    `json:"content"`
	Name       string     `json:"name,omitempty"`
	ToolCalls  []ToolCall `json:"tool_calls,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
	// Refusal is always null in answers (no model here refuses in OpenAI's structured way); the field
	// is present because SDKs read it.
	Refusal *string `json:"refusal"`
}

// Text is the message's content, "" when null.
func (m *ChatMessage) Text() string {
	if m.Content == nil {
		return ""
	}
	return *m.Content
}

// UnmarshalJSON accepts content as a string, null, or an array of content parts.
func (m *ChatMessage) UnmarshalJSON(b []byte) error {
	var raw struct {
		Role       string          `json:"role"`
		Content    json.RawMessage `json:"content"`
		Name       string          `json:"name"`
		ToolCalls  []ToolCall      `json:"tool_calls"`
		ToolCallID string          `json:"tool_call_id"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*m = ChatMessage{Role: raw.Role, Name: raw.Name, ToolCalls: raw.ToolCalls, ToolCallID: raw.ToolCallID}
	text, present, err := ContentText(raw.Content)
	if err != nil {
		return &ParamError{Param: "messages", Code: CodeInvalidValue, Message: err.Error(), Err: err}
	}
	if present {
		m.Content = &text
	}
	return nil
}

// ContentPart is one element of an array-form content.
type ContentPart struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// ErrNonTextContent is returned for a content part that is not text.
var ErrNonTextContent = errors.New("only text content parts are supported")

// ContentText flattens a content value (string, null, or text parts: "text", "input_text",
// "output_text") into its text. present is false for an absent or null content.
func ContentText(raw json.RawMessage) (text string, present bool, err error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return "", false, nil
	}
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &text); err != nil {
			return "", false, err
		}
		return text, true, nil
	}
	var parts []ContentPart
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", false, errors.New("content must be a string or an array of content parts")
	}
	var sb strings.Builder
	for i, p := range parts {
		switch p.Type {
		case "text", "input_text", "output_text":
		default:
			return "", false, fmt.Errorf("content part %d has type %q: %w", i, p.Type, ErrNonTextContent)
		}
		if i > 0 && sb.Len() > 0 {
			sb.WriteByte('\n')
		}
		sb.WriteString(p.Text)
	}
	return sb.String(), true, nil
}

// Tool is one entry of `tools`: {"type":"function","function":{"name","description","parameters"}}.
type Tool struct {
	Type     string   `json:"type"`
	Function Function `json:"function"`
}

// Function describes a callable function; Parameters is its JSON Schema.
type Function struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
	Strict      *bool           `json:"strict,omitempty"`
}

// ToolCall is one call the model asked for, in a message (Index absent) or a stream delta (Index set).
type ToolCall struct {
	Index    *int         `json:"index,omitempty"`
	ID       string       `json:"id,omitempty"`
	Type     string       `json:"type,omitempty"`
	Function FunctionCall `json:"function"`
}

// FunctionCall names the function and carries its arguments as JSON text.
type FunctionCall struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

// Usage is the token count of a call. CachedTokens reports an answer served from the response
// cache: every input token was cached (prompt_tokens_details.cached_tokens = prompt_tokens).
type Usage struct {
	PromptTokens            int                      `json:"prompt_tokens"`
	CompletionTokens        int                      `json:"completion_tokens"`
	TotalTokens             int                      `json:"total_tokens"`
	PromptTokensDetails     *PromptTokensDetails     `json:"prompt_tokens_details,omitempty"`
	CompletionTokensDetails *CompletionTokensDetails `json:"completion_tokens_details,omitempty"`
}

// PromptTokensDetails is usage.prompt_tokens_details.
type PromptTokensDetails struct {
	CachedTokens int `json:"cached_tokens"`
}

// CompletionTokensDetails is usage.completion_tokens_details.
type CompletionTokensDetails struct {
	ReasoningTokens int `json:"reasoning_tokens"`
}

// NewUsage fills the totals and details. cached marks an answer from the response cache.
func NewUsage(in, out int, cached bool) Usage {
	u := Usage{PromptTokens: in, CompletionTokens: out, TotalTokens: in + out,
		PromptTokensDetails: &PromptTokensDetails{}, CompletionTokensDetails: &CompletionTokensDetails{}}
	if cached {
		u.PromptTokensDetails.CachedTokens = in
	}
	return u
}

// ChatCompletion is a non-streamed answer.
type ChatCompletion struct {
	ID                string       `json:"id"`
	Object            string       `json:"object"`
	Created           int64        `json:"created"`
	Model             string       `json:"model"`
	Choices           []ChatChoice `json:"choices"`
	Usage             Usage        `json:"usage"`
	SystemFingerprint *string      `json:"system_fingerprint"`
	ServiceTier       *string      `json:"service_tier,omitempty"`
}

// ChatChoice is one choice of a ChatCompletion (this API always answers one).
type ChatChoice struct {
	Index        int         `json:"index"`
	Message      ChatMessage `json:"message"`
	FinishReason string      `json:"finish_reason"`
	Logprobs     *struct{}   `json:"logprobs"`
}

// ChatCompletionChunk is one event of a streamed answer. Usage is present (non-null) only in the
// final chunk of a stream with include_usage, whose Choices is empty.
type ChatCompletionChunk struct {
	ID                string        `json:"id"`
	Object            string        `json:"object"`
	Created           int64         `json:"created"`
	Model             string        `json:"model"`
	Choices           []ChunkChoice `json:"choices"`
	Usage             *Usage        `json:"usage,omitempty"`
	SystemFingerprint *string       `json:"system_fingerprint"`
}

// ChunkChoice is the choice of a chunk. FinishReason is null until the last content chunk.
type ChunkChoice struct {
	Index        int        `json:"index"`
	Delta        ChunkDelta `json:"delta"`
	FinishReason *string    `json:"finish_reason"`
	Logprobs     *struct{}  `json:"logprobs"`
}

// ChunkDelta is the new part of the message; Role is sent in the first chunk only.
type ChunkDelta struct {
	Role      string     `json:"role,omitempty"`
	Content   *string    `json:"content,omitempty"`
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
}
