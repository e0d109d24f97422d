package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"

	"github.com/labstack/echo/v4"

	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/tools"
)

// Tools in POST /chat (docs/api.md "POST /chat" and issue 7), in two forms:
//
//   - Explicit: the body's tool_name + tool_params run the tool first, under the same gate as
//     /tools/execute; its data becomes the system message `[Tool <name> result]: <json>`, placed
//     before the history. Any failure (unknown, invalid, not permitted, crashed, or success:false) is
//     400 tool_error before any model call.
//   - Model-requested: when the tenant sets featureFlags.tools_enabled to true (explicitly: offering
//     tools changes the prompt, and some models refuse requests that carry tools), the model is offered
//     the tools this tenant may run (OpenAI `tools`). When a round ends with tool_calls, the server runs
//     each call under the same gate, appends the assistant turn with its tool_calls and one `role: tool`
//     turn per result (failures included, so the model can recover), and asks again: at most
//     maxToolRounds rounds, after which the model is asked once more without tools. A round whose
//     reply starts with text is the answer: it streams as usual (tool calls after text in the same
//     round are not run). Only the user message and the final reply are stored in the session.
//
// SSE: docs/api.md's rules hold — "Every `data:` line is one JSON object" and the stream "always ends
// with `event: done`". The tool rounds run before the SSE headers are committed (a model failure in any
// round is still a real 502 envelope), so each call and result is reported as a named event after the
// headers and before the first token:
//
//	event: tool_call
//	data: {"id":"call_1","name":"calculate","arguments":"{\"expression\":\"6*7\"}","round":1,"sessionId":"…","traceId":"…"}
//
//	event: tool_result
//	data: {"id":"call_1","name":"calculate","success":true,"data":{…},"durationMs":0,"round":1,"sessionId":"…","traceId":"…"}
//
// `arguments` is the JSON text the model wrote (OpenAI's convention; it may be invalid, and then the
// result says VALIDATION_FAILED). A failed result has "success":false and "error":{"code","message"}
// with the tool's failure code or the dispatch code (TOOL_NOT_FOUND, VALIDATION_FAILED,
// PERMISSION_DENIED, EXECUTION_TIMEOUT, EXECUTION_ERROR). The explicit tool_name form reports its run
// the same way with "round":0 and no id. The done event's usage sums every round. A JSON answer
// ("stream": false) carries the same results as `toolResults`.

// maxToolRounds bounds the model-requested tool rounds of one chat request (issue 7: at most 4).
const maxToolRounds = 4

var toolNamePattern = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// validateChatTool checks the body's tool fields (docs/api.md: tool_name `^[a-z][a-z0-9_]*$` +
// tool_params).
func (s *Server) validateChatTool(req *chatRequest) error {
	switch {
	case s.tools == nil && (req.ToolName != nil || req.ToolParams != nil):
		return errInvalidRequest("tool_name: tools are not available on this server")
	case req.ToolParams != nil && req.ToolName == nil:
		return errInvalidRequest("tool_params: requires tool_name")
	case req.ToolName != nil && (len(*req.ToolName) > 64 || !toolNamePattern.MatchString(*req.ToolName)):
		return errInvalidRequest("tool_name: must match ^[a-z][a-z0-9_]*$ (at most 64 characters)")
	}
	return nil
}

// chatToolEvent is one named SSE event of the tool loop.
type chatToolEvent struct {
	name string
	data any
}

type toolCallFrame struct {
	ID        string `json:"id,omitempty"`
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
	Round     int    `json:"round"`
	SessionID string `json:"sessionId"`
	TraceID   string `json:"traceId"`
}

type toolResultFrame struct {
	ID         string             `json:"id,omitempty"`
	Name       string             `json:"name"`
	Success    bool               `json:"success"`
	Data       any                `json:"data"`
	Error      *tools.ToolFailure `json:"error,omitempty"`
	DurationMs int64              `json:"durationMs"`
	Round      int                `json:"round"`
	SessionID  string             `json:"sessionId"`
	TraceID    string             `json:"traceId"`
}

// toolTurn is the content of a `role: tool` message: what the model learns of one call.
type toolTurn struct {
	Success bool               `json:"success"`
	Data    any                `json:"data,omitempty"`
	Error   *tools.ToolFailure `json:"error,omitempty"`
}

// chatTools is the tool state of one chat request. A nil *chatTools (no tool registry) does nothing.
type chatTools struct {
	s         *Server
	tenant    *config.TenantConfig
	sessionID string
	traceID   string
	userID    string
	prelude   []gateway.Message  // the explicit tool's result message
	specs     []gateway.ToolSpec // offered to the model; empty offers none
	events    []chatToolEvent
}

// startChatTools runs the explicit tool, if any, and prepares the tools offered to the model. It
// returns nil when the server has no tool registry.
func (s *Server) startChatTools(c echo.Context, req *chatRequest, sessionID string) (*chatTools, error) {
	if s.tools == nil {
		return nil, nil
	}
	t := tenantOf(c)
	ct := &chatTools{s: s, tenant: t, sessionID: sessionID, traceID: traceID(c), userID: req.UserID}
	if req.ToolName != nil {
		if err := ct.runExplicit(c.Request().Context(), *req.ToolName, req.ToolParams); err != nil {
			return nil, err
		}
	}
	if t.Flag("tools_enabled") {
		for _, d := range s.tools.Registry.List(t) {
			ct.specs = append(ct.specs, gateway.ToolSpec{Type: "function", Function: gateway.FunctionSpec{
				Name: d.Name, Description: d.Description, Parameters: d.Parameters,
			}})
		}
	}
	return ct, nil
}

func (ct *chatTools) runExplicit(ctx context.Context, name string, params *map[string]any) error {
	var raw json.RawMessage
	if params != nil {
		b, err := json.Marshal(*params)
		if err != nil {
			return errInvalidRequest("tool_params: must be a JSON object")
		}
		raw = b
	}
	frame, turn := ct.execute(ctx, 0, gateway.ToolCall{Function: gateway.FunctionCall{Name: name, Arguments: string(raw)}})
	if !turn.Success {
		why := "the tool failed"
		if frame.Error != nil {
			why = frame.Error.Code + ": " + frame.Error.Message
		}
		return NewError(http.StatusBadRequest, CodeToolError, fmt.Sprintf("tool %s failed: %s", name, why))
	}
	data, err := json.Marshal(turn.Data)
	if err != nil {
		return Wrap(http.StatusBadRequest, CodeToolError, fmt.Sprintf("tool %s returned data that is not JSON", name), err)
	}
	ct.prelude = []gateway.Message{{Role: "system", Content: fmt.Sprintf("[Tool %s result]: %s", name, data)}}
	return nil
}

// execute runs one call through the registry (the same gate and audit as /tools/execute) and records
// its events.
func (ct *chatTools) execute(ctx context.Context, round int, call gateway.ToolCall) (toolResultFrame, toolTurn) {
	name := call.Function.Name
	ct.events = append(ct.events, chatToolEvent{name: "tool_call", data: toolCallFrame{
		ID: call.ID, Name: name, Arguments: call.Function.Arguments, Round: round, SessionID: ct.sessionID, TraceID: ct.traceID,
	}})
	res, terr := ct.s.tools.Registry.Execute(ctx, tools.ExecuteRequest{
		Tenant: ct.tenant, Tool: name, Params: json.RawMessage(call.Function.Arguments),
		RequestID: ct.traceID, UserID: ct.userID,
	})
	ct.s.countTool(ct.tenant.TenantID, name, res, terr)
	frame := toolResultFrame{ID: call.ID, Name: name, Round: round, SessionID: ct.sessionID, TraceID: ct.traceID}
	if terr != nil {
		frame.Error = &tools.ToolFailure{Code: terr.Code, Message: terr.Message}
	} else {
		frame.Success, frame.Data, frame.Error, frame.DurationMs = res.Success, res.Data, res.Error, res.DurationMs
	}
	ct.events = append(ct.events, chatToolEvent{name: "tool_result", data: frame})
	return frame, toolTurn{Success: frame.Success, Data: frame.Data, Error: frame.Error}
}

// offersTools reports whether the model is offered tools (such a reply is never cached).
func (ct *chatTools) offersTools() bool { return ct != nil && len(ct.specs) > 0 }

// messages is the prelude placed before the history: the explicit tool's result.
func (ct *chatTools) messages() []gateway.Message {
	if ct == nil {
		return nil
	}
	return ct.prelude
}

// open opens the reply stream, running the model-requested tool rounds first. Without tools to offer
// it is models.Open. The returned stream's Usage sums every round.
func (ct *chatTools) open(ctx context.Context, models ChatModels, req gateway.ChatRequest, fallback string) (gateway.ChatStream, error) {
	if ct == nil || len(ct.specs) == 0 {
		return models.Open(ctx, req, fallback)
	}
	req.Messages = slices.Clone(req.Messages)
	var prior gateway.Usage
	for round := 1; ; round++ {
		req.Tools = nil
		if round <= maxToolRounds {
			req.Tools = ct.specs
		}
		stream, err := models.Open(ctx, req, fallback)
		if err != nil {
			return nil, err
		}
		tok, err := stream.Next(ctx)
		if err == nil {
			// Text first: this round is the answer, streamed as it arrives.
			return &toolLoopStream{ChatStream: stream, first: tok, pending: true, prior: prior}, nil
		}
		if !errors.Is(err, io.EOF) {
			stream.Close()
			return nil, err
		}
		calls := gateway.ToolCallsOf(stream)
		if len(calls) == 0 || round > maxToolRounds {
			return &toolLoopStream{ChatStream: stream, prior: prior}, nil // an empty answer
		}
		prior = sumUsage(prior, stream.Usage())
		stream.Close()
		req.Messages = append(req.Messages, gateway.Message{Role: "assistant", ToolCalls: calls})
		for _, call := range calls {
			_, turn := ct.execute(ctx, round, call)
			content, err := json.Marshal(turn)
			if err != nil {
				content, _ = json.Marshal(toolTurn{Error: tools.Fail("EXECUTION_ERROR", "the tool's data is not JSON")})
			}
			req.Messages = append(req.Messages, gateway.Message{Role: "tool", ToolCallID: call.ID, Content: string(content)})
		}
	}
}

// writeEvents writes the tool events, in order, at the start of the SSE stream.
func (ct *chatTools) writeEvents(w *sseWriter) {
	if ct == nil {
		return
	}
	for _, ev := range ct.events {
		if w.event(ev.name, ev.data) != nil {
			return // the client left; the stream's own writes will notice too
		}
	}
}

// results are the tool results in order, for the JSON answer (the SSE stream sends them as events).
func (ct *chatTools) results() []toolResultFrame {
	if ct == nil {
		return nil
	}
	var out []toolResultFrame
	for _, ev := range ct.events {
		if f, ok := ev.data.(toolResultFrame); ok {
			out = append(out, f)
		}
	}
	return out
}

func sumUsage(a, b gateway.Usage) gateway.Usage {
	return gateway.Usage{TokensIn: a.TokensIn + b.TokensIn, TokensOut: a.TokensOut + b.TokensOut, Estimated: a.Estimated || b.Estimated}
}

// toolLoopStream is the answering round's stream: it replays the token the loop already read and
// reports usage summed over every round.
type toolLoopStream struct {
	gateway.ChatStream
	first   string
	pending bool
	prior   gateway.Usage
}

func (s *toolLoopStream) Next(ctx context.Context) (string, error) {
	if s.pending {
		s.pending = false
		return s.first, nil
	}
	return s.ChatStream.Next(ctx)
}

func (s *toolLoopStream) Usage() gateway.Usage { return sumUsage(s.prior, s.ChatStream.Usage()) }
