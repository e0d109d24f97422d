package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/crispy-enigma/crispy/store"
)

// IdempotencyStore keeps Idempotency-Key records per tenant (store.TenantKV on the TTL-enabled
// cache bucket). Create is put-if-absent, decided by the server.
type IdempotencyStore interface {
	Create(ctx context.Context, tenantID, key string, value []byte, ttl time.Duration) error
	Get(ctx context.Context, tenantID, key string) ([]byte, error)
	Put(ctx context.Context, tenantID, key string, value []byte, ttl time.Duration) error
	Delete(ctx context.Context, tenantID, key string) error
}

var _ IdempotencyStore = (*store.TenantKV)(nil)

// Error codes of Idempotency-Key.
const (
	CodeIdempotencyInProgress = "idempotency_key_in_use"   // 409: the first request is still running
	CodeIdempotencyMismatch   = "idempotency_key_mismatch" // 422: the key was used with another request
)

const (
	// idempotencyTTL is how long a completed request's answer is replayed.
	idempotencyTTL = 24 * time.Hour
	// idempotencyClaimTTL bounds a claim whose request never finished (its node died): longer than
	// any model call, short enough not to block the key for long.
	idempotencyClaimTTL = 10 * time.Minute
	// maxReplayBody is the largest answer kept for replay (a KV value must fit in one NATS
	// message); a larger one is answered but not kept, and the key is released.
	maxReplayBody      = 512 << 10
	maxIdempotencyKey  = 255
	idempotencyTimeout = 5 * time.Second
)

// idempotentRoutes are the POST routes whose retries must not run twice: each stores a turn or
// spends tokens.
var idempotentRoutes = map[string]bool{
	"/chat": true, "/v1/chat/completions": true, "/chat/completions": true, "/v1/responses": true, "/responses": true,
}

// replayHeaders are the response headers kept with an answer; the trace ID and the rate-limit
// headers belong to the request that replays it.
var replayHeaders = []string{echo.HeaderContentType, "x-model-id", "x-tenant-id", "x-tokens-in", "x-tokens-out",
	"x-tokens-total", "x-ai-latency-ms", "x-session-id"}

// idempotencyRecord is what the store keeps under a key: a claim while the first request runs,
// then its answer.
type idempotencyRecord struct {
	Done        bool              `json:"done"`
	Fingerprint string            `json:"fp"`
	Status      int               `json:"status,omitempty"`
	Header      map[string]string `json:"header,omitempty"`
	Body        []byte            `json:"body,omitempty"`
}

// idempotency makes POST /chat, /v1/chat/completions and /v1/responses safe to retry with an
// Idempotency-Key header (clients that retry, EventSource reconnects): the first request claims the
// key; a retry while it runs is 409; a retry after it succeeded gets the stored answer, byte for
// byte (a stream as one burst), without a second model call or a second stored turn; a key reused
// with a different body is 422. A failed request releases the key. Keys are scoped to the tenant,
// the caller (API key, else client IP) and the route.
func (s *Server) idempotency(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		key := req.Header.Get("Idempotency-Key")
		if key == "" || s.idem == nil || req.Method != http.MethodPost || !idempotentRoutes[c.Path()] {
			return next(c)
		}
		if len(key) > maxIdempotencyKey || strings.IndexFunc(key, func(r rune) bool { return r < 0x20 || r > 0x7e }) >= 0 {
			return errInvalidRequest("Idempotency-Key: must be 1-%d printable ASCII characters", maxIdempotencyKey)
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return asError(err)
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		t := tenantOf(c)
		sum := sha256.Sum256([]byte(c.Path() + "\x00" + s.rateLimitUser(c, "") + "\x00" + key))
		kvKey := "idem." + hex.EncodeToString(sum[:])
		fp := sha256.Sum256(body)
		rec := idempotencyRecord{Fingerprint: hex.EncodeToString(fp[:])}
		claim, _ := json.Marshal(rec)
		ctx, cancel := context.WithTimeout(context.WithoutCancel(req.Context()), idempotencyTimeout)
		defer cancel()
		switch err := s.idem.Create(ctx, t.TenantID, kvKey, claim, idempotencyClaimTTL); {
		case errors.Is(err, store.ErrExists):
			return s.replay(c, t.TenantID, kvKey, rec.Fingerprint)
		case err != nil:
			return Wrap(http.StatusServiceUnavailable, CodeUnavailable, "idempotency store unavailable, retry shortly", err)
		}
		capture := &captureWriter{ResponseWriter: c.Response().Writer}
		c.Response().Writer = capture
		herr := next(c)
		res := c.Response()
		if herr != nil || res.Status < 200 || res.Status > 299 || capture.over || failedStream(res.Header(), capture.buf.Bytes()) {
			if err := s.idem.Delete(ctx, t.TenantID, kvKey); err != nil {
				s.log.Warn().Err(err).Str("traceId", traceID(c)).Msg("release idempotency key")
			}
			return herr
		}
		// A stream leaves its last events for the handler's return to send (openai.SSEWriter.Hold): send
		// them before the store's wait, which the client has no reason to share.
		_ = capture.FlushError()
		rec.Done, rec.Status, rec.Body, rec.Header = true, res.Status, capture.buf.Bytes(), map[string]string{}
		for _, h := range replayHeaders {
			if v := res.Header().Get(h); v != "" {
				rec.Header[h] = v
			}
		}
		done, _ := json.Marshal(rec)
		if err := s.idem.Put(ctx, t.TenantID, kvKey, done, idempotencyTTL); err != nil {
			s.log.Warn().Err(err).Str("traceId", traceID(c)).Msg("store idempotent answer")
		}
		return nil
	}
}

// replay answers a retry from the record of its key.
func (s *Server) replay(c echo.Context, tenantID, kvKey, fingerprint string) error {
	raw, err := s.idem.Get(c.Request().Context(), tenantID, kvKey)
	if errors.Is(err, store.ErrNotFound) {
		// Released or expired between the claim and now: the client may simply retry.
		return idempotencyInProgress(c)
	}
	if err != nil {
		return Wrap(http.StatusServiceUnavailable, CodeUnavailable, "idempotency store unavailable, retry shortly", err)
	}
	var rec idempotencyRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return Wrap(http.StatusInternalServerError, CodeInternal, "internal error", err)
	}
	switch {
	case rec.Fingerprint != fingerprint:
		return NewError(http.StatusUnprocessableEntity, CodeIdempotencyMismatch,
			"this Idempotency-Key was used with a different request body")
	case !rec.Done:
		return idempotencyInProgress(c)
	}
	h := c.Response().Header()
	for k, v := range rec.Header {
		h.Set(k, v)
	}
	h.Set("Idempotent-Replayed", "true")
	c.Response().WriteHeader(rec.Status)
	_, _ = c.Response().Write(rec.Body)
	return nil
}

func idempotencyInProgress(c echo.Context) error {
	c.Response().Header().Set("Retry-After", "1")
	return NewError(http.StatusConflict, CodeIdempotencyInProgress,
		"a request with this Idempotency-Key is in progress; retry after it finished")
}

// failedStream reports a stream that ended with an in-band error (POST /chat's `event: error`, an
// OpenAI stream's error object): not an answer to keep.
func failedStream(h http.Header, body []byte) bool {
	if !strings.HasPrefix(h.Get(echo.HeaderContentType), "text/event-stream") {
		return false
	}
	return bytes.Contains(body, []byte("event: error\n")) || bytes.Contains(body, []byte(`data: {"error":`)) ||
		bytes.Contains(body, []byte("event: response.failed\n"))
}

// captureWriter keeps a copy of what the handler writes (up to maxReplayBody) while passing it on.
type captureWriter struct {
	http.ResponseWriter
	buf  bytes.Buffer
	over bool
}

func (w *captureWriter) Write(p []byte) (int, error) {
	if !w.over {
		if w.buf.Len()+len(p) > maxReplayBody {
			w.over = true
			w.buf = bytes.Buffer{}
		} else {
			w.buf.Write(p)
		}
	}
	return w.ResponseWriter.Write(p)
}

// FlushError flushes the wrapped writer (http.ResponseController finds it).
func (w *captureWriter) FlushError() error {
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap gives http.ResponseController the wrapped writer.
func (w *captureWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
