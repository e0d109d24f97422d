package gateway

import (
	"io"
	"time"
)

// A streamed reply ends twice: with the data: [DONE] event, and then with the end of the HTTP body
// (HTTP/1.1's last chunk, HTTP/2's END_STREAM). Servers that flush [DONE] and then return from their
// handler (llama.cpp, Ollama, Go and Python servers alike) send the two apart. net/http reuses a
// connection only when its body was read to the end, so a caller that stops at [DONE] and closes
// costs every streamed call a new connection: a TCP and TLS handshake to a provider. A drainer reads
// that end off the caller's path.
const (
	// drainBytes bounds what is read after [DONE]: the body's end is a few bytes; a server that goes
	// on sending is not worth its connection.
	drainBytes = 4 << 10
	// drainWait bounds how long the end may take after [DONE]. Servers send it at once; one that does
	// not loses its connection, as it did before, and holds a slot no longer than this.
	drainWait = 250 * time.Millisecond
)

// drainer reads the end of replies that ended with [DONE] so their connections are reused. At most
// as many drains run at once as the transport keeps idle connections per host, since a drained
// connection beyond those would be closed anyway; the rest are closed at once.
type drainer struct {
	slots chan struct{}
}

// newDrainer runs at most slots drains at once; the providers pass MaxIdleConnsPerHost.
func newDrainer(slots int) *drainer {
	return &drainer{slots: make(chan struct{}, slots)}
}

// finish releases a reply whose content ended: it reads body to its end, within drainBytes and
// drainWait, then closes it and calls release (which cancels the request). It returns at once; when
// no slot is free it closes body and releases without reading.
func (d *drainer) finish(body io.ReadCloser, release func()) {
	select {
	case d.slots <- struct{}{}:
	default:
		body.Close()
		release()
		return
	}
	go func() {
		defer func() { <-d.slots }()
		// release cancels the request: a body still blocked in Read returns, and its
		// connection is closed instead of reused.
		t := time.AfterFunc(drainWait, release)
		_, _ = io.Copy(io.Discard, io.LimitReader(body, drainBytes))
		t.Stop()
		body.Close()
		release()
	}()
}
