package gateway

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingUpstream serves handle and counts the connections it accepted; start starts it (nil:
// plain HTTP/1.1).
func countingUpstream(t testing.TB, handle http.HandlerFunc, start func(*httptest.Server)) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(handle)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	if start == nil {
		start = (*httptest.Server).Start
	}
	start(srv)
	t.Cleanup(srv.Close)
	return srv, &conns
}

// waitDrained waits until no drain of d runs: a drained connection is back in the idle pool by
// then (net/http returns it before the read that saw the body's end returns).
func waitDrained(t *testing.T, d *drainer) {
	t.Helper()
	for len(d.slots) > 0 {
		if t.Context().Err() != nil {
			t.Fatal("drain still running at the test's deadline")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestOpenAICompatibleReusesTheConnectionOfAStreamThatEnded(t *testing.T) {
	for _, tc := range []struct {
		name string
		// after runs between [DONE] and the end of the body
		after time.Duration
		// cancelCaller cancels the caller's context right after Close, as a handler returning does
		cancelCaller bool
	}{
		{name: "body ends at once"},
		{name: "body ends after a pause", after: 5 * time.Millisecond},
		{name: "caller gone after close", after: 5 * time.Millisecond, cancelCaller: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, conns := countingUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				startSSE(w)
				writeEvents(w, roleChunk, deltaChunk("hi"), finishChunk, usageChunk(3, 1), "[DONE]")
				time.Sleep(tc.after) // the handler returns: net/http writes the body's end
			}, nil)
			p := NewOpenAICompatible(OpenAIOptions{Name: "p", BaseURL: srv.URL})
			const calls = 5
			for range calls {
				ctx, cancel := context.WithCancel(t.Context())
				s, err := p.OpenChat(ctx, ChatRequest{Model: "m", Messages: []Message{{Role: "user", Content: "hi"}}})
				if err != nil {
					t.Fatal(err)
				}
				if toks, err := drain(t, s); err != nil || len(toks) != 1 {
					t.Fatalf("stream = %q, %v", toks, err)
				}
				s.Close()
				if tc.cancelCaller {
					cancel()
				}
				waitDrained(t, p.drains)
				cancel()
			}
			if got := conns.Load(); got != 1 {
				t.Errorf("%d calls opened %d connections, want 1", calls, got)
			}
		})
	}
}

func TestOpenAICompatibleClosesAStreamWhoseBodyDoesNotEnd(t *testing.T) {
	cancelled := make(chan struct{})
	var once sync.Once
	srv, conns := countingUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		startSSE(w)
		writeEvents(w, deltaChunk("hi"), finishChunk, "[DONE]")
		<-r.Context().Done() // never ends the body
		once.Do(func() { close(cancelled) })
	}, nil)
	p := NewOpenAICompatible(OpenAIOptions{Name: "p", BaseURL: srv.URL})
	s, err := p.OpenChat(t.Context(), ChatRequest{Model: "m"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := drain(t, s); err != nil {
		t.Fatal(err)
	}
	s.Close() // returns at once; the drain gives up after drainWait
	<-cancelled
	waitDrained(t, p.drains)
	s2, err := p.OpenChat(t.Context(), ChatRequest{Model: "m"})
	if err != nil {
		t.Fatal(err)
	}
	s2.Close()
	if got := conns.Load(); got != 2 {
		t.Errorf("connections = %d, want 2: the first one is not reused", got)
	}
}

// body is an io.ReadCloser that blocks in Read until closed.
type body struct {
	closed chan struct{}
	once   sync.Once
}

func newBody() *body { return &body{closed: make(chan struct{})} }

func (b *body) Read([]byte) (int, error) {
	<-b.closed
	return 0, io.ErrClosedPipe
}

func (b *body) Close() error {
	b.once.Do(func() { close(b.closed) })
	return nil
}

func TestDrainerClosesAtOnceWhenNoSlotIsFree(t *testing.T) {
	d := newDrainer(1)
	first := newBody()
	var firstReleased atomic.Bool
	d.finish(first, func() { firstReleased.Store(true); first.Close() })

	second := newBody()
	released := false
	d.finish(second, func() { released = true })
	select {
	case <-second.closed:
	default:
		t.Error("a finish without a free slot left its body open")
	}
	if !released {
		t.Error("a finish without a free slot did not release its request")
	}
	// The first drain ends when its request is released (drainWait), and frees its slot.
	waitDrained(t, d)
	if !firstReleased.Load() {
		t.Error("the drain freed its slot without releasing its request")
	}
}

// BenchmarkStreamedCallTLS is one streamed call after another to a TLS upstream that ends its body
// after [DONE], as llama.cpp and Ollama do: what a drained connection saves is the handshake (over
// HTTP/1.1; HTTP/2 kept its connection before too, and now ends the stream without a reset).
func BenchmarkStreamedCallTLS(b *testing.B) {
	for _, h2 := range []bool{false, true} {
		name := "http1.1"
		if h2 {
			name = "h2"
		}
		b.Run(name, func(b *testing.B) {
			srv, conns := countingUpstream(b, func(w http.ResponseWriter, r *http.Request) {
				startSSE(w)
				writeEvents(w, roleChunk, deltaChunk("hi"), finishChunk, usageChunk(3, 1), "[DONE]")
			}, func(srv *httptest.Server) {
				srv.EnableHTTP2 = h2
				srv.StartTLS()
			})
			p := NewOpenAICompatible(OpenAIOptions{Name: "p", BaseURL: srv.URL, HTTPClient: srv.Client()})
			req := ChatRequest{Model: "m", Messages: []Message{{Role: "user", Content: "hi"}}}
			for b.Loop() {
				s, err := p.OpenChat(b.Context(), req)
				if err != nil {
					b.Fatal(err)
				}
				for {
					if _, err := s.Next(b.Context()); err != nil {
						break
					}
				}
				s.Close()
			}
			b.ReportMetric(float64(conns.Load())/float64(b.N), "conns/op")
		})
	}
}
