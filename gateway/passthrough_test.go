package gateway

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// OpenAI's sampling and output options reach the upstream unchanged, and absent ones are not sent
// (the provider's defaults apply).
func TestOpenAICompatiblePassesOptionsThrough(t *testing.T) {
	up := newFakeUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		startSSE(w)
		writeEvents(w, deltaChunk("ok"), finishChunk, usageChunk(1, 1), "[DONE]")
	})
	topP, seed := 0.9, int64(7)
	cases := []struct {
		name string
		req  ChatRequest
		want map[string]any
	}{
		{"all set", ChatRequest{TopP: &topP, Seed: &seed, Stop: []string{"\n\n", "END"}, User: "u1",
			ResponseFormat: json.RawMessage(`{"type":"json_object"}`), ToolChoice: json.RawMessage(`"auto"`)},
			map[string]any{"top_p": 0.9, "seed": 7.0, "stop": []any{"\n\n", "END"}, "user": "u1",
				"response_format": map[string]any{"type": "json_object"}, "tool_choice": "auto"}},
		{"none set", ChatRequest{}, map[string]any{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := NewOpenAICompatible(OpenAIOptions{Name: "test", BaseURL: up.URL})
			tc.req.Model, tc.req.Messages = "m", []Message{{Role: "user", Content: "hi"}}
			s, err := p.OpenChat(t.Context(), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, err := drain(t, s); err != nil {
				t.Fatal(err)
			}
			got := map[string]any{}
			for k, v := range up.last().Body {
				switch k {
				case "model", "messages", "stream", "stream_options":
				default:
					got[k] = v
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("options sent (-want +got):\n%s", diff)
			}
		})
	}
}
