package api

import (
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

// sseWriter is the one writer of a /chat stream: whole events, each flushed, through the one SSE
// encoder (openai.SSEWriter), which remembers the first write error so a gone client stops the
// producer.
type sseWriter struct {
	enc   *openai.SSEWriter
	frame tokenFrame
}

func newSSEWriter(w http.ResponseWriter, frame tokenFrame) *sseWriter {
	return &sseWriter{enc: openai.NewSSEWriter(w), frame: frame}
}

func (s *sseWriter) event(name string, v any) error { return s.enc.Event(name, v) }

func (s *sseWriter) token(content string) error {
	s.frame.Content = content
	return s.event("", &s.frame)
}

func (s *sseWriter) error(code, message string) {
	_ = s.event("error", map[string]string{"code": code, "message": message, "traceId": s.frame.TraceID})
}

func (s *sseWriter) done(model string, u gateway.Usage, latency time.Duration) {
	_ = s.event("done", map[string]any{"done": true, "usage": usageFrame{
		ModelID: model, TokensIn: u.TokensIn, TokensOut: u.TokensOut,
		TotalTokens: u.TokensIn + u.TokensOut, LatencyMs: latency.Milliseconds(),
	}})
}
