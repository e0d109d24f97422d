package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/wire/openai"
)

// Limits of the OpenAI-compatible chat API (OpenAI's own, where it has one).
const (
	maxV1Messages  = 2048
	maxV1Tools     = 128
	maxV1Stops     = 4
	maxOutputLimit = 32768 // as POST /chat's maxTokens
)

var functionNamePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// v1Roles maps OpenAI's message roles onto the gateway's; "developer" is OpenAI's newer name for
// "system".
var v1Roles = map[string]string{"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool"}

// toGatewayChat validates an OpenAI chat completion request and turns it into the gateway's
// request (model and metadata are the caller's). Every refusal names the parameter.
func toGatewayChat(req *openai.ChatCompletionRequest) (gateway.ChatRequest, error) {
	var out gateway.ChatRequest
	switch n := len(req.Messages); {
	case n == 0:
		return out, paramError(openai.Invalid("messages", "must contain at least one message"))
	case n > maxV1Messages:
		return out, paramError(openai.Invalid("messages", "must contain at most %d messages", maxV1Messages))
	}
	if err := checkSampling(req.Temperature, req.TopP); err != nil {
		return out, err
	}
	switch {
	case req.N != nil && *req.N != 1:
		return out, paramError(openai.Unsupported("n", "only n=1 is supported"))
	case req.MaxCompletionTokens != nil && (*req.MaxCompletionTokens < 1 || *req.MaxCompletionTokens > maxOutputLimit):
		return out, paramError(openai.Invalid("max_completion_tokens", "must be between 1 and %d", maxOutputLimit))
	case req.MaxTokens != nil && (*req.MaxTokens < 1 || *req.MaxTokens > maxOutputLimit):
		return out, paramError(openai.Invalid("max_tokens", "must be between 1 and %d", maxOutputLimit))
	case len(req.Stop) > maxV1Stops:
		return out, paramError(openai.Invalid("stop", "must hold at most %d sequences", maxV1Stops))
	case req.StreamOptions != nil && !req.Stream:
		return out, paramError(openai.Invalid("stream_options", "is only allowed when stream is true"))
	case len(req.User) > maxUserIDLen:
		return out, paramError(openai.Invalid("user", "must be at most %d characters", maxUserIDLen))
	}
	if err := checkResponseFormat(req.ResponseFormat); err != nil {
		return out, err
	}
	tools, err := toGatewayTools(req.Tools, req.ToolChoice)
	if err != nil {
		return out, err
	}
	msgs := make([]gateway.Message, len(req.Messages))
	for i, m := range req.Messages {
		role, ok := v1Roles[m.Role]
		if !ok {
			return out, paramError(openai.Invalid(fmt.Sprintf("messages[%d].role", i), "must be one of system, developer, user, assistant, tool"))
		}
		if role == "tool" && m.ToolCallID == "" {
			return out, paramError(openai.Missing(fmt.Sprintf("messages[%d].tool_call_id", i)))
		}
		msgs[i] = gateway.Message{Role: role, Content: m.Text(), ToolCallID: m.ToolCallID}
		for _, tc := range m.ToolCalls {
			msgs[i].ToolCalls = append(msgs[i].ToolCalls, gateway.ToolCall{ID: tc.ID, Type: cmpOr(tc.Type, "function"),
				Function: gateway.FunctionCall{Name: tc.Function.Name, Arguments: tc.Function.Arguments}})
		}
	}
	out = gateway.ChatRequest{
		Messages: msgs, MaxTokens: req.OutputLimit(), Temperature: req.Temperature, TopP: req.TopP,
		Stop: req.Stop, Seed: req.Seed, ResponseFormat: req.ResponseFormat, Tools: tools, User: req.User,
	}
	if len(tools) > 0 {
		out.ToolChoice = req.ToolChoice
	}
	return out, nil
}

func checkSampling(temperature, topP *float64) error {
	if temperature != nil && (*temperature < 0 || *temperature > 2) {
		return paramError(openai.Invalid("temperature", "must be between 0 and 2"))
	}
	if topP != nil && (*topP < 0 || *topP > 1) {
		return paramError(openai.Invalid("top_p", "must be between 0 and 1"))
	}
	return nil
}

// checkResponseFormat accepts OpenAI's three forms; the model decides what it can honour.
func checkResponseFormat(raw json.RawMessage) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var rf struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(raw, &rf); err != nil {
		return paramError(openai.Invalid("response_format", "must be an object with a type"))
	}
	switch rf.Type {
	case "text", "json_object", "json_schema":
		return nil
	}
	return paramError(openai.Invalid("response_format.type", "must be one of text, json_object, json_schema"))
}

// toGatewayTools checks the function tools offered and tool_choice.
func toGatewayTools(tools []openai.Tool, choice json.RawMessage) ([]gateway.ToolSpec, error) {
	if len(tools) > maxV1Tools {
		return nil, paramError(openai.Invalid("tools", "must hold at most %d tools", maxV1Tools))
	}
	out := make([]gateway.ToolSpec, 0, len(tools))
	for i, t := range tools {
		if t.Type != "function" {
			return nil, paramError(openai.Unsupported(fmt.Sprintf("tools[%d].type", i), "only function tools are supported"))
		}
		if !functionNamePattern.MatchString(t.Function.Name) {
			return nil, paramError(openai.Invalid(fmt.Sprintf("tools[%d].function.name", i), "must match ^[a-zA-Z0-9_-]{1,64}$"))
		}
		out = append(out, gateway.ToolSpec{Type: "function", Function: gateway.FunctionSpec{
			Name: t.Function.Name, Description: t.Function.Description, Parameters: t.Function.Parameters}})
	}
	if len(choice) > 0 && string(choice) != "null" {
		var s string
		if json.Unmarshal(choice, &s) == nil {
			if s != "none" && s != "auto" && s != "required" {
				return nil, paramError(openai.Invalid("tool_choice", "must be none, auto, required or a function"))
			}
		} else {
			var obj struct {
				Type     string `json:"type"`
				Function struct {
					Name string `json:"name"`
				} `json:"function"`
			}
			if json.Unmarshal(choice, &obj) != nil || obj.Type != "function" || obj.Function.Name == "" {
				return nil, paramError(openai.Invalid("tool_choice", "must be none, auto, required or a function"))
			}
		}
		if len(out) == 0 && s != "none" && s != "" {
			return nil, paramError(openai.Invalid("tool_choice", "is only allowed when tools are offered"))
		}
	}
	return out, nil
}

// v1Call is one chat model call of the OpenAI-compatible API in flight.
type v1Call struct {
	stream  gateway.ChatStream
	limit   int    // the output cap the client set, 0 = none
	id      string // chatcmpl-…
	created int64
	cached  bool // answered from the response cache
}

// v1Admission is a /v1 request past the rate limit and the model rule.
type v1Admission struct{ primary, fallback string }

// admitV1 runs what every chat model call of /v1 shares with /chat before any work: the rate
// limit, then the model rule (404 for a model no route serves, 403 outside the allow-list, the
// fallback).
func (s *Server) admitV1(c echo.Context, user, model string) (v1Admission, error) {
	if err := s.checkRateLimit(c, user); err != nil {
		return v1Admission{}, err
	}
	primary, fallback, err := s.selectModels(tenantOf(c), model) // metering.go
	return v1Admission{primary: primary, fallback: fallback}, err
}

// openV1Chat calls the metered Router, which reserves the budget, may answer from the response
// cache (whole replies without tools), and records the call in the ledger and metrics when its
// stream ends.
func (s *Server) openV1Chat(ctx context.Context, c echo.Context, adm v1Admission, greq gateway.ChatRequest, route, sessionID string, cacheable bool) (*v1Call, error) {
	greq.Model = adm.primary
	greq.Meta = metaOf(tenantOf(c), traceID(c), route)
	greq.Meta.SessionID, greq.Meta.UserID = sessionID, greq.User
	greq.Meta.AllowCached = cacheable && len(greq.Tools) == 0
	stream, err := s.chat.Models.Open(ctx, greq, adm.fallback)
	if err != nil {
		return nil, s.modelCallError(c.Response().Header(), adm.primary, err)
	}
	setHeader(c.Response().Header(), hdrModelID, stream.Model())
	return &v1Call{stream: stream, limit: greq.MaxTokens, created: s.now().Unix(),
		cached: gateway.CacheStatus(stream) == gateway.CacheHit}, nil
}

// usage is the call's usage in OpenAI's shape. A cached answer reports what it would have cost
// (estimated) with every input token marked cached, since the cache does not keep the counts.
func (v *v1Call) usage(msgs []gateway.Message, reply string) openai.Usage {
	u := v.stream.Usage()
	if v.cached && u.TokensIn == 0 && u.TokensOut == 0 {
		in := 0
		for _, m := range msgs {
			in += gateway.EstimateTokens(m.Content)
		}
		return openai.NewUsage(max(1, in), gateway.EstimateTokens(reply), true)
	}
	return openai.NewUsage(u.TokensIn, u.TokensOut, v.cached)
}

// finishReason is OpenAI's: tool_calls when the model asked for tools, length when it produced as
// many tokens as the client allowed, stop otherwise.
func (v *v1Call) finishReason(calls []gateway.ToolCall) string {
	switch {
	case len(calls) > 0:
		return openai.FinishToolCalls
	case v.limit > 0 && v.stream.Usage().TokensOut >= v.limit:
		return openai.FinishLength
	}
	return openai.FinishStop
}

func toWireToolCalls(calls []gateway.ToolCall, indexed bool) []openai.ToolCall {
	out := make([]openai.ToolCall, len(calls))
	for i, tc := range calls {
		out[i] = openai.ToolCall{ID: tc.ID, Type: cmpOr(tc.Type, "function"),
			Function: openai.FunctionCall{Name: tc.Function.Name, Arguments: tc.Function.Arguments}}
		if indexed {
			out[i].Index = &i
		}
	}
	return out
}

func (s *Server) postChatCompletions(c echo.Context) error {
	var req openai.ChatCompletionRequest
	if err := v1Decode(c, &req); err != nil {
		return err
	}
	greq, err := toGatewayChat(&req)
	if err != nil {
		return err
	}
	adm, err := s.admitV1(c, req.User, req.Model)
	if err != nil {
		return err
	}
	greq.Whole = !req.Stream
	var push streamPusher
	call, err := s.openV1Chat(push.attach(c.Request().Context(), req.Stream), c, adm, greq, "/v1/chat/completions", "", !req.Stream)
	if err != nil {
		return err
	}
	defer call.stream.Close()
	call.id = "chatcmpl-" + strings.ReplaceAll(uuid.NewString(), "-", "")
	if req.Stream {
		return s.streamChatCompletion(c, call, &push, greq.Messages, req.IncludeUsage())
	}
	reply, err := drainReply(c.Request().Context(), call.stream)
	if err != nil {
		return Wrap(http.StatusBadGateway, CodeAIError, modelErrorMessage(call.stream.Model(), err), err)
	}
	calls := gateway.ToolCallsOf(call.stream)
	msg := openai.ChatMessage{Role: "assistant", ToolCalls: toWireToolCalls(calls, false)}
	if reply != "" || len(calls) == 0 {
		msg.Content = &reply
	}
	return c.JSON(http.StatusOK, openai.ChatCompletion{
		ID: call.id, Object: openai.ObjectChatCompletion, Created: call.created, Model: call.stream.Model(),
		Choices: []openai.ChatChoice{{Message: msg, FinishReason: call.finishReason(calls)}},
		Usage:   call.usage(greq.Messages, reply),
	})
}

// relayTokens reads a stream to its end, handing each delta to send. It stops when send fails (the
// client left; closing the stream then cancels the model call) and reports a model failure to fail,
// unless the client left. complete is false when the reply did not end normally.
func relayTokens(ctx context.Context, stream gateway.ChatStream, send func(tok string) error, fail func(error)) (reply string, complete bool) {
	var sb strings.Builder
	for {
		tok, err := stream.Next(ctx)
		if errors.Is(err, io.EOF) {
			return sb.String(), true
		}
		if err != nil {
			if ctx.Err() == nil {
				fail(err)
			}
			return sb.String(), false
		}
		sb.WriteString(tok)
		if send(tok) != nil {
			return sb.String(), false
		}
	}
}

// drainReply reads a whole reply.
func drainReply(ctx context.Context, stream gateway.ChatStream) (string, error) {
	var failure error
	reply, complete := relayTokens(ctx, stream, func(string) error { return nil }, func(err error) { failure = err })
	if !complete {
		return reply, cmpErr(failure, ctx.Err())
	}
	return reply, nil
}

// cmpErr is the first non-nil error.
func cmpErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// streamChatCompletion writes the reply as OpenAI's chunks: the role first, a chunk per delta,
// the tool calls (whole, one delta each), the finish reason, the usage chunk when asked for, and
// `data: [DONE]`. The stream was opened (first token in) before the headers are written, so a
// failure to open still got a real status. A failure after that is an in-band error object, which
// the SDKs raise, and no [DONE]. The chunks are held until the model stream waits for the upstream
// (push, set on the call's context), and the closing ones go out with [DONE].
func (s *Server) streamChatCompletion(c echo.Context, call *v1Call, push *streamPusher, msgs []gateway.Message, includeUsage bool) error {
	ctx := c.Request().Context()
	openai.SetSSEHeaders(c.Response().Header())
	c.Response().WriteHeader(http.StatusOK)
	w := openai.NewSSEWriter(c.Response())
	push.hold(w)
	model := call.stream.Model()
	chunk := func(d openai.ChunkDelta, finish *string) openai.ChatCompletionChunk {
		return openai.ChatCompletionChunk{ID: call.id, Object: openai.ObjectChatCompletionChunk, Created: call.created,
			Model: model, Choices: []openai.ChunkChoice{{Delta: d, FinishReason: finish}}}
	}
	empty := ""
	if w.Data(chunk(openai.ChunkDelta{Role: "assistant", Content: &empty}, nil)) != nil {
		return nil // the client left: closing the stream cancels the model call
	}
	reply, complete := relayTokens(ctx, call.stream, func(tok string) error {
		return w.Data(chunk(openai.ChunkDelta{Content: &tok}, nil))
	}, func(err error) {
		_ = w.Data(openai.NewError(http.StatusBadGateway, CodeAIError, "", modelErrorMessage(model, err)))
	})
	if !complete {
		return nil
	}
	calls := gateway.ToolCallsOf(call.stream)
	if len(calls) > 0 {
		_ = w.Data(chunk(openai.ChunkDelta{ToolCalls: toWireToolCalls(calls, true)}, nil))
	}
	finish := call.finishReason(calls)
	_ = w.Data(chunk(openai.ChunkDelta{}, &finish))
	if includeUsage {
		u := call.usage(msgs, reply)
		_ = w.Data(openai.ChatCompletionChunk{ID: call.id, Object: openai.ObjectChatCompletionChunk, Created: call.created,
			Model: model, Choices: []openai.ChunkChoice{}, Usage: &u})
	}
	_ = w.Done()
	return nil
}
