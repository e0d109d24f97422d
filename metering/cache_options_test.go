package metering

import (
	"encoding/json"
	"testing"

	"github.com/crispy-enigma/crispy/gateway"
)

// Requests that differ only in a sampling option or a tool message never share a cached answer;
// requests without options keep the key they always had.
func TestCacheKeyOptions(t *testing.T) {
	msgs := []gateway.Message{{Role: "user", Content: "hello"}}
	key := func(r gateway.ChatRequest) string {
		r.Messages = append(r.Messages, msgs...)
		return CacheKey("acme", "m", 0, keyMessages(&r))
	}
	temp, temp2, seed := 0.0, 0.7, int64(1)
	base := key(gateway.ChatRequest{})
	if base != CacheKey("acme", "m", 0, msgs) {
		t.Fatal("a request without options changed its key")
	}
	variants := map[string]gateway.ChatRequest{
		"temperature 0":   {Temperature: &temp},
		"temperature 0.7": {Temperature: &temp2},
		"top_p":           {TopP: &temp2},
		"stop":            {Stop: []string{"x"}},
		"seed":            {Seed: &seed},
		"response_format": {ResponseFormat: json.RawMessage(`{"type":"json_object"}`)},
		"tool result":     {Messages: []gateway.Message{{Role: "tool", Content: "42", ToolCallID: "c1"}}},
	}
	seen := map[string]string{base: "none"}
	for name, r := range variants {
		k := key(r)
		if other, dup := seen[k]; dup {
			t.Errorf("%s has the key of %s", name, other)
		}
		seen[k] = name
	}
}
