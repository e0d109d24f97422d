package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
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
	History(ctx context.Context, tenantID, sessionID string, r actors.Retention, limit int, before time.Time) ([]actors.Message, error)
	Clear(ctx context.Context, tenantID, sessionID string) error
}

// ChatModels opens a model stream, falling back once while no token has been produced.
type ChatModels interface {
	Open(ctx context.Context, req gateway.ChatRequest, fallbackModel string) (gateway.ChatStream, error)
}

// ChatDeps are the chat routes' dependencies.
type ChatDeps struct {
	Sessions SessionStore
	Limiter  RateLimiter
	Models   ChatModels
	// Budget enforces tenants' tokenBudget (budget.go); nil enforces none.
	Budget Budgets
	// Cache is the response cache of non-streamed chat (cache.go); nil caches nothing.
	Cache ResponseCache
}

const (
	maxMessageChars = 10000
	// storeTimeout bounds storing a finished exchange after its client may have left.
	storeTimeout = 10 * time.Second
)

var sessionIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// chatRequest is CONTRACT.md's POST /chat body. Pointers tell "absent" from "zero".
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
	case req.SessionID != nil && !sessionIDPattern.MatchString(*req.SessionID):
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

// selectModels applies CONTRACT.md's model selection: request > MODEL_ID > tenant, the allow-list
// (403 before any model call; a fallback outside the list is dropped), and the fallback.
func (s *Server) selectModels(t *config.TenantConfig, requested string) (primary, fallback string, err error) {
	primary = cmpOr(requested, s.env.ModelID, t.AIModels.Chat)
	fallback = cmpOr(t.AIModels.FallbackChat, s.env.FallbackModelID)
	if t.Flag("modelAllowList") {
		if !slices.Contains(t.AllowedModels, primary) {
			return "", "", NewError(http.StatusForbidden, CodeModelNotAllowed,
				fmt.Sprintf("model %q is not in this tenant's allowedModels", primary))
		}
		if !slices.Contains(t.AllowedModels, fallback) {
			fallback = ""
		}
	}
	if fallback == primary {
		fallback = ""
	}
	return primary, fallback, nil
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
	sessionID := uuid.NewString()
	if req.SessionID != nil {
		sessionID = *req.SessionID
	}
	state(c).sessionID = sessionID

	if err := s.checkRateLimit(c, s.chat.Limiter, req.UserID); err != nil {
		return err
	}
	primary, fallback, err := s.selectModels(t, req.ModelID)
	if err != nil {
		return err
	}

	tl, err := s.startChatTools(c, &req, sessionID) // chat_tools.go: runs tool_name first
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	ret := retentionOf(t)
	history, err := s.chat.Sessions.History(ctx, t.TenantID, sessionID, ret, 0, time.Time{})
	if err != nil {
		return Wrap(http.StatusServiceUnavailable, CodeUnavailable, "session store unavailable, retry shortly", err)
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

	started := s.now()
	call := &modelCall{ // usage.go: budget, cache, ledger, metrics and log line of this call
		tenant: t, traceID: traceID(c), sessionID: sessionID, userID: req.UserID, primary: primary,
		newSession: len(history) == 0, started: started,
	}
	if handled, err := s.serveCached(c, call, &req, tl, msgs); handled {
		return err
	}
	if err := s.reserveBudget(c, call, msgs, req.MaxTokens); err != nil {
		return err
	}
	stream, err := tl.open(gateway.WithCallObserver(ctx, s.callObserver()), s.chat.Models, gateway.ChatRequest{
		Model: primary, Messages: msgs, MaxTokens: req.MaxTokens,
		Meta: gateway.RequestMeta{
			TenantID: t.TenantID, AccountID: t.AccountID, GatewayID: t.AIGatewayID,
			TraceID: traceID(c), SessionID: sessionID, Route: "/chat",
		},
	}, fallback)
	if err != nil {
		s.modelOpenFailed(ctx, call, err)
		return Wrap(http.StatusBadGateway, CodeAIError, modelErrorMessage(primary, err), err)
	}
	defer stream.Close()

	ex := exchange{
		tenant: t, sessionID: sessionID, user: *req.Message, started: started, stream: stream, ret: ret,
		tools: tl, call: call,
	}
	if req.Stream == nil || *req.Stream {
		return s.streamChat(c, &ex)
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
	call      *modelCall // usage.go; nil for an exchange that called no model
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
	return s.chat.Sessions.Append(ctx, ex.tenant.TenantID, ex.sessionID, []actors.Message{
		{Role: "user", Content: ex.user, Timestamp: ex.started, TokenCount: gateway.EstimateTokens(ex.user)},
		// A copy without the builder's spare capacity (up to half of it): the session's activation
		// keeps the message in memory until it passivates.
		{Role: "assistant", Content: strings.Clone(ex.reply.String()), Timestamp: now, TokenCount: usage.TokensOut},
	}, ex.ret)
}

// countUsage settles the model call: metrics, budget commit, ledger event, log line (usage.go).
func (s *Server) countUsage(ex *exchange, u gateway.Usage, outcome string) {
	s.finishModelCall(context.Background(), ex.call, ex.stream.Model(), u, outcome)
}

func (s *Server) jsonChat(c echo.Context, ex *exchange) error {
	ctx := c.Request().Context()
	for {
		tok, err := ex.stream.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			s.countUsage(ex, ex.stream.Usage(), "error")
			return Wrap(http.StatusBadGateway, CodeAIError, modelErrorMessage(ex.stream.Model(), err), err)
		}
		ex.reply.WriteString(tok)
	}
	u := ex.stream.Usage()
	latency := s.now().Sub(ex.started)
	if err := s.store(ctx, ex, u); err != nil {
		s.countUsage(ex, u, "ok") // the model ran: its tokens are charged even though the reply is lost
		return Wrap(http.StatusServiceUnavailable, CodeUnavailable, "the reply could not be stored, retry", err)
	}
	// Written before the answer, so an identical request that follows it is a HIT (a no-op for
	// tenants without a cache).
	s.cacheReply(context.WithoutCancel(ctx), ex.call, ex.stream.Model(), ex.reply.String()) // cache.go
	h := c.Response().Header()
	h.Set("x-model-id", ex.stream.Model())
	h.Set("x-tokens-in", strconv.Itoa(u.TokensIn))
	h.Set("x-tokens-out", strconv.Itoa(u.TokensOut))
	h.Set("x-tokens-total", strconv.Itoa(u.TokensIn+u.TokensOut))
	h.Set("x-ai-latency-ms", strconv.FormatInt(latency.Milliseconds(), 10))
	later := s.settleLater()
	err := okFlushed(c, http.StatusOK, map[string]any{
		"status": "accepted", "sessionId": ex.sessionID, "stream": false, "message": ex.reply.String(),
	})
	// The reply is already durable; settling the call is off the client's path: budget commit,
	// ledger and session events are several JetStream round trips. Budgets stay exact because the
	// reservation holds the tokens until this commit.
	settle := context.WithoutCancel(ctx)
	later(func() {
		s.countUsage(ex, u, "ok")
		s.sessionStored(settle, ex.call) // usage.go
	})
	return err
}

func (s *Server) streamChat(c echo.Context, ex *exchange) error {
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
	ex.tools.writeEvents(w)
	for {
		tok, err := ex.stream.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if ctx.Err() != nil {
				// The client left: the model call is cancelled by ctx, nothing is stored.
				s.countUsage(ex, ex.stream.Usage(), "cancelled")
				return nil
			}
			s.countUsage(ex, ex.stream.Usage(), "error")
			s.log.Warn().Err(err).Str("traceId", traceID(c)).Str("tenantId", t.TenantID).Msg("model stream failed")
			w.error(CodeAIError, modelErrorMessage(ex.stream.Model(), err))
			w.done(ex.stream.Model(), ex.stream.Usage(), s.now().Sub(ex.started))
			return nil
		}
		ex.reply.WriteString(tok)
		if werr := w.token(tok); werr != nil {
			s.countUsage(ex, ex.stream.Usage(), "cancelled")
			return nil // write failed: the client is gone; ctx cancellation stops the model
		}
	}
	u := ex.stream.Usage()
	stored := s.store(ctx, ex, u)
	if stored != nil {
		s.log.Error().Err(stored).Str("traceId", traceID(c)).Str("tenantId", t.TenantID).Msg("store chat reply")
		w.error(CodeUnavailable, "the reply could not be stored")
	}
	later := s.settleLater()
	w.done(ex.stream.Model(), u, s.now().Sub(ex.started))
	// Settled after done reached the client, as in jsonChat.
	settle := context.WithoutCancel(ctx)
	later(func() {
		s.countUsage(ex, u, "ok")
		if stored == nil {
			s.sessionStored(settle, ex.call) // usage.go
		}
	})
	return nil
}

// modelErrorMessage is client-safe: it names the model and the kind of failure, not internals.
func modelErrorMessage(model string, err error) string {
	if errors.Is(err, gateway.ErrModelNotServed) {
		return fmt.Sprintf("model %q is not served by any configured provider", model)
	}
	var ue *gateway.UpstreamError
	if errors.As(err, &ue) {
		return fmt.Sprintf("model %q failed upstream (status %d)", ue.Model, ue.Status)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("model %q timed out", model)
	}
	return fmt.Sprintf("model %q failed", model)
}

type historyMessage struct {
	Role       string `json:"role"`
	Content    string `json:"content"`
	Timestamp  int64  `json:"timestamp"` // epoch milliseconds, as the original's Date.now()
	TokenCount int    `json:"tokenCount,omitempty"`
}

func sessionParam(c echo.Context) (string, error) {
	id := c.Param("sessionId")
	if !sessionIDPattern.MatchString(id) {
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
