package api

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// serveOn starts srv on a fresh 127.0.0.1 listener wrapped by wrap and returns the address.
func serveOn(t *testing.T, srv *http.Server, wrap func(net.Listener) net.Listener) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(wrap(ln)) //nolint:errcheck // ends with Close
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// TestConnLimiterCapsSlowClients replays the attack: 1,000 connections from one address, each
// sending a request whose body never arrives, were all kept open (goroutines 81 → 1,081). With
// the cap, at most max are ever open at once; the others are closed at accept, before a
// goroutine serves them.
func TestConnLimiterCapsSlowClients(t *testing.T) {
	const conns, max = 1000, 8
	var open atomic.Int64
	overCap := make(chan int64, 1)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) }),
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				if n := open.Add(1); n > max {
					select {
					case overCap <- n:
					default:
					}
				}
			case http.StateClosed, http.StateHijacked:
				open.Add(-1)
			}
		},
	}
	var limiter *ConnLimiter
	addr := serveOn(t, srv, func(l net.Listener) net.Listener { limiter = LimitConnsPerClient(l, max, nil); return limiter })

	rejected := make(chan struct{}, conns)
	var readers sync.WaitGroup
	for range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer c.Close()
		// One byte of a 100-byte body, then nothing: a slow client.
		if _, err := fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nx"); err != nil {
			rejected <- struct{}{} // the server closed it already
			continue
		}
		readers.Add(1)
		go func() {
			defer readers.Done()
			if _, err := c.Read(make([]byte, 1)); err != nil && !errors.Is(err, net.ErrClosed) {
				rejected <- struct{}{} // EOF or reset: closed by the server
			}
		}()
	}
	// Every connection past the cap is closed by the server at once, without waiting for its
	// body; the held ones stay until the server closes.
	for range conns - max {
		select {
		case <-rejected:
		case n := <-overCap:
			t.Fatalf("%d connections from one client served at once, cap %d", n, max)
		}
	}
	if n := limiter.Open(); n != max {
		t.Fatalf("limiter holds %d connections, want the cap %d", n, max)
	}
	srv.Close()
	readers.Wait()
	if n := limiter.Open(); n != 0 {
		t.Fatalf("after close the limiter still counts %d connections", n)
	}
}

// TestConnLimiterExemptsTrustedProxies: a trusted proxy's connections carry many clients.
func TestConnLimiterExemptsTrustedProxies(t *testing.T) {
	l := LimitConnsPerClient(nil, 1, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")})
	if _, capped := l.key(&net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 1}); capped {
		t.Fatal("a trusted proxy is capped")
	}
	if k, capped := l.key(&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2::5"), Port: 1}); !capped || k != "ip:2001:db8:1:2::/64" {
		t.Fatalf("IPv6 peer: %q %v", k, capped)
	}
}

// TestMinRateBodyCutsAStalledUpload: a client that sends one byte of its body and stalls is cut
// once the grace is over and the bytes received fall below the minimum rate, instead of holding
// a goroutine until it gives up.
func TestMinRateBodyCutsAStalledUpload(t *testing.T) {
	got := make(chan error, 1)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		MinRateBody(w, r, 1000, 50*time.Millisecond)
		_, err := io.Copy(io.Discard, r.Body)
		got <- err
		if errors.Is(err, ErrBodyTooSlow) {
			w.WriteHeader(http.StatusRequestTimeout)
		}
	})}
	addr := serveOn(t, srv, func(l net.Listener) net.Listener { return l })
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nx")
	if err := <-got; !errors.Is(err, ErrBodyTooSlow) {
		t.Fatalf("body read: %v, want ErrBodyTooSlow", err)
	}

	// A body that arrives in time is read whole, and the connection serves the next request.
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	br := bufio.NewReader(c2)
	for range 2 {
		fmt.Fprintf(c2, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
		if err := <-got; err != nil {
			t.Fatalf("prompt body: %v", err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("response: %v %v", resp, err)
		}
		resp.Body.Close()
	}
}

// TestTenantSlots: one tenant's requests in flight are capped; another tenant is not affected,
// and a released slot is free again (once, however often release is called).
func TestTenantSlots(t *testing.T) {
	s := NewTenantSlots(2)
	r1, ok1 := s.Acquire("noisy")
	_, ok2 := s.Acquire("noisy")
	if _, ok := s.Acquire("noisy"); !ok1 || !ok2 || ok {
		t.Fatalf("noisy: %v %v, third %v", ok1, ok2, ok)
	}
	if rel, ok := s.Acquire("quiet"); !ok {
		t.Fatal("another tenant is refused")
	} else {
		rel()
	}
	r1()
	r1()
	if n := s.InFlight("noisy"); n != 1 {
		t.Fatalf("in flight after one release (called twice): %d, want 1", n)
	}
	if _, ok := s.Acquire("noisy"); !ok {
		t.Fatal("a released slot is not free")
	}
	if n := s.InFlight("quiet"); n != 0 || len(s.busy) != 1 {
		t.Fatalf("idle tenants hold state: %v", s.busy)
	}
}
