package api

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"hash"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/store"
)

// ResponseCache is the tenant-scoped KV bucket `cache` (store.TenantKV): every key is stored under
// the tenant's own prefix, and Get returns an error wrapping store.ErrNotFound for a miss.
type ResponseCache interface {
	Get(ctx context.Context, tenantID, key string) ([]byte, error)
	Put(ctx context.Context, tenantID, key string, value []byte, ttl time.Duration) error
}

var _ ResponseCache = (*store.TenantKV)(nil)

// The response cache (issue 4) answers identical non-streamed chat requests within the tenant's
// cache.ttlSeconds (off when absent). Identical means: same tenant, same model, the same messages
// sent to the model (the full list: system, tool result, history and the new message, each role
// plus its whitespace-normalized content) and the same parameters (maxTokens, system). The key is
// chat.<sha256> with the tenant ID inside the hashed material AND as the KV prefix (TenantKV), so a
// key can never match across tenants.
//
// Decisions: a HIT still passes the rate limit and counts as a request (a model_call event with
// cached=true and 0 tokens), is not charged to the token budget, reports x-tokens-* as 0 (no model
// tokens were used) and is stored in the session history like any exchange, so the conversation
// reads the same whether or not the answer came from the cache. Streamed requests and requests that
// offer the model tools are never cached (tool calls have side effects).

// cachedReply is the value stored under a cache key.
type cachedReply struct {
	Model   string `json:"model"`
	Message string `json:"message"`
}

// cacheLookupTimeout bounds a cache read or write; the cache is an optimisation, never a reason to fail.
const cacheLookupTimeout = 2 * time.Second

// cacheKey is chat.<hex sha256> over the tenant, model, parameters and normalized messages. Each
// field is length-prefixed so that no two different requests hash the same material.
func cacheKey(tenantID, model string, maxTokens int, system string, msgs []gateway.Message) string {
	h := sha256.New()
	field := func(h hash.Hash, s string) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	field(h, "crispy.chat.v1")
	field(h, tenantID)
	field(h, model)
	field(h, strconv.Itoa(maxTokens))
	field(h, normalizeSpace(system))
	for _, m := range msgs {
		field(h, m.Role)
		field(h, normalizeSpace(m.Content))
	}
	return "chat." + hex.EncodeToString(h.Sum(nil))
}

// normalizeSpace collapses runs of whitespace into one space and trims the ends.
func normalizeSpace(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// cacheTTL is the tenant's response cache TTL; 0 = off.
func (s *Server) cacheTTL(call *modelCall) time.Duration {
	if s.chat.Cache == nil || call.tenant.Cache == nil || call.tenant.Cache.TTLSeconds <= 0 {
		return 0
	}
	return time.Duration(call.tenant.Cache.TTLSeconds) * time.Second
}

// serveCached answers a cacheable request from the cache. It returns handled=false on a miss (with
// call.cacheKey set so the reply is cached) and when the request is not cacheable.
func (s *Server) serveCached(c echo.Context, call *modelCall, req *chatRequest, tl *chatTools, msgs []gateway.Message) (handled bool, err error) {
	if req.Stream == nil || *req.Stream || s.cacheTTL(call) == 0 || (tl != nil && len(tl.specs) > 0) {
		return false, nil
	}
	t := call.tenant.TenantID
	key := cacheKey(t, call.primary, req.MaxTokens, req.System, msgs)
	ctx, cancel := context.WithTimeout(c.Request().Context(), cacheLookupTimeout)
	raw, gerr := s.chat.Cache.Get(ctx, t, key)
	cancel()
	var hit cachedReply
	if gerr == nil {
		if jerr := json.Unmarshal(raw, &hit); jerr != nil {
			gerr = jerr
		}
	}
	if gerr != nil {
		if !errors.Is(gerr, store.ErrNotFound) {
			s.log.Warn().Err(gerr).Str("tenantId", t).Str("traceId", call.traceID).Msg("response cache read failed; calling the model")
		}
		s.metrics.CacheLookups.WithLabelValues(t, "miss").Inc()
		c.Response().Header().Set("x-cache", "MISS")
		call.cacheKey = key
		return false, nil
	}
	s.metrics.CacheLookups.WithLabelValues(t, "hit").Inc()

	ex := exchange{tenant: call.tenant, sessionID: call.sessionID, user: *req.Message, started: call.started, ret: retentionOf(call.tenant)}
	ex.reply.WriteString(hit.Message)
	if err := s.store(c.Request().Context(), &ex, gateway.Usage{}); err != nil {
		return true, Wrap(http.StatusServiceUnavailable, CodeUnavailable, "the reply could not be stored, retry", err)
	}
	s.sessionStored(c.Request().Context(), call)
	latency := s.now().Sub(call.started)
	s.metrics.ModelCalls.WithLabelValues(t, hit.Model, "cached").Inc()
	s.appendEvent(c.Request().Context(), store.Event{
		Kind: store.KindModelCall, TenantID: t, TraceID: call.traceID, SessionID: call.sessionID, UserID: call.userID,
		Model: hit.Model, LatencyMs: latency.Milliseconds(), Outcome: "ok", Cached: true,
	})
	s.logModelCall(call, hit.Model, "cache", gateway.Usage{}, latency, "ok", true)

	h := c.Response().Header()
	h.Set("x-cache", "HIT")
	h.Set("x-model-id", hit.Model)
	h.Set("x-tokens-in", "0")
	h.Set("x-tokens-out", "0")
	h.Set("x-tokens-total", "0")
	h.Set("x-ai-latency-ms", strconv.FormatInt(latency.Milliseconds(), 10))
	return true, ok(c, http.StatusOK, map[string]any{
		"status": "accepted", "sessionId": call.sessionID, "stream": false, "message": hit.Message,
	})
}

// cacheReply stores a complete non-streamed reply under the call's key.
func (s *Server) cacheReply(ctx context.Context, call *modelCall, model, reply string) {
	ttl := s.cacheTTL(call)
	if call == nil || call.cacheKey == "" || ttl == 0 || reply == "" {
		return
	}
	raw, err := json.Marshal(cachedReply{Model: model, Message: reply})
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cacheLookupTimeout)
	defer cancel()
	if err := s.chat.Cache.Put(ctx, call.tenant.TenantID, call.cacheKey, raw, ttl); err != nil {
		s.log.Warn().Err(err).Str("tenantId", call.tenant.TenantID).Str("traceId", call.traceID).Msg("response cache write failed")
	}
}
