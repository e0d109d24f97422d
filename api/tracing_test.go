package api

import (
	"context"
	"slices"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/crispy-enigma/crispy/observe"
)

// spanAttr returns the value of attribute key of s, or an invalid value.
func spanAttr(s tracetest.SpanStub, key attribute.Key) attribute.Value {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			return kv.Value
		}
	}
	return attribute.Value{}
}

// TestTracingOneChatIsOneTrace: with tracing on (issue 8 "Optional OpenTelemetry tracing"), one
// POST /chat is one trace: the request's span, named by route and carrying tenant, status and our
// trace ID, is the parent of the spans of its grain calls and of its model call.
func TestTracingOneChatIsOneTrace(t *testing.T) {
	ctx := context.Background()
	exp := tracetest.NewInMemoryExporter()
	tracing, err := observe.SetupTracing(ctx, observe.TracingOptions{Exporter: exp, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tracing.Shutdown(context.Background()) })
	up := newFakeUpstream(t)
	ts := newTestServer(t, testServerOpts{models: routerFor(up), tenants: chatTenants(), tracing: tracing})

	resp, b := ts.do(t, "POST", "/chat", `{"message":"hi","sessionId":"traced-1","stream":false}`,
		"x-tenant-id: fakeco", "x-trace-id: trace-otel-1")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	// Settle work (after the response) may still make grain calls: wait for it, then flush.
	ts.waitIdle(t)
	if err := ts.mt.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tracing.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	spans := exp.GetSpans()

	var root *tracetest.SpanStub
	for i, s := range spans {
		if s.Name == "POST /chat" {
			if root != nil {
				t.Fatalf("two request spans: %v and %v", root.Name, s.Name)
			}
			root = &spans[i]
		}
	}
	if root == nil {
		t.Fatalf("no request span named %q among %v", "POST /chat", spanNames(spans))
	}
	if root.Parent.IsValid() {
		t.Errorf("request span has a parent %v; want a root", root.Parent.SpanID())
	}
	for key, want := range map[attribute.Key]attribute.Value{
		"tenant":                    attribute.StringValue("fakeco"),
		"http.response.status_code": attribute.IntValue(200),
		"crispy.trace_id":           attribute.StringValue("trace-otel-1"),
		"http.route":                attribute.StringValue("/chat"),
	} {
		if got := spanAttr(*root, key); got != want {
			t.Errorf("request span %s = %v, want %v", key, got.String(), want.String())
		}
	}
	if got := root.Resource.Set(); !got.HasValue("service.name") {
		t.Errorf("no service.name in resource %v", root.Resource)
	} else if v, _ := got.Value("service.name"); v.AsString() != observe.ServiceName {
		t.Errorf("service.name %q, want %q", v.AsString(), observe.ServiceName)
	}

	// Every span is in the request's trace, a direct child of the request span.
	traceID, rootID := root.SpanContext.TraceID(), root.SpanContext.SpanID()
	var grainKinds, models []string
	for _, s := range spans {
		if s.SpanContext.TraceID() != traceID {
			t.Errorf("span %q is in trace %s, want %s", s.Name, s.SpanContext.TraceID(), traceID)
		}
		if s.Name == root.Name {
			continue
		}
		if s.Parent.SpanID() != rootID {
			t.Errorf("span %q has parent %s, want the request span %s", s.Name, s.Parent.SpanID(), rootID)
		}
		switch {
		case strings.HasPrefix(s.Name, "grain "):
			grainKinds = append(grainKinds, spanAttr(s, "grain.kind").AsString()+"/"+spanAttr(s, "grain.request").AsString())
		case strings.HasPrefix(s.Name, "model "):
			models = append(models, s.Name)
			for key, want := range map[attribute.Key]attribute.Value{
				"gen_ai.request.model":       attribute.StringValue("fake/instant"),
				"gen_ai.provider.name":       attribute.StringValue("fake"),
				"gen_ai.usage.input_tokens":  attribute.IntValue(fakePromptTokens),
				"gen_ai.usage.output_tokens": attribute.IntValue(fakeCompletionTokens),
			} {
				if got := spanAttr(s, key); got != want {
					t.Errorf("model span %s = %v, want %v", key, got.String(), want.String())
				}
			}
		}
	}
	if len(models) != 1 {
		t.Errorf("model spans %v, want one", models)
	}
	// The rate-limit check, the history read and the exchange's append are grain calls.
	for _, want := range []string{"RateLimiter/RateLimitRequest", "ChatSession/HistoryRequest", "ChatSession/AppendRequest"} {
		if !slices.Contains(grainKinds, want) {
			t.Errorf("grain spans %v: none for %s", grainKinds, want)
		}
	}
}

func spanNames(spans tracetest.SpanStubs) []string {
	out := make([]string, len(spans))
	for i, s := range spans {
		out[i] = s.Name
	}
	return out
}
