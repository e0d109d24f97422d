package api

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/crispy-enigma/crispy/actors"
	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/gateway"
)

// SessionStore keeps chat history (the ChatSession grains).
type SessionStore interface {
	Append(ctx context.Context, tenantID, sessionID string, msgs []actors.Message, r actors.Retention) error
	// AppendNew is Append for a session ID that was never handed out, so it cannot have messages.
	AppendNew(ctx context.Context, tenantID, sessionID string, msgs []actors.Message, r actors.Retention) error
	History(ctx context.Context, tenantID, sessionID string, r actors.Retention, limit int, before time.Time) ([]actors.Message, error)
	Clear(ctx context.Context, tenantID, sessionID string) error
}

// ChatModels opens a model stream, falling back once while no token has been produced.
type ChatModels interface {
	Open(ctx context.Context, req gateway.ChatRequest, fallbackModel string) (gateway.ChatStream, error)
}

// ChatDeps are the chat routes' dependencies. Models is a Router metered by Deps.Meter: budget,
// response cache, ledger and metrics happen around its calls.
type ChatDeps struct {
	Sessions SessionStore
	Models   ChatModels
}

const (
	maxMessageChars = 10000
	// storeTimeout bounds storing a finished exchange after its client may have left.
	storeTimeout = 10 * time.Second
)

// chatRequest is docs/api.md's POST /chat body. Pointers tell "absent" from "zero".
type chatRequest struct {
	Message    *string         `json:"message"`
	SessionID  *string         `json:"sessionId"`
	Stream     *bool           `json:"stream"`
	ModelID    string          `json:"modelId"`
	UserID     string          `json:"userId"`
	ToolName   *string         `json:"tool_name"`
	ToolParams *map[string]any `json:"tool_params"`
	System     string          `json:"system"`
	MaxTokens  int             `json:"maxTokens"`
}

func (s *Server) chatRoutes(e *echo.Echo) {
	e.POST("/chat", s.postChat)
	e.GET("/chat/:sessionId/history", s.getHistory)
	e.DELETE("/chat/:sessionId", s.deleteSession)
}

func (s *Server) validateChat(req *chatRequest) error {
	limit := maxMessageChars
	if s.env.MaxMessageLength > 0 && s.env.MaxMessageLength < limit {
		limit = s.env.MaxMessageLength
	}
	switch {
	case req.Message == nil:
		return errInvalidRequest("message: required")
	case strings.TrimSpace(*req.Message) == "":
		return errInvalidRequest("message: must not be empty")
	case utf8.RuneCountInString(*req.Message) > limit:
		return errInvalidRequest("message: must be at most %d characters", limit)
	case req.SessionID != nil && !config.ValidSessionID(*req.SessionID):
		return errInvalidRequest("sessionId: must match [A-Za-z0-9_-]{1,128}")
	case len(req.UserID) > maxUserIDLen:
		return errInvalidRequest("userId: must be at most %d characters", maxUserIDLen)
	case len(req.ModelID) > 256:
		return errInvalidRequest("modelId: must be at most 256 characters")
	case req.MaxTokens < 0 || req.MaxTokens > 32768:
		return errInvalidRequest("maxTokens: must be between 1 and 32768")
	case utf8.RuneCountInString(req.System) > maxMessageChars:
		return errInvalidRequest("system: must be at most %d characters", maxMessageChars)
	}
	return s.validateChatTool(req) // chat_tools.go
}

func cmpOr(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

func retentionOf(t *config.TenantConfig) actors.Retention {
	return actors.Retention{
		MaxAge:      time.Duration(t.SessionRetentionDays) * 24 * time.Hour,
		MaxMessages: t.MaxMessagesPerSession,
	}
}

func (s *Server) postChat(c echo.Context) error {
	var req chatRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if err := s.validateChat(&req); err != nil {
		return err
	}
	t := tenantOf(c)
	// A session ID the server makes up here has never been handed out: it has no history to read,
	// and storing its first exchange skips the grain's load (actors.Client.AppendNew).
	sessionID, created := uuid.NewString(), req.SessionID == nil
	if !created {
		sessionID = *req.SessionID
	}
	state(c).sessionID = sessionID

	if err := s.checkRateLimit(c, req.UserID); err != nil {
		return err
	}
	primary, fallback, err := s.selectModels(t, req.ModelID) // metering.go: 403 before any work
	if err != nil {
		return err
	}

	tl, err := s.startChatTools(c, &req, sessionID) // chat_tools.go: runs tool_name first
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	ret := retentionOf(t)
	var history []actors.Message
	if !created {
		if history, err = s.chat.Sessions.History(ctx, t.TenantID, sessionID, ret, 0, time.Time{}); err != nil {
			return Wrap(http.StatusServiceUnavailable, CodeUnavailable, "session store unavailable, retry shortly", err)
		}
	}
	msgs := make([]gateway.Message, 0, len(history)+2)
	if req.System != "" {
		msgs = append(msgs, gateway.Message{Role: "system", Content: req.System})
	}
	msgs = append(msgs, tl.messages()...)
	for _, m := range history {
		msgs = append(msgs, gateway.Message{Role: m.Role, Content: m.Content})
	}
	msgs = append(msgs, gateway.Message{Role: "user", Content: *req.Message})

	streamed := req.Stream == nil || *req.Stream
	started := s.now()
	var push streamPusher
	// The Router's Meter (package metering) checks the budget, may answer from the response cache
	// (a whole reply without tools), and records the call when its stream ends.
	stream, err := tl.open(push.attach(ctx, streamed), s.chat.Models, gateway.ChatRequest{
		Model: primary, Messages: msgs, MaxTokens: req.MaxTokens, Whole: !streamed,
		Meta: gateway.RequestMeta{
			TenantID: t.TenantID, AccountID: t.AccountID, GatewayID: t.AIGatewayID, Tenant: t,
			TraceID: traceID(c), SessionID: sessionID, UserID: req.UserID, Route: "/chat",
			AllowCached: !streamed && !tl.offersTools(),
		},
	}, fallback)
	if err != nil {
		return s.modelCallError(c.Response().Header(), primary, err)
	}
	defer stream.Close()

	ex := exchange{
		tenant: t, sessionID: sessionID, user: *req.Message, started: started, stream: stream, ret: ret,
		tools: tl, traceID: traceID(c), userID: req.UserID, newSession: len(history) == 0, created: created,
	}
	if streamed {
		return s.streamChat(c, &ex, &push)
	}
	return s.jsonChat(c, &ex)
}

// exchange is one user message and the model's reply in flight.
type exchange struct {
	tenant    *config.TenantConfig
	sessionID string
	user      string
	started   time.Time
	stream    gateway.ChatStream
	ret       actors.Retention
	reply     strings.Builder
	tools     *chatTools // tool events to report before the tokens; nil without tools
	traceID   string
	userID    string
	// newSession: the session had no history, so storing this exchange creates it.
	newSession bool
	// created: the server made the session ID up for this request (see postChat).
	created bool
}

// store appends the user message and the complete reply in one grain request, after the reply is
// complete: a cancelled or failed reply is never stored as if complete.
//
// The reply is complete once the model's stream ended, so a client that leaves now must not lose it:
// the store runs detached from the request's cancellation, bounded by storeTimeout.
func (s *Server) store(ctx context.Context, ex *exchange, usage gateway.Usage) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	now := s.now()
	appendMsgs := s.chat.Sessions.Append
	if ex.created {
		appendMsgs = s.chat.Sessions.AppendNew
	}
	return appendMsgs(ctx, ex.tenant.TenantID, ex.sessionID, []actors.Message{
		{Role: "user", Content: ex.user, Timestamp: ex.started, TokenCount: gateway.EstimateTokens(ex.user)},
		// A copy without the builder's spare capacity (up to half of it): the session's activation
		// keeps the message in memory until it passivates.
		{Role: "assistant", Content: strings.Clone(ex.reply.String()), Timestamp: now, TokenCount: usage.TokensOut},
	}, ex.ret)
}

func (s *Server) jsonChat(c echo.Context, ex *exchange) error {
	ctx := c.Request().Context()
	for {
		tok, err := ex.stream.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Wrap(http.StatusBadGateway, CodeAIError, modelErrorMessage(ex.stream.Model(), err), err)
		}
		ex.reply.WriteString(tok)
	}
	u := ex.stream.Usage()
	latency := s.now().Sub(ex.started)
	if err := s.store(ctx, ex, u); err != nil {
		// The model ran: the Meter charged its tokens at the stream's end although the reply is lost.
		return Wrap(http.StatusServiceUnavailable, CodeUnavailable, "the reply could not be stored, retry", err)
	}
	h := c.Response().Header()
	if cs := gateway.CacheStatus(ex.stream); cs != "" {
		h.Set("x-cache", cs)
	}
	h.Set("x-model-id", ex.stream.Model())
	h.Set("x-tokens-in", strconv.Itoa(u.TokensIn))
	h.Set("x-tokens-out", strconv.Itoa(u.TokensOut))
	h.Set("x-tokens-total", strconv.Itoa(u.TokensIn+u.TokensOut))
	h.Set("x-ai-latency-ms", strconv.FormatInt(latency.Milliseconds(), 10))
	s.sessionStored(ctx, ex) // usage.go: in the background, off the client's path
	data := map[string]any{
		"status": "accepted", "sessionId": ex.sessionID, "stream": false, "message": ex.reply.String(),
	}
	if results := ex.tools.results(); len(results) > 0 {
		data["toolResults"] = results // what the SSE tool_result events carry
	}
	return okFlushed(c, http.StatusOK, data)
}

// streamChat relays the reply as token events, held until the model stream waits for the upstream
// (push), then stores the exchange and ends with the done event.
func (s *Server) streamChat(c echo.Context, ex *exchange, push *streamPusher) error {
	ctx := c.Request().Context()
	t := ex.tenant
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // proxies must not buffer tokens
	h.Set("x-tenant-id", t.TenantID)
	h.Set("x-model-id", ex.stream.Model())
	c.Response().WriteHeader(http.StatusOK)

	w := newSSEWriter(c.Response(), tokenFrame{SessionID: ex.sessionID, Role: "assistant", TenantID: t.TenantID, TraceID: traceID(c)})
	push.hold(w.enc)
	ex.tools.writeEvents(w)
	for {
		tok, err := ex.stream.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if ctx.Err() != nil {
				// The client left: the model call is cancelled by ctx, nothing is stored.
				return nil
			}
			s.log.Warn().Err(err).Str("traceId", traceID(c)).Str("tenantId", t.TenantID).Msg("model stream failed")
			w.error(CodeAIError, modelErrorMessage(ex.stream.Model(), err))
			w.done(ex.stream.Model(), ex.stream.Usage(), s.now().Sub(ex.started))
			return nil
		}
		ex.reply.WriteString(tok)
		if werr := w.token(tok); werr != nil {
			return nil // write failed: the client is gone; Close ends the call as cancelled
		}
	}
	u := ex.stream.Usage()
	if w.enc.Push() != nil { // the last tokens, before the store's wait
		return nil
	}
	stored := s.store(ctx, ex, u)
	if stored != nil {
		s.log.Error().Err(stored).Str("traceId", traceID(c)).Str("tenantId", t.TenantID).Msg("store chat reply")
		w.error(CodeUnavailable, "the reply could not be stored")
	}
	if stored == nil {
		s.sessionStored(ctx, ex) // usage.go
	}
	w.done(ex.stream.Model(), u, s.now().Sub(ex.started))
	return nil
}

type historyMessage struct {
	Role       string `json:"role"`
	Content    string `json:"content"`
	Timestamp  int64  `json:"timestamp"` // epoch milliseconds, as the original's Date.now()
	TokenCount int    `json:"tokenCount,omitempty"`
}

func sessionParam(c echo.Context) (string, error) {
	id := c.Param("sessionId")
	if !config.ValidSessionID(id) {
		return "", errInvalidRequest("sessionId: must match [A-Za-z0-9_-]{1,128}")
	}
	state(c).sessionID = id
	return id, nil
}

func (s *Server) getHistory(c echo.Context) error {
	id, err := sessionParam(c)
	if err != nil {
		return err
	}
	t := tenantOf(c)
	limit := 0
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return errInvalidRequest("limit: must be a positive integer")
		}
		limit = n
	}
	var before time.Time
	if v := c.QueryParam("before"); v != "" {
		if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
			before = time.UnixMilli(ms)
		} else if ts, err := time.Parse(time.RFC3339Nano, v); err == nil {
			before = ts
		} else {
			return errInvalidRequest("before: must be epoch milliseconds or an RFC 3339 time")
		}
		// The zero time means "no cursor" below, so before=0 (or anything not after the epoch)
		// would silently return the newest page: refuse it instead.
		if before.UnixMilli() <= 0 {
			return errInvalidRequest("before: must be after 1970-01-01T00:00:00Z")
		}
	}
	msgs, err := s.chat.Sessions.History(c.Request().Context(), t.TenantID, id, retentionOf(t), limit, before)
	if err != nil {
		return Wrap(http.StatusServiceUnavailable, CodeUnavailable, "session store unavailable, retry shortly", err)
	}
	out := make([]historyMessage, len(msgs))
	for i, m := range msgs {
		out[i] = historyMessage{Role: m.Role, Content: m.Content, Timestamp: m.Timestamp.UnixMilli(), TokenCount: m.TokenCount}
	}
	return ok(c, http.StatusOK, map[string]any{"sessionId": id, "messages": out})
}

func (s *Server) deleteSession(c echo.Context) error {
	id, err := sessionParam(c)
	if err != nil {
		return err
	}
	t := tenantOf(c)
	if err := s.chat.Sessions.Clear(c.Request().Context(), t.TenantID, id); err != nil {
		return Wrap(http.StatusServiceUnavailable, CodeUnavailable, "session store unavailable, retry shortly", err)
	}
	s.sessionCleared(c, id) // usage.go
	return ok(c, http.StatusOK, map[string]any{"sessionId": id, "deleted": true})
}
