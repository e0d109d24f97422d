package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// MaxSSELineBytes bounds one SSE line (and so one event's data line); a longer line is an error rather
// than unbounded memory for a misbehaving upstream.
const MaxSSELineBytes = 1 << 20

// SSEEvent is one dispatched server-sent event. Type is the "event:" field ("" means "message"). Data is
// the "data:" lines joined with "\n"; it is only valid until the next call to SSEReader.Next.
type SSEEvent struct {
	Type string
	ID   string
	Data []byte
}

// SSEReader parses a text/event-stream as the WHATWG HTML standard says: lines end in CRLF, LF or CR;
// ":" starts a comment; "field: value" with one optional space after the colon; several data lines join
// with "\n"; a blank line dispatches the event, and an event with no data line is not dispatched.
// Unlike the standard, data already collected from complete lines when the stream ends is dispatched
// rather than dropped, because some servers end with "data: [DONE]\n" without the blank line; an
// unterminated last line is dropped, since it may be a truncated chunk.
type SSEReader struct {
	sc      *bufio.Scanner
	data    []byte
	typ     []byte
	lastID  string
	hasData bool
	err     error
}

// NewSSEReader returns a reader of the events in r.
func NewSSEReader(r io.Reader) *SSEReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), MaxSSELineBytes)
	sc.Split(scanSSELines)
	return &SSEReader{sc: sc}
}

// errUnterminated marks the last line of a stream that ended without a line terminator.
var errUnterminated = errors.New("unterminated line")

// scanSSELines splits at CRLF, LF or a lone CR. A lone CR at the end of the buffer waits for more input,
// since it may be the first half of a CRLF.
func scanSSELines(data []byte, atEOF bool) (advance int, token []byte, err error) {
	i := bytes.IndexAny(data, "\r\n")
	if i >= 0 {
		if data[i] == '\n' {
			return i + 1, data[:i], nil
		}
		// data[i] == '\r'
		if i+1 < len(data) {
			if data[i+1] == '\n' {
				return i + 2, data[:i], nil
			}
			return i + 1, data[:i], nil
		}
		if atEOF {
			return i + 1, data[:i], nil
		}
		return 0, nil, nil // need more input to tell CR from CRLF
	}
	if atEOF && len(data) > 0 {
		return len(data), nil, errUnterminated
	}
	return 0, nil, nil
}

// Next returns the next event, io.EOF after the last one.
func (r *SSEReader) Next() (SSEEvent, error) {
	if r.err != nil {
		return SSEEvent{}, r.err
	}
	r.data = r.data[:0]
	r.typ = r.typ[:0]
	r.hasData = false
	for r.sc.Scan() {
		line := r.sc.Bytes()
		if len(line) == 0 {
			if !r.hasData {
				r.typ = r.typ[:0] // the standard resets the buffers without dispatching
				continue
			}
			return r.event(), nil
		}
		r.field(line)
	}
	err := r.sc.Err()
	switch {
	case err == nil || errors.Is(err, errUnterminated):
		r.err = io.EOF
	case errors.Is(err, bufio.ErrTooLong):
		r.err = fmt.Errorf("sse: line longer than %d bytes", MaxSSELineBytes)
		return SSEEvent{}, r.err
	default:
		r.err = err
		return SSEEvent{}, err
	}
	if r.hasData {
		return r.event(), nil
	}
	return SSEEvent{}, io.EOF
}

func (r *SSEReader) event() SSEEvent {
	data := r.data
	if len(data) > 0 && data[len(data)-1] == '\n' {
		data = data[:len(data)-1]
	}
	ev := SSEEvent{ID: r.lastID, Data: data}
	if len(r.typ) > 0 {
		ev.Type = string(r.typ)
	}
	r.hasData = false
	return ev
}

func (r *SSEReader) field(line []byte) {
	if line[0] == ':' {
		return // comment, e.g. a keep-alive
	}
	name, value := line, []byte(nil)
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		name, value = line[:i], line[i+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	switch string(name) { // the compiler does not allocate for a switch on string(bytes)
	case "data":
		r.data = append(r.data, value...)
		r.data = append(r.data, '\n')
		r.hasData = true
	case "event":
		r.typ = append(r.typ[:0], value...)
	case "id":
		if bytes.IndexByte(value, 0) < 0 && string(value) != r.lastID {
			r.lastID = string(value)
		}
	}
	// "retry" and unknown fields are ignored: we never reconnect a chat stream.
}
