package openai

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// ResponseRequest is the body of POST /v1/responses. With PreviousResponseID the conversation
// continues server-side from that response; Store false answers without keeping the turn.
type ResponseRequest struct {
	Model              string            `json:"model"`
	Input              ResponseInput     `json:"input"`
	Instructions       string            `json:"instructions,omitempty"`
	PreviousResponseID string            `json:"previous_response_id,omitempty"`
	Store              *bool             `json:"store,omitempty"`
	Stream             bool              `json:"stream,omitempty"`
	MaxOutputTokens    *int              `json:"max_output_tokens,omitempty"`
	Temperature        *float64          `json:"temperature,omitempty"`
	TopP               *float64          `json:"top_p,omitempty"`
	Tools              []ResponseTool    `json:"tools,omitempty"`
	ToolChoice         json.RawMessage   `json:"tool_choice,omitempty"`
	User               string            `json:"user,omitempty"`
	Metadata           map[string]string `json:"metadata,omitempty"`
	Conversation       json.RawMessage   `json:"conversation,omitempty"`
}

// Stored reports whether the turn is kept (store defaults to true, as OpenAI's).
func (r *ResponseRequest) Stored() bool { return r.Store == nil || *r.Store }

// ResponseTool is a function tool in the Responses API's flat form.
type ResponseTool struct {
	Type        string          `json:"type"`
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
	Strict      *bool           `json:"strict,omitempty"`
}

// InputItem is one item of `input` in its array form, flattened: a message (role + text), a
// function call the model made earlier, or the output of one.
type InputItem struct {
	Type      string // "message", "function_call" or "function_call_output"
	Role      string // message: user, assistant, system or developer
	Text      string // message text; function_call_output: the output
	CallID    string // function_call, function_call_output
	Name      string // function_call
	Arguments string // function_call
}

// ResponseInput is `input`: a string (one user message) or an array of items.
type ResponseInput struct {
	Items []InputItem
}

// UnmarshalJSON implements json.Unmarshaler.
func (in *ResponseInput) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	*in = ResponseInput{}
	if len(b) == 0 || bytes.Equal(b, []byte("null")) {
		return nil
	}
	if b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		in.Items = []InputItem{{Type: "message", Role: "user", Text: s}}
		return nil
	}
	var raw []struct {
		Type      string          `json:"type"`
		Role      string          `json:"role"`
		Content   json.RawMessage `json:"content"`
		CallID    string          `json:"call_id"`
		Name      string          `json:"name"`
		Arguments string          `json:"arguments"`
		Output    json.RawMessage `json:"output"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return Invalid("input", "must be a string or an array of input items")
	}
	in.Items = make([]InputItem, 0, len(raw))
	for i, r := range raw {
		it := InputItem{Type: r.Type, Role: r.Role, CallID: r.CallID, Name: r.Name, Arguments: r.Arguments}
		switch r.Type {
		case "", "message":
			it.Type = "message"
			text, _, err := ContentText(r.Content)
			if err != nil {
				return &ParamError{Param: fmt.Sprintf("input[%d].content", i), Code: CodeInvalidValue, Message: err.Error(), Err: err}
			}
			it.Text = text
		case "function_call":
		case "function_call_output":
			text, _, err := ContentText(r.Output)
			if err != nil {
				return &ParamError{Param: fmt.Sprintf("input[%d].output", i), Code: CodeInvalidValue, Message: err.Error(), Err: err}
			}
			it.Text = text
		default:
			return Unsupported(fmt.Sprintf("input[%d].type", i), "input item type %q is not supported", r.Type)
		}
		in.Items = append(in.Items, it)
	}
	return nil
}

// Response is the Responses API's response object (POST /v1/responses, GET /v1/responses/{id}).
type Response struct {
	ID                 string             `json:"id"`
	Object             string             `json:"object"`
	CreatedAt          int64              `json:"created_at"`
	Status             string             `json:"status"`
	Error              *ResponseError     `json:"error"`
	IncompleteDetails  *IncompleteDetails `json:"incomplete_details"`
	Instructions       *string            `json:"instructions"`
	MaxOutputTokens    *int               `json:"max_output_tokens"`
	Model              string             `json:"model"`
	Output             []OutputItem       `json:"output"`
	ParallelToolCalls  bool               `json:"parallel_tool_calls"`
	PreviousResponseID *string            `json:"previous_response_id"`
	Store              bool               `json:"store"`
	Temperature        *float64           `json:"temperature"`
	TopP               *float64           `json:"top_p"`
	ToolChoice         any                `json:"tool_choice"`
	Tools              []ResponseTool     `json:"tools"`
	Text               ResponseText       `json:"text"`
	Truncation         string             `json:"truncation"`
	Usage              *ResponseUsage     `json:"usage"`
	User               *string            `json:"user"`
	Metadata           map[string]string  `json:"metadata"`
}

// ResponseError is response.error for a failed response.
type ResponseError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// IncompleteDetails says why a response stopped early (max_output_tokens).
type IncompleteDetails struct {
	Reason string `json:"reason"`
}

// ResponseText is response.text: the output format (always plain text here).
type ResponseText struct {
	Format struct {
		Type string `json:"type"`
	} `json:"format"`
}

// OutputItem is one item of response.output: an assistant message or a function call.
type OutputItem struct {
	Type    string          `json:"type"` // "message" or "function_call"
	ID      string          `json:"id"`
	Status  string          `json:"status"`
	Role    string          `json:"role,omitempty"`
	Content []OutputContent `json:"content,omitempty"`
	// function_call
	CallID    string `json:"call_id,omitempty"`
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments,omitempty"`
}

// OutputContent is one content part of an output message.
type OutputContent struct {
	Type        string `json:"type"` // "output_text"
	Text        string `json:"text"`
	Annotations []any  `json:"annotations"`
}

// ResponseUsage is response.usage.
type ResponseUsage struct {
	InputTokens        int `json:"input_tokens"`
	OutputTokens       int `json:"output_tokens"`
	TotalTokens        int `json:"total_tokens"`
	InputTokensDetails struct {
		CachedTokens int `json:"cached_tokens"`
	} `json:"input_tokens_details"`
	OutputTokensDetails struct {
		ReasoningTokens int `json:"reasoning_tokens"`
	} `json:"output_tokens_details"`
}

// NewResponseUsage fills the total; cached marks an answer from the response cache.
func NewResponseUsage(in, out int, cached bool) *ResponseUsage {
	u := &ResponseUsage{InputTokens: in, OutputTokens: out, TotalTokens: in + out}
	if cached {
		u.InputTokensDetails.CachedTokens = in
	}
	return u
}

// OutputText joins the text of every output message, as the SDKs' output_text does.
func (r *Response) OutputText() string {
	var b bytes.Buffer
	for _, it := range r.Output {
		if it.Type != "message" {
			continue
		}
		for _, c := range it.Content {
			if c.Type == "output_text" {
				b.WriteString(c.Text)
			}
		}
	}
	return b.String()
}

// ResponseStreamEvent is one event of a streamed response (stream: true). Type is also the SSE
// event name. Only the fields of its type are set.
type ResponseStreamEvent struct {
	Type           string         `json:"type"`
	SequenceNumber int            `json:"sequence_number"`
	Response       *Response      `json:"response,omitempty"`
	OutputIndex    *int           `json:"output_index,omitempty"`
	ContentIndex   *int           `json:"content_index,omitempty"`
	ItemID         string         `json:"item_id,omitempty"`
	Item           *OutputItem    `json:"item,omitempty"`
	Part           *OutputContent `json:"part,omitempty"`
	Delta          *string        `json:"delta,omitempty"`
	Text           *string        `json:"text,omitempty"`
	Logprobs       []any          `json:"logprobs,omitempty"`
}
