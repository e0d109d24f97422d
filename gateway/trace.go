package gateway

import (
	"context"
	"net/http"

	"github.com/crispy-enigma/crispy/observe"
)

// TraceHeader carries the request's trace ID to upstream model servers (docs/api.md "Trace ID"), so
// a model server's own logs (vLLM, llama.cpp, a proxy in front of them) can be joined with ours.
// It holds the ID only, never tenant data beyond what the trace ID already is.
const TraceHeader = "X-Trace-Id"

// setTraceHeader sets TraceHeader from id, else from the trace ID ctx carries (observe.WithTraceID,
// set by the HTTP layer for every request); with neither it sets nothing.
func setTraceHeader(ctx context.Context, h http.Header, id string) {
	if id == "" {
		id = observe.TraceID(ctx)
	}
	if id != "" {
		h.Set(TraceHeader, id)
	}
}
