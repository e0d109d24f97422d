package api

import (
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/crispy-enigma/crispy/actors"
	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/metering"
)

// rateLimitUser picks the rate-limit identity of docs/api.md: body userId, else x-user-id, else
// the API key's ID, else the client address. On a public tenant anyone may call, so the identity
// is always the client address (behind trusted proxies, ClientAddrs): a user ID the client sends
// would let it pick a fresh limiter per request.
func (s *Server) rateLimitUser(c echo.Context, bodyUser string) string {
	if tenantOf(c).Public {
		return s.clients.Key(c.Request())
	}
	if bodyUser != "" {
		return "user:" + bodyUser
	}
	if h := c.Request().Header.Get("x-user-id"); h != "" && len(h) <= maxUserIDLen {
		return "user:" + h
	}
	if k := state(c).keyID; k != "" {
		return "key:" + k
	}
	return s.clients.Key(c.Request())
}

const maxUserIDLen = config.MaxUserIDLen

// checkRateLimit asks the tenant-wide ceiling first, then the user's limit (one grain round trip:
// metering.Meter.AllowRequest), sets the rate-limit headers (on every answer, allowed or not) and
// returns 429 rate_limited when denied. The ceiling comes first so that a request it denies creates
// no per-user window: whatever IDs a client varies, at most the ceiling's worth of them is made per
// window.
func (s *Server) checkRateLimit(c echo.Context, bodyUser string) error {
	t := tenantOf(c)
	who := metering.Caller{TraceID: traceID(c), SessionID: state(c).sessionID, Route: c.Path(), UserID: bodyUser}
	d, ceilingDenied, err := s.meter.AllowRequest(c.Request().Context(), t, s.rateLimitUser(c, bodyUser), who)
	if err != nil {
		return Wrap(http.StatusServiceUnavailable, CodeUnavailable, "rate limiter unavailable, retry shortly", err)
	}
	setRateLimitHeaders(c.Response().Header(), t, d, s.now())
	switch {
	case ceilingDenied:
		return NewError(http.StatusTooManyRequests, CodeRateLimited, "the tenant's rate limit is exceeded, retry after the time in Retry-After")
	case !d.Allowed:
		return NewError(http.StatusTooManyRequests, CodeRateLimited, "rate limit exceeded, retry after the time in Retry-After")
	}
	return nil
}

func setRateLimitHeaders(h http.Header, t *config.TenantConfig, d actors.RateDecision, now time.Time) {
	limit := strconv.Itoa(t.RateLimit.PerMinute)
	remaining := strconv.Itoa(d.Remaining)
	setHeader(h, hdrXRateLimitLimit, limit) // headers.go
	setHeader(h, hdrXRateLimitRemain, remaining)
	setHeader(h, hdrXRateLimitReset, strconv.FormatInt(d.ResetAt.UnixMilli(), 10))
	setHeader(h, hdrRateLimitLimit, limit)
	setHeader(h, hdrRateLimitRemaining, remaining)
	setHeader(h, hdrRateLimitReset, strconv.FormatInt(ceilSeconds(d.ResetAt.Sub(now)), 10))
	if !d.Allowed {
		h.Set("Retry-After", strconv.FormatInt(max(1, ceilSeconds(d.RetryAfter)), 10))
	}
}

func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64(math.Ceil(d.Seconds()))
}
