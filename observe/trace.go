package observe

import (
	"context"

	"github.com/google/uuid"
)

// TraceIDMaxLen bounds a client-supplied trace ID so a hostile header cannot bloat every log line.
const TraceIDMaxLen = 128

type traceKey struct{}

// TraceIDFrom picks the trace ID of a request from its headers in docs/api.md's order:
// x-trace-id, else cf-ray, else x-request-id, else a new UUIDv4. Values that are too long or hold
// control characters are ignored, as if absent.
func TraceIDFrom(get func(string) string) string {
	for _, h := range [...]string{"x-trace-id", "cf-ray", "x-request-id"} {
		if v := get(h); usableTraceID(v) {
			return v
		}
	}
	return uuid.NewString()
}

func usableTraceID(v string) bool {
	if v == "" || len(v) > TraceIDMaxLen {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

// WithTraceID returns a context carrying the trace ID, so model calls and grain messages can
// carry it further.
func WithTraceID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, traceKey{}, id)
}

// TraceID returns the trace ID carried by ctx, or "".
func TraceID(ctx context.Context) string {
	id, _ := ctx.Value(traceKey{}).(string)
	return id
}
