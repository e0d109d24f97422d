// Package mockllm is a mock OpenAI-compatible model server for measurements (`make bench-peers`, the
// capacity test): a fixed reply with usage, streamed or not, and the model list, so that what is
// measured is the gateway in front of it.
package mockllm

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// Reply is the mock's one answer.
type Reply struct {
	ID      string   // the completion ID, e.g. "chatcmpl-mock"
	OwnedBy string   // the model list's owned_by
	Parts   []string // the content, as streamed: one chunk each
	// PromptTokens and CompletionTokens are the usage reported.
	PromptTokens, CompletionTokens int
}

// Handler serves GET /v1/models (one model, "mock-model") and POST /v1/chat/completions with r;
// onRequest, when set, is called for each chat request. A streamed answer is a role chunk, a chunk
// per part, the finish chunk, the usage chunk (stream_options.include_usage) and [DONE], one event
// per write, flushed: a real upstream's stream (chunked, no Content-Length).
func Handler(r Reply, onRequest func()) http.Handler {
	usage := `"usage":{"prompt_tokens":` + strconv.Itoa(r.PromptTokens) + `,"completion_tokens":` + strconv.Itoa(r.CompletionTokens) +
		`,"total_tokens":` + strconv.Itoa(r.PromptTokens+r.CompletionTokens) + `}`
	completed := `{"id":"` + r.ID + `","object":"chat.completion","created":1700000000,"model":"mock-model",` +
		`"choices":[{"index":0,"message":{"role":"assistant","content":` + strconv.Quote(strings.Join(r.Parts, "")) + `},"finish_reason":"stop"}],` +
		usage + `}`
	models := `{"object":"list","data":[{"id":"mock-model","object":"model","created":1700000000,"owned_by":"` + r.OwnedBy + `"}]}`
	chunk := func(choices string) string {
		return `data: {"id":"` + r.ID + `","object":"chat.completion.chunk","created":1700000000,"model":"mock-model","choices":` + choices + "}\n\n"
	}
	delta := func(d, finish string) string {
		return chunk(`[{"index":0,"delta":` + d + `,"finish_reason":` + finish + `}]`)
	}
	events := []string{delta(`{"role":"assistant","content":""}`, "null")}
	for _, part := range r.Parts {
		events = append(events, delta(`{"content":`+strconv.Quote(part)+`}`, "null"))
	}
	events = append(events, delta(`{}`, `"stop"`),
		`data: {"id":"`+r.ID+`","object":"chat.completion.chunk","created":1700000000,"model":"mock-model","choices":[],`+usage+"}\n\n",
		"data: [DONE]\n\n")

	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, models)
	})
	mux.HandleFunc("POST /v1/chat/completions", func(w http.ResponseWriter, req *http.Request) {
		if onRequest != nil {
			onRequest()
		}
		var body struct {
			Stream bool `json:"stream"`
		}
		if err := json.NewDecoder(io.LimitReader(req.Body, 1<<20)).Decode(&body); err != nil {
			http.Error(w, `{"error":{"message":"bad json"}}`, http.StatusBadRequest)
			return
		}
		if !body.Stream {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, completed)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		f, _ := w.(http.Flusher)
		for _, ev := range events {
			_, _ = io.WriteString(w, ev)
			if f != nil {
				f.Flush()
			}
		}
	})
	return mux
}
