package metering

import (
	"encoding/json"

	"github.com/crispy-enigma/crispy/gateway"
)

// optionsRole marks the synthetic last message that carries a request's sampling options and tool
// messages into the cache key; no real message has a role with a NUL byte.
const optionsRole = "\x00options"

// cacheOptions are the parts of a request besides model, maxTokens and the messages' role and text
// that change the reply: two requests that differ in them must not share a cached answer.
type cacheOptions struct {
	Temperature    *float64        `json:"t,omitempty"`
	TopP           *float64        `json:"p,omitempty"`
	Stop           []string        `json:"s,omitempty"`
	Seed           *int64          `json:"seed,omitempty"`
	ResponseFormat json.RawMessage `json:"rf,omitempty"`
	ToolMessages   []toolMessage   `json:"tm,omitempty"`
}

// toolMessage is the tool part of message Index: the call it answers, the calls it asked for.
type toolMessage struct {
	Index      int                `json:"i"`
	ToolCallID string             `json:"id,omitempty"`
	ToolCalls  []gateway.ToolCall `json:"c,omitempty"`
}

// keyMessages is the message list CacheKey hashes for req: its messages, plus one synthetic message
// with the options when any is set (so keys of requests without options stay as they were).
func keyMessages(req *gateway.ChatRequest) []gateway.Message {
	o := cacheOptions{Temperature: req.Temperature, TopP: req.TopP, Stop: req.Stop, Seed: req.Seed, ResponseFormat: req.ResponseFormat}
	for i, m := range req.Messages {
		if m.ToolCallID != "" || len(m.ToolCalls) > 0 {
			o.ToolMessages = append(o.ToolMessages, toolMessage{Index: i, ToolCallID: m.ToolCallID, ToolCalls: m.ToolCalls})
		}
	}
	b, _ := json.Marshal(o)
	if string(b) == "{}" {
		return req.Messages
	}
	return append(req.Messages[:len(req.Messages):len(req.Messages)], gateway.Message{Role: optionsRole, Content: string(b)})
}
