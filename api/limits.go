package api

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// Defaults of the connection and body-rate limits. A probe held 1,000 connections open, each
// sending one body byte every 2 s (goroutines 81 → 1,081): nothing bounded a client's connections
// or how slowly it may send.
const (
	// DefaultMaxConnsPerClient bounds one client address's open connections. Browsers open 6 per
	// host; SDKs with a pool a few more.
	DefaultMaxConnsPerClient = 32
	// DefaultMinBodyRate is the slowest body upload accepted, in bytes per second, after
	// DefaultBodyGrace: a 1 MiB body at this rate takes 64 s.
	DefaultMinBodyRate = 16 << 10
	// DefaultBodyGrace is the time a body may take before the minimum rate applies.
	DefaultBodyGrace = 10 * time.Second
)

// ConnLimiter is a net.Listener that caps the open connections of each client address: a
// connection past the cap is closed as soon as it is accepted, before any byte is read, so a
// client holding connections open costs a file descriptor for a moment and no goroutine. Peers
// in the exempt prefixes (the trusted proxies, whose connections carry many clients) are not
// capped. Connections are keyed by the peer address, since X-Forwarded-For is not read yet; an
// IPv6 peer by its /64.
type ConnLimiter struct {
	net.Listener
	max    int
	exempt []netip.Prefix

	mu   sync.Mutex
	open map[string]int
}

// LimitConnsPerClient wraps l (max ≤ 0: DefaultMaxConnsPerClient).
func LimitConnsPerClient(l net.Listener, max int, exempt []netip.Prefix) *ConnLimiter {
	if max <= 0 {
		max = DefaultMaxConnsPerClient
	}
	return &ConnLimiter{Listener: l, max: max, exempt: exempt, open: make(map[string]int)}
}

// Accept returns the next connection within its client's cap; the others are closed.
func (l *ConnLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key, capped := l.key(c.RemoteAddr())
		if !capped {
			return c, nil
		}
		l.mu.Lock()
		ok := l.open[key] < l.max
		if ok {
			l.open[key]++
		}
		l.mu.Unlock()
		if !ok {
			_ = c.Close() // over the cap: the client sees the connection closed
			continue
		}
		return &limitedConn{Conn: c, release: func() { l.release(key) }}, nil
	}
}

// Open returns the number of capped connections open now, over all clients.
func (l *ConnLimiter) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, v := range l.open {
		n += v
	}
	return n
}

func (l *ConnLimiter) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[key]--; l.open[key] <= 0 {
		delete(l.open, key) // the map holds only clients with open connections
	}
}

// key is the cap's key for a peer; capped is false for exempt peers and non-IP addresses.
func (l *ConnLimiter) key(a net.Addr) (key string, capped bool) {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return "", false
	}
	ip := ap.Addr().Unmap()
	for _, p := range l.exempt {
		if p.Contains(ip) {
			return "", false
		}
	}
	return AddrKey(ip, ""), true
}

// limitedConn gives its slot back once, on the first Close.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// ErrBodyTooSlow is returned by a body read once the client sends slower than the minimum rate.
var ErrBodyTooSlow = errors.New("request body arrives too slowly")

// MinRateBody replaces r.Body with a reader that refuses a body arriving slower than minRate
// bytes per second once grace has passed (minRate ≤ 0: DefaultMinBodyRate; grace ≤ 0:
// DefaultBodyGrace). Before each read it moves the connection's read deadline (through
// http.ResponseController) to when the bytes received so far would be too few, so a stalled
// client is cut by the deadline, not by a goroutine waiting forever. A read past the deadline
// fails with ErrBodyTooSlow; answer it with 408. Where the connection has no deadline to set
// (HTTP/2 streams, test recorders), the body is left as is: http.Server's ReadTimeout still
// bounds it.
func MinRateBody(w http.ResponseWriter, r *http.Request, minRate int, grace time.Duration) {
	if r.Body == nil || r.Body == http.NoBody {
		return
	}
	if minRate <= 0 {
		minRate = DefaultMinBodyRate
	}
	if grace <= 0 {
		grace = DefaultBodyGrace
	}
	rc := http.NewResponseController(w)
	start := time.Now()
	if err := rc.SetReadDeadline(start.Add(grace)); err != nil {
		return
	}
	r.Body = &minRateReader{body: r.Body, rc: rc, start: start, grace: grace, rate: minRate}
}

type minRateReader struct {
	body  io.ReadCloser
	rc    *http.ResponseController
	start time.Time
	grace time.Duration
	rate  int
	read  int64
	done  bool
}

func (m *minRateReader) Read(p []byte) (int, error) {
	if !m.done {
		allowed := m.grace + time.Duration(m.read)*time.Second/time.Duration(m.rate)
		_ = m.rc.SetReadDeadline(m.start.Add(allowed))
	}
	n, err := m.body.Read(p)
	m.read += int64(n)
	if err == io.EOF && !m.done {
		m.done = true
		// The body is in: lift the deadline so the response and a kept-alive connection's
		// next request are governed by the server's own timeouts again.
		_ = m.rc.SetReadDeadline(time.Time{})
	}
	var ne net.Error
	if err != nil && errors.As(err, &ne) && ne.Timeout() {
		return n, ErrBodyTooSlow
	}
	return n, err
}

func (m *minRateReader) Close() error { return m.body.Close() }

// RecommendedServerTimeouts sets the http.Server timeouts a public listener needs beside
// ConnLimiter and MinRateBody: headers within ReadHeaderTimeout, the whole request within
// ReadTimeout (a hard cap behind the rate check), an idle kept-alive connection closed after
// IdleTimeout. WriteTimeout stays 0: it would cut long SSE streams.
func RecommendedServerTimeouts(srv *http.Server) {
	srv.ReadHeaderTimeout = 10 * time.Second
	srv.ReadTimeout = 2 * time.Minute
	srv.IdleTimeout = 120 * time.Second
	srv.MaxHeaderBytes = 2 * MaxHeaderBytes // between the two, resolveTenant answers with the envelope
}

// DefaultMaxConcurrentPerTenant bounds one tenant's requests in flight (open SSE streams
// included), so one tenant's slow or stalled clients cannot take every goroutine and connection
// of the node from the others.
const DefaultMaxConcurrentPerTenant = 256

// TenantSlots caps the requests each tenant has in flight. Safe for concurrent use; a tenant
// with nothing in flight holds no memory.
type TenantSlots struct {
	max  int
	mu   sync.Mutex
	busy map[string]int
}

// NewTenantSlots returns slots of max requests per tenant (max ≤ 0: DefaultMaxConcurrentPerTenant).
func NewTenantSlots(max int) *TenantSlots {
	if max <= 0 {
		max = DefaultMaxConcurrentPerTenant
	}
	return &TenantSlots{max: max, busy: make(map[string]int)}
}

// Acquire takes one of the tenant's slots. When none is free it returns ok false at once (answer
// 503 with Retry-After: queueing would only hold the connection longer); otherwise call release,
// once, when the request (or its stream) ends.
func (s *TenantSlots) Acquire(tenant string) (release func(), ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.busy[tenant] >= s.max {
		return nil, false
	}
	s.busy[tenant]++
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.busy[tenant]--; s.busy[tenant] <= 0 {
				delete(s.busy, tenant)
			}
		})
	}, true
}

// InFlight returns the tenant's requests in flight.
func (s *TenantSlots) InFlight(tenant string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.busy[tenant]
}
