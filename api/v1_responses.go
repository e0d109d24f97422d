package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/crispy-enigma/crispy/actors"
	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/wire/openai"
)

// The Responses API keeps conversations server-side in chat sessions, the ChatSession grains /chat
// uses: each stored turn is appended durably (fenced against a duplicate activation, kept through a
// node kill) before the response is answered, and retention applies as to any session.
//
// A response ID names where its turn is stored: resp_<session>_<nonce>. A turn that continues from
// the session's newest response (previous_response_id) extends that session, conditionally
// (actors.Client.AppendAfterResponse): if another turn got there first, or previous_response_id is
// an older response (a branch), the turn goes to a new session "x<nonce>" that starts with a copy
// of the history up to previous_response_id. A lookup tries the named session, then x<nonce>; a new
// conversation is stored in x<nonce> straight away.

var responseIDPattern = regexp.MustCompile(`^resp_([A-Za-z0-9-]{1,100})_([0-9a-f]{24})$`)

// responseRef is a parsed response ID.
type responseRef struct{ id, session, nonce string }

func parseResponseID(id string) (responseRef, bool) {
	m := responseIDPattern.FindStringSubmatch(id)
	if m == nil {
		return responseRef{}, false
	}
	return responseRef{id: id, session: m[1], nonce: m[2]}, true
}

// branchSession is the session a response is stored in when it cannot extend the one it names.
func (r responseRef) branchSession() string { return "x" + r.nonce }

func newNonce() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// storedTurn is a response found in its session: the session's messages up to and including it.
type storedTurn struct {
	session string
	msgs    []actors.Message // history up to and including the response's message
	newest  bool             // no later response in the session
}

// findResponse loads the turn of a stored response; ok=false when it is not stored (never was,
// store:false, deleted, or dropped by retention).
func (s *Server) findResponse(ctx context.Context, t *config.TenantConfig, ref responseRef) (storedTurn, bool, error) {
	for _, session := range []string{ref.session, ref.branchSession()} {
		msgs, err := s.openai.Sessions.History(ctx, t.TenantID, session, retentionOf(t), 0, time.Time{})
		if err != nil {
			return storedTurn{}, false, Wrap(http.StatusServiceUnavailable, CodeUnavailable, "session store unavailable, retry shortly", err)
		}
		for i := len(msgs) - 1; i >= 0; i-- {
			if msgs[i].ResponseID != ref.id {
				continue
			}
			newest := true
			for _, later := range msgs[i+1:] {
				if later.ResponseID != "" {
					newest = false
				}
			}
			return storedTurn{session: session, msgs: msgs[:i+1], newest: newest}, true, nil
		}
		if ref.session == ref.branchSession() {
			break
		}
	}
	return storedTurn{}, false, nil
}

func errResponseNotFound(id, param string) *Error {
	e := NewError(http.StatusNotFound, CodeNotFound, "Response with id '"+truncateForMessage(id)+"' not found.")
	if param != "" {
		e.Err = openai.Invalid(param, "%s", e.Message) // names the parameter in OpenAI's error
	}
	return e
}

// toGatewayMessages turns stored messages into the messages sent to a model.
func toGatewayMessages(msgs []actors.Message) []gateway.Message {
	out := make([]gateway.Message, 0, len(msgs))
	for _, m := range msgs {
		g := gateway.Message{Role: m.Role, Content: m.Content, ToolCallID: m.ToolCallID}
		if m.ToolCallsJSON != "" {
			_ = json.Unmarshal([]byte(m.ToolCallsJSON), &g.ToolCalls)
		}
		out = append(out, g)
	}
	return out
}

// inputMessages turns the request's input items into stored messages (the model sees them through
// toGatewayMessages).
func inputMessages(items []openai.InputItem) ([]actors.Message, error) {
	out := make([]actors.Message, 0, len(items))
	for i, it := range items {
		switch it.Type {
		case "message":
			role, ok := v1Roles[it.Role]
			if !ok || role == "tool" {
				return nil, paramError(openai.Invalid(fmt.Sprintf("input[%d].role", i), "must be one of user, assistant, system, developer"))
			}
			out = append(out, actors.Message{Role: role, Content: it.Text, TokenCount: gateway.EstimateTokens(it.Text)})
		case "function_call":
			calls, _ := json.Marshal([]gateway.ToolCall{{ID: it.CallID, Type: "function",
				Function: gateway.FunctionCall{Name: it.Name, Arguments: it.Arguments}}})
			out = append(out, actors.Message{Role: "assistant", ToolCallsJSON: string(calls)})
		case "function_call_output":
			if it.CallID == "" {
				return nil, paramError(openai.Missing(fmt.Sprintf("input[%d].call_id", i)))
			}
			out = append(out, actors.Message{Role: "tool", Content: it.Text, ToolCallID: it.CallID})
		}
	}
	return out, nil
}

// responseTools turns the Responses API's flat function tools into chat tools.
func responseTools(tools []openai.ResponseTool, choice json.RawMessage) ([]gateway.ToolSpec, error) {
	wire := make([]openai.Tool, len(tools))
	for i, t := range tools {
		wire[i] = openai.Tool{Type: t.Type, Function: openai.Function{Name: t.Name, Description: t.Description, Parameters: t.Parameters}}
	}
	return toGatewayTools(wire, choice)
}

// v1Turn is one Responses API turn being answered.
type v1Turn struct {
	req      *openai.ResponseRequest
	ref      responseRef // the new response
	prior    storedTurn  // the turn continued from (empty without previous_response_id)
	input    []actors.Message
	messages []gateway.Message // what the model is sent
}

func (s *Server) postResponse(c echo.Context) error {
	var req openai.ResponseRequest
	if err := v1Decode(c, &req); err != nil {
		return err
	}
	if err := checkResponseRequest(&req); err != nil {
		return err
	}
	// Rate limit and model rule before the conversation is loaded.
	adm, err := s.admitV1(c, req.User, req.Model)
	if err != nil {
		return err
	}
	turn, greq, err := s.prepareTurn(c, &req)
	if err != nil {
		return err
	}
	greq.Whole = !req.Stream
	var push streamPusher
	call, err := s.openV1Chat(push.attach(c.Request().Context(), req.Stream), c, adm, greq, "/v1/responses", turn.ref.session, !req.Stream && req.PreviousResponseID == "")
	if err != nil {
		return err
	}
	defer call.stream.Close()
	if req.Stream {
		return s.streamResponse(c, turn, call, &push)
	}
	reply, err := drainReply(c.Request().Context(), call.stream)
	if err != nil {
		return Wrap(http.StatusBadGateway, CodeAIError, modelErrorMessage(call.stream.Model(), err), err)
	}
	calls := gateway.ToolCallsOf(call.stream)
	if err := s.storeTurn(c.Request().Context(), tenantOf(c), turn, call, reply, calls); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, turn.response(call, reply, calls, "completed"))
}

// checkResponseRequest refuses what no conversation state can fix, naming the parameter.
func checkResponseRequest(req *openai.ResponseRequest) error {
	switch {
	case len(req.Input.Items) == 0:
		return paramError(openai.Missing("input"))
	case len(req.Input.Items) > maxV1Messages:
		return paramError(openai.Invalid("input", "must hold at most %d items", maxV1Messages))
	case len(req.Conversation) > 0 && string(req.Conversation) != "null":
		return paramError(openai.Unsupported("conversation", "use previous_response_id"))
	case req.MaxOutputTokens != nil && (*req.MaxOutputTokens < 1 || *req.MaxOutputTokens > maxOutputLimit):
		return paramError(openai.Invalid("max_output_tokens", "must be between 1 and %d", maxOutputLimit))
	case len(req.User) > maxUserIDLen:
		return paramError(openai.Invalid("user", "must be at most %d characters", maxUserIDLen))
	}
	return checkSampling(req.Temperature, req.TopP)
}

// prepareTurn loads the conversation a request continues and builds the model request.
func (s *Server) prepareTurn(c echo.Context, req *openai.ResponseRequest) (*v1Turn, gateway.ChatRequest, error) {
	var greq gateway.ChatRequest
	tools, err := responseTools(req.Tools, req.ToolChoice)
	if err != nil {
		return nil, greq, err
	}
	input, err := inputMessages(req.Input.Items)
	if err != nil {
		return nil, greq, err
	}
	t := tenantOf(c)
	turn := &v1Turn{req: req, input: input}
	nonce := newNonce()
	turn.ref = responseRef{session: "x" + nonce, nonce: nonce}
	if req.PreviousResponseID != "" {
		prev, ok := parseResponseID(req.PreviousResponseID)
		if !ok {
			return nil, greq, errResponseNotFound(req.PreviousResponseID, "previous_response_id")
		}
		prior, found, err := s.findResponse(c.Request().Context(), t, prev)
		if err != nil {
			return nil, greq, err
		}
		if !found {
			return nil, greq, errResponseNotFound(req.PreviousResponseID, "previous_response_id")
		}
		turn.prior = prior
		if prior.newest {
			turn.ref.session = prior.session
		}
	}
	turn.ref.id = "resp_" + turn.ref.session + "_" + nonce
	state(c).sessionID = turn.ref.session
	if req.Instructions != "" {
		turn.messages = append(turn.messages, gateway.Message{Role: "system", Content: req.Instructions})
	}
	turn.messages = append(turn.messages, toGatewayMessages(turn.prior.msgs)...)
	turn.messages = append(turn.messages, toGatewayMessages(input)...)
	maxOut := 0
	if req.MaxOutputTokens != nil {
		maxOut = *req.MaxOutputTokens
	}
	greq = gateway.ChatRequest{Messages: turn.messages, MaxTokens: maxOut, Temperature: req.Temperature, TopP: req.TopP,
		Tools: tools, User: req.User}
	if len(tools) > 0 {
		greq.ToolChoice = req.ToolChoice
	}
	return turn, greq, nil
}

// storeTurn appends the input and the answer to the conversation before the response is answered
// (store:false keeps nothing). A new conversation starts its session; a turn after the session's
// newest response extends that session, unless another turn got there first, in which case (as
// for a turn after an older response) it starts its branch session with the history it continues.
func (s *Server) storeTurn(ctx context.Context, t *config.TenantConfig, turn *v1Turn, call *v1Call, reply string, calls []gateway.ToolCall) error {
	if !turn.req.Stored() {
		return nil
	}
	u := call.stream.Usage()
	answer := actors.Message{Role: "assistant", Content: reply, TokenCount: u.TokensOut, ResponseID: turn.ref.id,
		Model: call.stream.Model(), TokensIn: u.TokensIn}
	if len(calls) > 0 {
		b, _ := json.Marshal(calls)
		answer.ToolCallsJSON = string(b)
	}
	own := append(append(make([]actors.Message, 0, len(turn.input)+1), turn.input...), answer)
	branch := func() []actors.Message { return append(append([]actors.Message(nil), turn.prior.msgs...), own...) }
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	ret := retentionOf(t)
	var err error
	switch {
	case turn.prior.session == "":
		err = s.openai.Sessions.AppendAfterResponse(ctx, t.TenantID, turn.ref.session, own, ret, "")
	case turn.prior.session == turn.ref.session:
		after := turn.prior.msgs[len(turn.prior.msgs)-1].ResponseID
		err = s.openai.Sessions.AppendAfterResponse(ctx, t.TenantID, turn.ref.session, own, ret, after)
		if errors.Is(err, actors.ErrResponseConflict) {
			err = s.openai.Sessions.AppendAfterResponse(ctx, t.TenantID, turn.ref.branchSession(), branch(), ret, "")
		}
	default:
		err = s.openai.Sessions.AppendAfterResponse(ctx, t.TenantID, turn.ref.session, branch(), ret, "")
	}
	if err != nil {
		return Wrap(http.StatusServiceUnavailable, CodeUnavailable, "the response could not be stored, retry", err)
	}
	return nil
}

// response is the Responses API object of a turn.
func (turn *v1Turn) response(call *v1Call, reply string, calls []gateway.ToolCall, status string) *openai.Response {
	req := turn.req
	r := newResponse(turn.ref.id, call.stream.Model(), call.created, status)
	r.Store, r.Temperature, r.TopP, r.MaxOutputTokens = req.Stored(), req.Temperature, req.TopP, req.MaxOutputTokens
	if req.Instructions != "" {
		r.Instructions = &req.Instructions
	}
	if req.PreviousResponseID != "" {
		r.PreviousResponseID = &req.PreviousResponseID
	}
	if req.User != "" {
		r.User = &req.User
	}
	if req.Metadata != nil {
		r.Metadata = req.Metadata
	}
	if req.Tools != nil {
		r.Tools = req.Tools
	}
	if status == "in_progress" {
		return r
	}
	r.Output = outputItems(turn.ref.nonce, reply, calls)
	u := call.usage(turn.messages, reply)
	r.Usage = openai.NewResponseUsage(u.PromptTokens, u.CompletionTokens, call.cached)
	if call.finishReason(calls) == openai.FinishLength {
		r.Status, r.IncompleteDetails = "incomplete", &openai.IncompleteDetails{Reason: "max_output_tokens"}
	}
	return r
}

func newResponse(id, model string, created int64, status string) *openai.Response {
	r := &openai.Response{ID: id, Object: openai.ObjectResponse, CreatedAt: created, Status: status, Model: model,
		Output: []openai.OutputItem{}, ParallelToolCalls: true, ToolChoice: "auto", Tools: []openai.ResponseTool{},
		Truncation: "disabled", Metadata: map[string]string{}}
	r.Text.Format.Type = "text"
	return r
}

// outputItems is a response's output: the message (when there is text or no tool call) and a
// function_call item per tool call.
func outputItems(nonce, reply string, calls []gateway.ToolCall) []openai.OutputItem {
	var out []openai.OutputItem
	if reply != "" || len(calls) == 0 {
		out = append(out, messageItem(nonce, reply, "completed"))
	}
	for i, tc := range calls {
		out = append(out, openai.OutputItem{Type: "function_call", ID: "fc_" + nonce + "_" + strconv.Itoa(i), Status: "completed",
			CallID: tc.ID, Name: tc.Function.Name, Arguments: tc.Function.Arguments})
	}
	return out
}

func messageItem(nonce, text, status string) openai.OutputItem {
	it := openai.OutputItem{Type: "message", ID: "msg_" + nonce, Status: status, Role: "assistant", Content: []openai.OutputContent{}}
	if status == "completed" {
		it.Content = append(it.Content, openai.OutputContent{Type: "output_text", Text: text, Annotations: []any{}})
	}
	return it
}

// streamResponse writes the Responses API's events: created, in_progress, the message item and its
// text part, a delta per token, the done events, then completed — after the turn is stored, so a
// client that saw response.completed can continue from it at once.
func (s *Server) streamResponse(c echo.Context, turn *v1Turn, call *v1Call, push *streamPusher) error {
	ctx := c.Request().Context()
	openai.SetSSEHeaders(c.Response().Header())
	c.Response().WriteHeader(http.StatusOK)
	w := openai.NewSSEWriter(c.Response())
	// Events go out when the model stream waits for the upstream (push): the four opening ones with
	// the first deltas; the closing ones with response.completed (or failed) once the turn is stored.
	push.hold(w)
	seq := 0
	emit := func(ev openai.ResponseStreamEvent) error {
		ev.SequenceNumber = seq
		seq++
		return w.Event(ev.Type, ev)
	}
	zero := 0
	itemID := "msg_" + turn.ref.nonce
	inProgress := turn.response(call, "", nil, "in_progress")
	_ = emit(openai.ResponseStreamEvent{Type: "response.created", Response: inProgress})
	_ = emit(openai.ResponseStreamEvent{Type: "response.in_progress", Response: inProgress})
	started := messageItem(turn.ref.nonce, "", "in_progress")
	_ = emit(openai.ResponseStreamEvent{Type: "response.output_item.added", OutputIndex: &zero, Item: &started})
	_ = emit(openai.ResponseStreamEvent{Type: "response.content_part.added", ItemID: itemID, OutputIndex: &zero, ContentIndex: &zero,
		Part: &openai.OutputContent{Type: "output_text", Annotations: []any{}}})
	text, complete := relayTokens(ctx, call.stream, func(tok string) error {
		return emit(openai.ResponseStreamEvent{Type: "response.output_text.delta", ItemID: itemID, OutputIndex: &zero,
			ContentIndex: &zero, Delta: &tok, Logprobs: []any{}})
	}, func(err error) {
		failed := turn.response(call, "", nil, "failed")
		failed.Error = &openai.ResponseError{Code: "server_error", Message: modelErrorMessage(call.stream.Model(), err)}
		_ = emit(openai.ResponseStreamEvent{Type: "response.failed", Response: failed})
	})
	if !complete {
		return nil
	}
	calls := gateway.ToolCallsOf(call.stream)
	// The deltas go before the store's wait; the closing events stay held (push.hold) for the
	// handler's return to send with the response's end.
	if w.Push() != nil {
		return nil
	}
	done := messageItem(turn.ref.nonce, text, "completed")
	_ = emit(openai.ResponseStreamEvent{Type: "response.output_text.done", ItemID: itemID, OutputIndex: &zero, ContentIndex: &zero,
		Text: &text, Logprobs: []any{}})
	_ = emit(openai.ResponseStreamEvent{Type: "response.content_part.done", ItemID: itemID, OutputIndex: &zero, ContentIndex: &zero,
		Part: &done.Content[0]})
	_ = emit(openai.ResponseStreamEvent{Type: "response.output_item.done", OutputIndex: &zero, Item: &done})
	final := turn.response(call, text, calls, "completed")
	for i := range final.Output {
		if final.Output[i].Type == "function_call" {
			idx := i
			_ = emit(openai.ResponseStreamEvent{Type: "response.output_item.added", OutputIndex: &idx, Item: &final.Output[i]})
			_ = emit(openai.ResponseStreamEvent{Type: "response.output_item.done", OutputIndex: &idx, Item: &final.Output[i]})
		}
	}
	if err := s.storeTurn(ctx, tenantOf(c), turn, call, text, calls); err != nil {
		final.Status = "failed"
		final.Error = &openai.ResponseError{Code: "server_error", Message: "the response could not be stored, retry"}
		_ = emit(openai.ResponseStreamEvent{Type: "response.failed", Response: final})
		return nil
	}
	_ = emit(openai.ResponseStreamEvent{Type: "response.completed", Response: final})
	return nil
}

// getResponse answers a stored response from its session.
func (s *Server) getResponse(c echo.Context) error {
	id := c.Param("id")
	ref, ok := parseResponseID(id)
	if !ok {
		return errResponseNotFound(id, "")
	}
	turn, found, err := s.findResponse(c.Request().Context(), tenantOf(c), ref)
	if err != nil {
		return err
	}
	if !found {
		return errResponseNotFound(id, "")
	}
	state(c).sessionID = turn.session
	m := turn.msgs[len(turn.msgs)-1]
	r := newResponse(id, m.Model, m.Timestamp.Unix(), "completed")
	r.Store = true
	for i := len(turn.msgs) - 2; i >= 0; i-- {
		if prev := turn.msgs[i].ResponseID; prev != "" {
			r.PreviousResponseID = &prev
			break
		}
	}
	var calls []gateway.ToolCall
	if m.ToolCallsJSON != "" {
		_ = json.Unmarshal([]byte(m.ToolCallsJSON), &calls)
	}
	r.Output = outputItems(ref.nonce, m.Content, calls)
	r.Usage = openai.NewResponseUsage(m.TokensIn, m.TokenCount, false)
	return c.JSON(http.StatusOK, r)
}
