package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func intp(i int) *int { return &i }

func TestToolCallAccumulator(t *testing.T) {
	tests := []struct {
		name   string
		chunks [][]toolCallDelta
		want   []ToolCall
	}{
		{
			name: "OpenAI streaming: id and name first, arguments in pieces, by index",
			chunks: [][]toolCallDelta{
				{{Index: intp(0), ID: "call_a", Type: "function", Function: fn("calculate", "")}},
				{{Index: intp(0), Function: fn("", `{"expr`)}},
				{{Index: intp(0), Function: fn("", `ession":"1+1"}`)}},
			},
			want: []ToolCall{{ID: "call_a", Type: "function", Function: FunctionCall{Name: "calculate", Arguments: `{"expression":"1+1"}`}}},
		},
		{
			name: "two parallel calls interleaved by index",
			chunks: [][]toolCallDelta{
				{{Index: intp(0), ID: "a", Function: fn("current_time", "")}, {Index: intp(1), ID: "b", Function: fn("calculate", "")}},
				{{Index: intp(1), Function: fn("", `{"expression":"2"}`)}},
				{{Index: intp(0), Function: fn("", `{}`)}},
			},
			want: []ToolCall{
				{ID: "a", Type: "function", Function: FunctionCall{Name: "current_time", Arguments: `{}`}},
				{ID: "b", Type: "function", Function: FunctionCall{Name: "calculate", Arguments: `{"expression":"2"}`}},
			},
		},
		{
			name: "whole calls reusing index 0 with new ids stay separate",
			chunks: [][]toolCallDelta{
				{{Index: intp(0), ID: "x", Function: fn("calculate", `{"expression":"1"}`)}},
				{{Index: intp(0), ID: "y", Function: fn("calculate", `{"expression":"2"}`)}},
			},
			want: []ToolCall{
				{ID: "x", Type: "function", Function: FunctionCall{Name: "calculate", Arguments: `{"expression":"1"}`}},
				{ID: "y", Type: "function", Function: FunctionCall{Name: "calculate", Arguments: `{"expression":"2"}`}},
			},
		},
		{
			name:   "no index and no id: continues the last call, gets a generated id",
			chunks: [][]toolCallDelta{{{Function: fn("calculate", `{"expression":`)}}, {{Function: fn("", `"3"}`)}}},
			want:   []ToolCall{{ID: "call_0", Type: "function", Function: FunctionCall{Name: "calculate", Arguments: `{"expression":"3"}`}}},
		},
		{
			name:   "a call that never got a name is dropped",
			chunks: [][]toolCallDelta{{{Index: intp(0), ID: "z", Function: fn("", `{}`)}}},
			want:   nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a toolCallAccumulator
			for _, c := range tt.chunks {
				a.add(c)
			}
			if diff := cmp.Diff(tt.want, a.result()); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
		})
	}
}

func fn(name, args string) (f struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}) {
	f.Name, f.Arguments = name, args
	return f
}

// A streamed reply that is only tool calls ends with io.EOF and no text; the calls come from
// ToolCallsOf, through the Router's wrapper. The request carries the tools in OpenAI's format.
func TestOpenAIStreamToolCallsThroughRouter(t *testing.T) {
	up := newFakeUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		startSSE(w)
		writeEvents(w,
			`{"choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"calculate","arguments":""}}]},"finish_reason":null}]}`,
			`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"expression\":"}}]},"finish_reason":null}]}`,
			`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"6*7\"}"}}]},"finish_reason":null}]}`,
			`{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}`,
			"[DONE]")
	})
	r := NewRouter(RouterOptions{Providers: []ProviderConfig{{Name: "up", BaseURL: up.URL, Models: []string{"*"}}}})
	req := ChatRequest{Model: "m", Messages: []Message{{Role: "user", Content: "6*7?"}},
		Tools: []ToolSpec{{Type: "function", Function: FunctionSpec{Name: "calculate", Parameters: json.RawMessage(`{"type":"object"}`)}}}}
	s, err := r.Open(context.Background(), req, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	toks, err := drain(t, s)
	if err != nil || len(toks) != 0 {
		t.Fatalf("tokens %q, err %v; want none and io.EOF", toks, err)
	}
	want := []ToolCall{{ID: "call_1", Type: "function", Function: FunctionCall{Name: "calculate", Arguments: `{"expression":"6*7"}`}}}
	if diff := cmp.Diff(want, ToolCallsOf(s)); diff != "" {
		t.Errorf("tool calls (-want +got):\n%s", diff)
	}
	tools, _ := up.last().Body["tools"].([]any)
	if len(tools) != 1 {
		t.Fatalf("upstream got tools %v, want one", up.last().Body["tools"])
	}
	if name := tools[0].(map[string]any)["function"].(map[string]any)["name"]; name != "calculate" {
		t.Errorf("tool name sent = %v", name)
	}

	// The assistant turn with tool_calls and the tool turn encode as OpenAI expects.
	b, _ := json.Marshal([]Message{{Role: "assistant", ToolCalls: want}, {Role: "tool", ToolCallID: "call_1", Content: "42"}})
	wantJSON := `[{"role":"assistant","content":"","tool_calls":[{"id":"call_1","type":"function","function":{"name":"calculate","arguments":"{\"expression\":\"6*7\"}"}}]},{"role":"tool","content":"42","tool_call_id":"call_1"}]`
	if string(b) != wantJSON {
		t.Errorf("messages JSON\n got %s\nwant %s", b, wantJSON)
	}
}

// The local model never calls tools: it has no ToolCalls, whatever the request offers.
func TestLocalModelNeverCallsTools(t *testing.T) {
	r := NewRouter(RouterOptions{})
	s, err := r.Open(context.Background(), ChatRequest{Model: ExtractiveModelID, Messages: []Message{{Role: "user", Content: "hi"}},
		Tools: []ToolSpec{{Type: "function", Function: FunctionSpec{Name: "calculate"}}}}, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := drain(t, s); err != nil {
		t.Fatal(err)
	}
	if calls := ToolCallsOf(s); calls != nil {
		t.Errorf("local model asked for tools: %v", calls)
	}
}
