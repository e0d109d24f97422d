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

// rateLimitUser picks the rate-limit identity of CONTRACT.md: body userId, else x-user-id, else
// the API key's ID, else the client IP.
func rateLimitUser(c echo.Context, bodyUser string) string {
	if bodyUser != "" {
		return "user:" + bodyUser
	}
	if h := c.Request().Header.Get("x-user-id"); h != "" && len(h) <= maxUserIDLen {
		return "user:" + h
	}
	if k := state(c).keyID; k != "" {
		return "key:" + k
	}
	return "ip:" + clientIP(c.Request())
}

const maxUserIDLen = config.MaxUserIDLen

// checkRateLimit asks the tenant's RateLimiter grain, sets the rate-limit headers (on every
// answer, allowed or not) and returns 429 rate_limited when denied.
func (s *Server) checkRateLimit(c echo.Context, bodyUser string) error {
	t := tenantOf(c)
	d, err := s.meter.Allow(c.Request().Context(), t, rateLimitUser(c, bodyUser), metering.Caller{
		TraceID: traceID(c), SessionID: state(c).sessionID, Route: c.Path(), UserID: bodyUser,
	})
	if err != nil {
		return Wrap(http.StatusServiceUnavailable, CodeUnavailable, "rate limiter unavailable, retry shortly", err)
	}
	setRateLimitHeaders(c.Response().Header(), t, d, s.now())
	if !d.Allowed {
		return NewError(http.StatusTooManyRequests, CodeRateLimited, "rate limit exceeded, retry after the time in Retry-After")
	}
	return nil
}

func setRateLimitHeaders(h http.Header, t *config.TenantConfig, d actors.RateDecision, now time.Time) {
	limit := strconv.Itoa(t.RateLimit.PerMinute)
	remaining := strconv.Itoa(d.Remaining)
	h.Set("x-ratelimit-limit", limit)
	h.Set("x-ratelimit-remaining", remaining)
	h.Set("x-ratelimit-reset", strconv.FormatInt(d.ResetAt.UnixMilli(), 10))
	h.Set("RateLimit-Limit", limit)
	h.Set("RateLimit-Remaining", remaining)
	h.Set("RateLimit-Reset", strconv.FormatInt(ceilSeconds(d.ResetAt.Sub(now)), 10))
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
