package observe

import (
	"context"
	"fmt"
	"net/url"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// ServiceName is the OpenTelemetry service.name of every span we export.
const ServiceName = "crispy"

// TracingOptions configure SetupTracing. With neither field set, tracing is off.
type TracingOptions struct {
	// Endpoint is the OTLP/HTTP collector, e.g. "http://otel-collector:4318" (spans go to
	// /v1/traces) or a URL with its own path, used as is. "https" uses TLS.
	Endpoint string
	// Exporter, when set, receives the spans instead of an OTLP endpoint (tests pass an in-memory
	// one, go.opentelemetry.io/otel/sdk/trace/tracetest).
	Exporter sdktrace.SpanExporter
	// Version is the service.version resource attribute.
	Version string
}

// Tracing is a node's span pipeline. The zero value and nil are off: Tracer returns a Tracer whose
// spans cost nothing, and Shutdown does nothing.
type Tracing struct {
	provider *sdktrace.TracerProvider
}

// SetupTracing builds the span pipeline: a batch span processor feeding an OTLP/HTTP exporter (or
// o.Exporter), under service name crispy. When tracing is off it returns nil (a valid, disabled
// *Tracing). Shut it down to flush the spans still batched.
func SetupTracing(ctx context.Context, o TracingOptions) (*Tracing, error) {
	exp := o.Exporter
	if exp == nil {
		if o.Endpoint == "" {
			return nil, nil
		}
		opts, err := otlpHTTPOptions(o.Endpoint)
		if err != nil {
			return nil, err
		}
		if exp, err = otlptracehttp.New(ctx, opts...); err != nil {
			return nil, fmt.Errorf("otlp exporter %s: %w", o.Endpoint, err)
		}
	}
	attrs := []attribute.KeyValue{semconv.ServiceName(ServiceName)}
	if o.Version != "" {
		attrs = append(attrs, semconv.ServiceVersion(o.Version))
	}
	res := resource.NewWithAttributes(semconv.SchemaURL, attrs...)
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return &Tracing{provider: tp}, nil
}

// otlpHTTPOptions turns an endpoint URL into exporter options. The exporter's own URL option
// would post to the URL's bare path ("/"), which no collector serves; a base URL is the usual
// form (as in OTEL_EXPORTER_OTLP_ENDPOINT), so an empty path means the default /v1/traces.
func otlpHTTPOptions(endpoint string) ([]otlptracehttp.Option, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, fmt.Errorf("otlp endpoint %q: %w", endpoint, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("otlp endpoint %q: want http(s)://host:port[/path]", endpoint)
	}
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpoint(u.Host)}
	if u.Scheme == "http" {
		opts = append(opts, otlptracehttp.WithInsecure())
	}
	if u.Path != "" && u.Path != "/" {
		opts = append(opts, otlptracehttp.WithURLPath(u.Path))
	}
	return opts, nil
}

// Tracer returns the tracer of one instrumentation scope (a package path); a disabled Tracer when
// t is nil.
func (t *Tracing) Tracer(scope string) Tracer {
	if t == nil || t.provider == nil {
		return Tracer{}
	}
	return Tracer{t: t.provider.Tracer(scope)}
}

// ForceFlush exports the spans batched so far.
func (t *Tracing) ForceFlush(ctx context.Context) error {
	if t == nil || t.provider == nil {
		return nil
	}
	return t.provider.ForceFlush(ctx)
}

// Shutdown flushes the batched spans and stops the exporter.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil || t.provider == nil {
		return nil
	}
	if err := t.provider.Shutdown(ctx); err != nil {
		return fmt.Errorf("tracing shutdown: %w", err)
	}
	return nil
}

// Tracer starts spans. The zero value is disabled: Start returns ctx unchanged and a no-op span,
// so instrumented code costs a call and a branch when tracing is off. Set attributes only when
// span.IsRecording(), so they are not even built then.
type Tracer struct {
	t trace.Tracer
}

// Enabled reports whether spans are recorded.
func (t Tracer) Enabled() bool { return t.t != nil }

// Start starts a span of the given kind as a child of the span in ctx, if any.
func (t Tracer) Start(ctx context.Context, name string, kind trace.SpanKind) (context.Context, trace.Span) {
	if t.t == nil {
		return ctx, trace.SpanFromContext(context.Background()) // the no-op span, not allocated
	}
	return t.t.Start(ctx, name, trace.WithSpanKind(kind))
}

// EndSpan records err on span (when not nil) and ends it.
func EndSpan(span trace.Span, err error) {
	if err != nil && span.IsRecording() {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
