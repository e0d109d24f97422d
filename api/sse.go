package api

import (
	"context"
	"net/http"
	"time"

	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/wire/openai"
)

// tokenFrame is docs/api.md's SSE token event.
type tokenFrame struct {
	SessionID string `json:"sessionId"`
	Role      string `json:"role"`
	Content   string `json:"content"`
	TenantID  string `json:"tenantId"`
	TraceID   string `json:"traceId"`
}

type usageFrame struct {
	ModelID     string `json:"modelId"`
	TokensIn    int    `json:"tokensIn"`
	TokensOut   int    `json:"tokensOut"`
	TotalTokens int    `json:"totalTokens"`
	LatencyMs   int64  `json:"latencyMs"`
}

// sseWriter is the one writer of a /chat stream: whole events through the one SSE encoder
// (openai.SSEWriter), which remembers the first write error so a gone client stops the producer.
type sseWriter struct {
	enc   *openai.SSEWriter
	frame tokenFrame
}

func newSSEWriter(w http.ResponseWriter, frame tokenFrame) *sseWriter {
	return &sseWriter{enc: openai.NewSSEWriter(w), frame: frame}
}

// streamPusher sends a relay's held events each time the model stream is about to wait for the
// upstream: the hook of gateway.WithStreamWait, set on the call's context before the call opens,
// while the relay's writer exists only once the first token is in.
type streamPusher struct{ w *openai.SSEWriter }

// attach returns ctx carrying p as the model stream's wait hook (gateway.WithStreamWait) when the
// reply is streamed, ctx as it is otherwise.
func (p *streamPusher) attach(ctx context.Context, streamed bool) context.Context {
	if !streamed {
		return ctx
	}
	return gateway.WithStreamWait(ctx, p.push)
}

// hold makes w hold its events until the stream waits (push), or until w.Flush; what is still held
// when the handler returns goes out with the response's end (openai.SSEWriter.Hold).
func (p *streamPusher) hold(w *openai.SSEWriter) {
	p.w = w
	w.Hold()
}

func (p *streamPusher) push() {
	if p.w != nil {
		_ = p.w.Push() // a failed write is remembered and ends the relay at its next event
	}
}

func (s *sseWriter) event(name string, v any) error { return s.enc.Event(name, v) }

func (s *sseWriter) token(content string) error {
	s.frame.Content = content
	return s.event("", &s.frame)
}

func (s *sseWriter) error(code, message string) {
	_ = s.event("error", map[string]string{"code": code, "message": message, "traceId": s.frame.TraceID})
}

// done writes the last event. The writer holds since streamChat's push.hold, so the handler's
// return sends it with the response's end (openai.SSEWriter.Hold).
func (s *sseWriter) done(model string, u gateway.Usage, latency time.Duration) {
	_ = s.event("done", map[string]any{"done": true, "usage": usageFrame{
		ModelID: model, TokensIn: u.TokensIn, TokensOut: u.TokensOut,
		TotalTokens: u.TokensIn + u.TokensOut, LatencyMs: latency.Milliseconds(),
	}})
}
