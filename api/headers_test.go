package api

import (
	"net/http"
	"testing"
)

// TestHeaderKeysAreCanonical: setHeader stores its key as given, so a key that is not canonical
// would be a second header beside the one Header.Set and Header.Get use.
func TestHeaderKeysAreCanonical(t *testing.T) {
	for _, tc := range []struct{ name, key string }{
		{"x-trace-id", hdrTraceID},
		{"x-request-id", hdrRequestID},
		{"x-model-id", hdrModelID},
		{"x-ratelimit-limit", hdrXRateLimitLimit},
		{"x-ratelimit-remaining", hdrXRateLimitRemain},
		{"x-ratelimit-reset", hdrXRateLimitReset},
		{"RateLimit-Limit", hdrRateLimitLimit},
		{"RateLimit-Remaining", hdrRateLimitRemaining},
		{"RateLimit-Reset", hdrRateLimitReset},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if want := http.CanonicalHeaderKey(tc.name); tc.key != want {
				t.Errorf("key %q for %s, want %q", tc.key, tc.name, want)
			}
			h := http.Header{}
			setHeader(h, tc.key, "v")
			if got := h.Get(tc.name); got != "v" {
				t.Errorf("Get(%q) after setHeader = %q, want v", tc.name, got)
			}
		})
	}
}
