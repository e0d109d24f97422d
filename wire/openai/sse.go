package openai

import (
	"encoding/json"
	"net/http"
)

// SSEWriter writes an OpenAI event stream: one `data: <json>` line per event (a named `event:` line
// first for the Responses API), a blank line after each, each flushed unless held (Hold), and
// `data: [DONE]` at the end of a chat completion stream. It is the one writer of its stream and
// remembers the first write error, so a producer stops as soon as the client is gone. Not safe for
// concurrent use.
type SSEWriter struct {
	w      http.ResponseWriter
	rc     *http.ResponseController
	buf    []byte
	err    error
	held   bool
	unsent bool // held events not yet flushed
}

// NewSSEWriter returns a writer on w. The caller sets the headers (SetSSEHeaders) and the status.
func NewSSEWriter(w http.ResponseWriter) *SSEWriter {
	return &SSEWriter{w: w, rc: http.NewResponseController(w), buf: make([]byte, 0, 512)}
}

// SetSSEHeaders sets the headers of an event stream on h.
func SetSSEHeaders(h http.Header) {
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // proxies must not buffer tokens
}

// Data writes one unnamed event carrying v as JSON.
func (s *SSEWriter) Data(v any) error { return s.Event("", v) }

// Event writes one event named name ("" for none) carrying v as JSON. JSON never holds a raw newline,
// so the payload is always one data: line.
func (s *SSEWriter) Event(name string, v any) error {
	if s.err != nil {
		return s.err
	}
	data, err := json.Marshal(v)
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
	return s.write(b)
}

// Done writes the `data: [DONE]` terminator of a chat completion stream, held with whatever is held
// (Hold): the handler returns next, and its return sends them with the response's end.
func (s *SSEWriter) Done() error {
	if s.err != nil {
		return s.err
	}
	s.Hold()
	return s.write([]byte("data: [DONE]\n\n"))
}

// Hold leaves the events written from now on in the response's buffer until Flush, or until the
// handler returns: events that follow one another with nothing to wait for in between, such as a
// stream's opening or closing events, then reach the client in one write instead of one each (a
// write and a wakeup of the client per event). What is still held when the handler returns goes
// out with the response's end (the closing chunk) in one write, where a flush before it would make
// it two. Hold nothing the client is waiting for across a wait, such as a model's next token.
func (s *SSEWriter) Hold() { s.held = true }

// Flush sends the held events and ends Hold.
func (s *SSEWriter) Flush() error {
	s.held = false
	return s.flush()
}

// Push sends the held events, if any, and goes on holding. A relay that holds a model's tokens calls
// it before each wait for more (gateway.WithStreamWait): the client gets the tokens of one upstream
// read in one write, and none later than when the relay would wait for the next.
func (s *SSEWriter) Push() error {
	if !s.unsent {
		return s.err
	}
	return s.flush()
}

func (s *SSEWriter) flush() error {
	s.unsent = false
	if s.err != nil {
		return s.err
	}
	if err := s.rc.Flush(); err != nil {
		s.err = err
	}
	return s.err
}

// Err is the first write error, nil while the client is reading.
func (s *SSEWriter) Err() error { return s.err }

func (s *SSEWriter) write(b []byte) error {
	if _, err := s.w.Write(b); err != nil {
		s.err = err
		return err
	}
	if s.held {
		s.unsent = true
		return nil
	}
	return s.flush()
}
