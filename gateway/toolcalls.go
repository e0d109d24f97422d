package gateway

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// ToolSpec is one tool offered to a model, in OpenAI's chat `tools` format:
// {"type":"function","function":{"name","description","parameters"}}.
type ToolSpec struct {
	Type     string       `json:"type"` // always "function"
	Function FunctionSpec `json:"function"`
}

// FunctionSpec describes a callable function: Parameters is its JSON Schema.
type FunctionSpec struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
}

// ToolCall is one call a model asked for (OpenAI `tool_calls`). Arguments is the JSON text the model
// wrote; it is not guaranteed to be valid JSON, so the caller validates it.
type ToolCall struct {
	ID       string       `json:"id"`
	Type     string       `json:"type"` // "function"
	Function FunctionCall `json:"function"`
}

// FunctionCall names the function and carries its arguments as JSON text.
type FunctionCall struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

// ToolCallStream is implemented by streams whose model may end its reply with tool calls instead of (or
// after) text. The local models never call tools and do not implement it.
type ToolCallStream interface {
	// ToolCalls is valid after Next returned io.EOF: the calls the model asked for, in order.
	ToolCalls() []ToolCall
}

// ToolCallsOf returns the tool calls of a finished stream, nil when it asked for none or its model cannot
// call tools.
func ToolCallsOf(s ChatStream) []ToolCall {
	if tc, ok := s.(ToolCallStream); ok {
		return tc.ToolCalls()
	}
	return nil
}

// ToolCalls delegates to the stream that served the reply (after any fallback).
func (s *routedStream) ToolCalls() []ToolCall { return ToolCallsOf(s.inner) }

var (
	_ ToolCallStream = (*routedStream)(nil)
	_ ToolCallStream = (*openAIStream)(nil)
)

// ToolCalls implements ToolCallStream.
func (s *openAIStream) ToolCalls() []ToolCall { return s.calls.result() }

// toolCallDelta is one streamed fragment of a tool call. OpenAI sends the id, type and name in the
// first fragment of each call and the arguments as string pieces in the following ones, all keyed by
// index.
type toolCallDelta struct {
	Index    *int   `json:"index"`
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

// toolCallAccumulator joins streamed fragments into whole calls.
type toolCallAccumulator struct {
	calls []ToolCall
	index []int // the stream's index of each call in calls
}

// add merges fragments. A fragment is appended to the call with its index; a fragment without an index
// (some servers send whole calls that way) continues the last call unless it carries a new id. A
// fragment with a known index but a different non-empty id starts a new call, so a server that reuses
// index 0 for every whole call still yields each call. It returns the runes of argument text added, for
// the usage estimate.
func (a *toolCallAccumulator) add(deltas []toolCallDelta) int {
	runes := 0
	for i := range deltas {
		d := &deltas[i]
		pos := -1
		if d.Index != nil {
			for j := len(a.index) - 1; j >= 0; j-- {
				if a.index[j] == *d.Index {
					pos = j
					break
				}
			}
		} else if len(a.calls) > 0 {
			pos = len(a.calls) - 1
		}
		if pos >= 0 && d.ID != "" && a.calls[pos].ID != "" && a.calls[pos].ID != d.ID {
			pos = -1
		}
		if pos < 0 {
			idx := len(a.calls)
			if d.Index != nil {
				idx = *d.Index
			}
			a.calls = append(a.calls, ToolCall{Type: "function"})
			a.index = append(a.index, idx)
			pos = len(a.calls) - 1
		}
		c := &a.calls[pos]
		if d.ID != "" {
			c.ID = d.ID
		}
		if d.Type != "" {
			c.Type = d.Type
		}
		if c.Function.Name == "" {
			c.Function.Name = d.Function.Name // sent once, in the first fragment
		}
		c.Function.Arguments += d.Function.Arguments
		runes += utf8.RuneCountInString(d.Function.Arguments)
	}
	return runes
}

// result returns the accumulated calls; calls without a name are dropped (nothing could run them),
// and a call without an id (some servers omit it) gets one, since the tool message must name it.
func (a *toolCallAccumulator) result() []ToolCall {
	var out []ToolCall
	for i, c := range a.calls {
		if c.Function.Name == "" {
			continue
		}
		if c.ID == "" {
			c.ID = "call_" + strconv.Itoa(i)
		}
		out = append(out, c)
	}
	return out
}
