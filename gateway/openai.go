package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/crispy-enigma/crispy/config"
)

// maxErrorBody bounds how much of an upstream error body is read; maxErrorMessage how much of its
// message is kept.
const (
	maxErrorBody    = 64 << 10
	maxErrorMessage = 512
)

// OpenAIOptions configures an OpenAI-compatible chat provider.
type OpenAIOptions struct {
	// Name identifies the provider in errors and logs.
	Name string
	// BaseURL is the server's API root. "/chat/completions" is appended when it ends in "/v1"
	// (the form OpenAI SDKs use, e.g. http://127.0.0.1:11434/v1), else "/v1/chat/completions".
	BaseURL string
	// APIKeyEnv names the environment variable holding the bearer key; empty or unset sends no
	// Authorization header (Ollama, llama.cpp). The key is read once here and never logged.
	APIKeyEnv string
	// APIKey is the key itself when the caller already read it; it wins over APIKeyEnv.
	APIKey string
	// Getenv reads APIKeyEnv; nil uses config.Getenv.
	Getenv func(string) string
	// HTTPClient carries the calls; nil uses NewHTTPClient. Its Timeout must be
	// zero (or long): a client timeout would cut long streams.
	HTTPClient *http.Client
}

// OpenAICompatible is a chat provider speaking OpenAI's /v1/chat/completions with streaming: Ollama,
// vLLM, llama.cpp server, OpenAI and Cloudflare Workers AI's OpenAI endpoint.
type OpenAICompatible struct {
	name     string
	endpoint string
	apiKey   string
	client   *http.Client
	drains   *drainer
}

var _ ChatModel = (*OpenAICompatible)(nil)

// NewOpenAICompatible returns a provider for opts.
func NewOpenAICompatible(opts OpenAIOptions) *OpenAICompatible {
	getenv := opts.Getenv
	if getenv == nil {
		getenv = config.Getenv
	}
	key := opts.APIKey
	if key == "" && opts.APIKeyEnv != "" {
		key = getenv(opts.APIKeyEnv)
	}
	return &OpenAICompatible{
		name:     opts.Name,
		endpoint: chatCompletionsURL(opts.BaseURL),
		apiKey:   key,
		client:   orDefaultClient(opts.HTTPClient),
		drains:   newDrainer(MaxIdleConnsPerHost),
	}
}

func orDefaultClient(c *http.Client) *http.Client {
	if c != nil {
		return c
	}
	return NewHTTPClient()
}

// MaxIdleConnsPerHost is how many idle connections the default client keeps per upstream host: as
// many as a node has calls in flight to one provider, so a burst of concurrent calls reuses
// connections. net/http keeps 2, which opened a new TCP (and TLS) connection for most calls at 32
// in flight.
const MaxIdleConnsPerHost = 256

// NewHTTPClient is the default client of the providers: net/http's default transport (proxy from
// the environment, timeouts, HTTP/2) with MaxIdleConnsPerHost idle connections per host. No client
// timeout: it would cut long streams (the Router bounds calls itself).
func NewHTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 4 * MaxIdleConnsPerHost
	tr.MaxIdleConnsPerHost = MaxIdleConnsPerHost
	return &http.Client{Transport: tr}
}

// chatCompletionsURL accepts both base URL conventions: with and without the trailing /v1.
func chatCompletionsURL(base string) string {
	base = strings.TrimRight(base, "/")
	if strings.HasSuffix(base, "/v1") {
		return base + "/chat/completions"
	}
	return base + "/v1/chat/completions"
}

// OpenChat posts the request (with stream: true unless req.Whole) and returns once the server
// answered 200.
func (p *OpenAICompatible) OpenChat(ctx context.Context, req ChatRequest) (ChatStream, error) {
	return openChatCompletions(ctx, p.client, p.drains, p.name, p.endpoint, p.apiKey, nil, req)
}

// chatCompletionRequest is the body we send; only the fields every compatible server understands.
type chatCompletionRequest struct {
	Model         string         `json:"model"`
	Messages      []Message      `json:"messages"`
	Stream        bool           `json:"stream"`
	StreamOptions *streamOptions `json:"stream_options,omitempty"`
	MaxTokens     int            `json:"max_tokens,omitempty"`
	Temperature   *float64       `json:"temperature,omitempty"`
	Tools         []ToolSpec     `json:"tools,omitempty"`
	// Passed through from ChatRequest (its comment says why).
	TopP           *float64        `json:"top_p,omitempty"`
	Stop           []string        `json:"stop,omitempty"`
	Seed           *int64          `json:"seed,omitempty"`
	ResponseFormat json.RawMessage `json:"response_format,omitempty"`
	ToolChoice     json.RawMessage `json:"tool_choice,omitempty"`
	User           string          `json:"user,omitempty"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

type usageJSON struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
}

// chatChunk is one streamed chunk; also decodes a non-streamed completion (message instead of delta)
// and an in-stream error object.
type chatChunk struct {
	Choices []struct {
		Delta struct {
			Content   string          `json:"content"`
			ToolCalls []toolCallDelta `json:"tool_calls"`
		} `json:"delta"`
		Message struct {
			Content   string     `json:"content"`
			ToolCalls []ToolCall `json:"tool_calls"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"` // null leaves it empty
	} `json:"choices"`
	Usage *usageJSON      `json:"usage"`
	Error json.RawMessage `json:"error"`
}

// openChatCompletions is shared by the OpenAI-compatible and Cloudflare providers: they differ only in
// the endpoint, key and extra headers.
func openChatCompletions(ctx context.Context, client *http.Client, drains *drainer, provider, endpoint, key string, header http.Header, req ChatRequest) (ChatStream, error) {
	creq := chatCompletionRequest{
		Model:       req.Model,
		Messages:    req.Messages,
		Stream:      !req.Whole,
		MaxTokens:   req.MaxTokens,
		Temperature: req.Temperature,
		Tools:       req.Tools,
		TopP:        req.TopP, Stop: req.Stop, Seed: req.Seed, ResponseFormat: req.ResponseFormat,
		ToolChoice: req.ToolChoice, User: req.User,
	}
	accept := "application/json"
	if creq.Stream {
		creq.StreamOptions = &streamOptions{IncludeUsage: true}
		accept = "text/event-stream"
	}
	body, err := json.Marshal(creq)
	if err != nil {
		return nil, fmt.Errorf("encode chat request: %w", err)
	}
	// The stream owns its own cancel so that Close aborts the HTTP request even when the caller's
	// context lives on. The request does not inherit the caller's cancellation but is passed it
	// (AfterFunc): a reply that ended may outlive its caller while its connection is drained
	// for reuse (Close, drain.go).
	sctx, cancelCause := context.WithCancelCause(context.WithoutCancel(ctx))
	unlink := context.AfterFunc(ctx, func() { cancelCause(context.Cause(ctx)) })
	cancel := func() {
		unlink()
		cancelCause(context.Canceled)
	}
	hreq, err := http.NewRequestWithContext(sctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		cancel()
		return nil, fmt.Errorf("provider %s: build request: %w", provider, err)
	}
	for k, vs := range header {
		hreq.Header[k] = vs
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", accept)
	setTraceHeader(ctx, hreq.Header, req.Meta.TraceID) // trace.go
	if key != "" {
		hreq.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := client.Do(hreq)
	if err != nil {
		cancel()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("provider %s, model %s: %w", provider, req.Model, context.Cause(ctx))
		}
		// *url.Error names the URL, never the Authorization header.
		return nil, &UpstreamError{Provider: provider, Model: req.Model, Retryable: true,
			Message: "connect: " + trimMessage(err.Error()), cause: err}
	}
	if resp.StatusCode != http.StatusOK {
		defer cancel()
		defer resp.Body.Close()
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return nil, &UpstreamError{Provider: provider, Model: req.Model, Status: resp.StatusCode,
			Retryable: retryableStatus(resp.StatusCode), Message: errorBodyMessage(resp.StatusCode, raw)}
	}
	s := &openAIStream{
		provider: provider,
		model:    req.Model,
		ctx:      ctx,
		cancel:   cancel,
		unlink:   unlink,
		drainer:  drains,
		body:     resp.Body,
		inEst:    estimateMessages(req.Messages),
	}
	// Whatever was asked, the answer's type says what came: a server that ignores stream: true
	// answers with one completion (served as one delta), one that ignores stream: false streams.
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt == "application/json" {
		s.whole = true
	} else {
		s.sse = NewSSEReader(withStreamWait(ctx, resp.Body)) // streamwait.go
	}
	return s, nil
}

// openAIStream reads the deltas of one streamed completion.
type openAIStream struct {
	provider, model string
	ctx             context.Context
	cancel          func()
	unlink          func() bool // stops passing the caller's cancellation; false once it was passed
	drainer         *drainer
	body            io.ReadCloser
	sse             *SSEReader
	whole           bool // the body is one JSON completion, not SSE

	inEst    int
	outRunes int
	usage    *usageJSON
	finished bool // a finish_reason was seen
	done     bool // io.EOF was returned
	bodyEOF  bool // the body was read to its end
	closed   sync.Once
	chunk    chatChunk
	calls    toolCallAccumulator
}

func (s *openAIStream) Model() string { return s.model }

func (s *openAIStream) Usage() Usage {
	if s.usage != nil {
		return Usage{TokensIn: s.usage.PromptTokens, TokensOut: s.usage.CompletionTokens}
	}
	return Usage{TokensIn: s.inEst, TokensOut: runesToTokens(s.outRunes), Estimated: true}
}

// Close aborts the request, unless the reply ended with [DONE] before the body did: then the
// body's end is read in the background so the connection is reused (drain.go).
func (s *openAIStream) Close() error {
	s.closed.Do(func() {
		if s.done && !s.bodyEOF && !s.whole && s.unlink() {
			s.drainer.finish(s.body, s.cancel)
			return
		}
		s.cancel()
		s.body.Close()
	})
	return nil
}

func (s *openAIStream) Next(ctx context.Context) (string, error) {
	if s.done {
		return "", io.EOF
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if s.whole {
		return s.nextWhole()
	}
	for {
		ev, err := s.sse.Next()
		if errors.Is(err, io.EOF) {
			s.bodyEOF = true
			if s.finished || s.usage != nil {
				s.done = true
				return "", io.EOF // ended without [DONE], but after a final chunk: complete
			}
			return "", s.upstream(0, true, "stream ended before the reply was complete", nil)
		}
		if err != nil {
			return "", s.readError(err)
		}
		if ev.Type == "error" {
			return "", s.upstream(0, false, inStreamErrorMessage(ev.Data), nil)
		}
		if bytes.Equal(ev.Data, []byte("[DONE]")) {
			s.done = true
			return "", io.EOF
		}
		// Reuse the chunk's slices across events. Unmarshal keeps fields that the new chunk omits
		// (e.g. "delta":{}), so reused elements are zeroed first.
		clear(s.chunk.Choices[:cap(s.chunk.Choices)])
		s.chunk.Choices = s.chunk.Choices[:0]
		s.chunk.Usage = nil
		s.chunk.Error = s.chunk.Error[:0]
		if err := json.Unmarshal(ev.Data, &s.chunk); err != nil {
			return "", s.upstream(0, false, "malformed stream chunk: "+trimMessage(err.Error()), err)
		}
		if len(s.chunk.Error) > 0 && string(s.chunk.Error) != "null" {
			return "", s.upstream(0, false, inStreamErrorMessage(s.chunk.Error), nil)
		}
		if s.chunk.Usage != nil {
			u := *s.chunk.Usage
			s.usage = &u
		}
		var delta string
		for i := range s.chunk.Choices {
			c := &s.chunk.Choices[i]
			if c.FinishReason != "" {
				s.finished = true
			}
			if i == 0 {
				delta = c.Delta.Content
				s.outRunes += s.calls.add(c.Delta.ToolCalls)
			}
		}
		if delta != "" {
			s.outRunes += utf8.RuneCountInString(delta)
			return delta, nil
		}
	}
}

func (s *openAIStream) nextWhole() (string, error) {
	s.done = true
	raw, err := io.ReadAll(io.LimitReader(s.body, 16<<20))
	if err != nil {
		s.done = false
		return "", s.readError(err)
	}
	var c chatChunk
	if err := json.Unmarshal(raw, &c); err != nil {
		return "", s.upstream(0, false, "malformed completion: "+trimMessage(err.Error()), err)
	}
	if m := inStreamErrorMessage(c.Error); m != "" {
		return "", s.upstream(0, false, m, nil)
	}
	s.usage = c.Usage
	if len(c.Choices) > 0 {
		s.calls.calls = c.Choices[0].Message.ToolCalls
	}
	if len(c.Choices) == 0 || c.Choices[0].Message.Content == "" {
		return "", io.EOF
	}
	text := c.Choices[0].Message.Content
	s.outRunes = utf8.RuneCountInString(text)
	return text, nil
}

// readError classifies a failed body read: the caller's cancellation is returned as such (not worth a
// retry), anything else is a dropped stream.
func (s *openAIStream) readError(err error) error {
	if s.ctx.Err() != nil {
		return fmt.Errorf("provider %s, model %s: %w", s.provider, s.model, context.Cause(s.ctx))
	}
	return s.upstream(0, true, "stream interrupted: "+trimMessage(err.Error()), err)
}

func (s *openAIStream) upstream(status int, retryable bool, msg string, cause error) error {
	return &UpstreamError{Provider: s.provider, Model: s.model, Status: status, Retryable: retryable,
		Message: msg, cause: cause}
}

// errorBodyMessage extracts the message of the error bodies compatible servers send: OpenAI and vLLM
// {"error":{"message"}}, Ollama {"error":"..."}, Cloudflare {"errors":[{"message"}]}, others
// {"message"} or {"detail"}; else the trimmed body, else the status text.
func errorBodyMessage(status int, raw []byte) string {
	var body struct {
		Error  json.RawMessage `json:"error"`
		Errors []struct {
			Message string `json:"message"`
		} `json:"errors"`
		Message string `json:"message"`
		Detail  string `json:"detail"`
	}
	if json.Unmarshal(raw, &body) == nil {
		if m := inStreamErrorMessage(body.Error); m != "" && len(body.Error) > 0 {
			return m
		}
		for _, e := range body.Errors {
			if e.Message != "" {
				return trimMessage(e.Message)
			}
		}
		if body.Message != "" {
			return trimMessage(body.Message)
		}
		if body.Detail != "" {
			return trimMessage(body.Detail)
		}
	}
	if m := trimMessage(string(raw)); m != "" {
		return m
	}
	return http.StatusText(status)
}

// inStreamErrorMessage reads an error value that is either an object with "message" or a string.
func inStreamErrorMessage(raw []byte) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return trimMessage(s)
	}
	var obj struct {
		Message string `json:"message"`
		Error   string `json:"error"`
	}
	if json.Unmarshal(raw, &obj) == nil {
		if obj.Message != "" {
			return trimMessage(obj.Message)
		}
		if obj.Error != "" {
			return trimMessage(obj.Error)
		}
	}
	return trimMessage(string(raw))
}

// trimMessage keeps an upstream message to one bounded, valid UTF-8 line.
func trimMessage(s string) string {
	s = strings.Join(strings.Fields(strings.ToValidUTF8(s, "\uFFFD")), " ")
	if len(s) <= maxErrorMessage {
		return s
	}
	cut := maxErrorMessage
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
