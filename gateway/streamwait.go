package gateway

import (
	"context"
	"io"
)

type streamWaitKey struct{}

// WithStreamWait returns a context whose provider streams call wait before each read from the
// provider's connection: the reads that may wait for the model. The hook rides the context, as
// net/http/httptrace's do, because it belongs to the caller writing the reply and every stream
// wrapper between them (metering, routing, caps) already passes the context through.
//
// A caller relaying a stream to its client holds the events it writes and sends them when wait is
// called: the client then gets one write per read of the upstream instead of one per event, and no
// event waits behind the next token. wait runs in the goroutine calling the stream's Next.
func WithStreamWait(ctx context.Context, wait func()) context.Context {
	return context.WithValue(ctx, streamWaitKey{}, wait)
}

// waitingReader calls wait before each read of r.
type waitingReader struct {
	r    io.Reader
	wait func()
}

func (w *waitingReader) Read(p []byte) (int, error) {
	w.wait()
	return w.r.Read(p)
}

// withStreamWait is body with the context's stream wait hook, if any, called before each read.
func withStreamWait(ctx context.Context, body io.Reader) io.Reader {
	if wait, _ := ctx.Value(streamWaitKey{}).(func()); wait != nil {
		return &waitingReader{r: body, wait: wait}
	}
	return body
}
