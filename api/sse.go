package api

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/crispy-enigma/crispy/gateway"
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

// sseWriter is the one writer of a stream: it writes whole events and flushes each, and remembers
// the first write error so a gone client stops the producer.
type sseWriter struct {
	w     http.ResponseWriter
	rc    *http.ResponseController
	frame tokenFrame
	buf   []byte
	err   error
}

func newSSEWriter(w http.ResponseWriter, frame tokenFrame) *sseWriter {
	return &sseWriter{w: w, rc: http.NewResponseController(w), frame: frame, buf: make([]byte, 0, 256)}
}

func (s *sseWriter) event(name string, v any) error {
	if s.err != nil {
		return s.err
	}
	data, err := json.Marshal(v) // JSON never holds a raw newline, so one data: line per event
	if err != nil {
		s.err = err
		return err
	}
	b := s.buf[:0]
	if name != "" {
		b = append(b, "event: "...)
		b = append(b, name...)
		b = append(b, '\n')
	}
	b = append(b, "data: "...)
	b = append(b, data...)
	b = append(b, '\n', '\n')
	s.buf = b
	if _, err := s.w.Write(b); err != nil {
		s.err = err
		return err
	}
	if err := s.rc.Flush(); err != nil {
		s.err = err
	}
	return s.err
}

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
