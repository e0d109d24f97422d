package api

import "net/http"

// Canonical forms of the response headers set on every request. Assigning a canonical key to the
// header map directly (setHeader) skips http.Header.Set's canonicalization, which allocates a new
// key string for every lower-case name: nine of them per /v1 request. The wire shows the canonical
// form either way.
const (
	hdrTraceID            = "X-Trace-Id"
	hdrRequestID          = "X-Request-Id"
	hdrModelID            = "X-Model-Id"
	hdrXRateLimitLimit    = "X-Ratelimit-Limit"
	hdrXRateLimitRemain   = "X-Ratelimit-Remaining"
	hdrXRateLimitReset    = "X-Ratelimit-Reset"
	hdrRateLimitLimit     = "Ratelimit-Limit"
	hdrRateLimitRemaining = "Ratelimit-Remaining"
	hdrRateLimitReset     = "Ratelimit-Reset"
)

// setHeader is h.Set for a key already in canonical form.
func setHeader(h http.Header, canonicalKey, value string) {
	h[canonicalKey] = []string{value}
}
