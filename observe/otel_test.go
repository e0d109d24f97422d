package observe

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func TestSetupTracing(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name    string
		opts    TracingOptions
		enabled bool
		wantErr bool
	}{
		{"off by default", TracingOptions{}, false, false},
		{"OTLP over http", TracingOptions{Endpoint: "http://127.0.0.1:4318"}, true, false},
		{"OTLP with its own path", TracingOptions{Endpoint: "https://collector.example/otlp/v1/traces"}, true, false},
		{"in-memory exporter", TracingOptions{Exporter: tracetest.NewInMemoryExporter()}, true, false},
		{"no scheme", TracingOptions{Endpoint: "127.0.0.1:4318"}, false, true},
		{"grpc scheme", TracingOptions{Endpoint: "grpc://127.0.0.1:4317"}, false, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := SetupTracing(ctx, tt.opts)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			// Nothing is exported in this test: shutting down the OTLP exporter sends nothing.
			defer tr.Shutdown(ctx)
			if got := tr.Tracer("test").Enabled(); got != tt.enabled {
				t.Errorf("Enabled() = %v, want %v", got, tt.enabled)
			}
		})
	}
}

// TestDisabledTracerLeavesContextAlone: with tracing off a span costs nothing: ctx comes back as
// it was and the span records nothing.
func TestDisabledTracerLeavesContextAlone(t *testing.T) {
	ctx := WithTraceID(context.Background(), "t1")
	got, span := Tracer{}.Start(ctx, "x", trace.SpanKindInternal)
	if got != ctx {
		t.Error("disabled Start returned a new context")
	}
	if span.IsRecording() {
		t.Error("disabled span is recording")
	}
	EndSpan(span, nil)
}

func BenchmarkDisabledTracerStart(b *testing.B) {
	ctx := context.Background()
	var tr Tracer
	b.ReportAllocs()
	for b.Loop() {
		_, span := tr.Start(ctx, "x", trace.SpanKindClient)
		EndSpan(span, nil)
	}
}
