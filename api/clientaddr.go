package api

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// maxForwardedHops bounds the X-Forwarded-For entries walked per request: a client can send a
// header of thousands of entries, and no real chain of trusted proxies is that long.
const maxForwardedHops = 16

// ClientAddrs finds the address of the client a request came from, for the rate limits of public
// tenants and the per-client caps: never a value the client chooses.
//
// X-Forwarded-For is believed only hop by hop from the right: the peer of the TCP connection must
// be a trusted proxy for the last entry to count, that entry must be a trusted proxy for the one
// before it to count, and so on. The first address that is not a trusted proxy is the client.
// Taking the leftmost entry instead would let any client name itself, since a proxy appends to
// whatever header the client sent.
type ClientAddrs struct {
	trusted []netip.Prefix
}

// NewClientAddrs returns a ClientAddrs trusting the given proxies (config.Env.ParsedTrustedProxies);
// with none, the peer address is always the client.
func NewClientAddrs(trusted []netip.Prefix) *ClientAddrs {
	return &ClientAddrs{trusted: trusted}
}

// Addr returns the client's address. It is the zero Addr only when RemoteAddr is not an IP
// address (e.g. a test request with a made-up RemoteAddr).
func (c *ClientAddrs) Addr(r *http.Request) netip.Addr {
	peer := parseHop(r.RemoteAddr)
	if !peer.IsValid() || !c.isTrusted(peer) {
		return peer
	}
	client := peer
	hops := 0
	values := r.Header.Values("X-Forwarded-For") // several headers form one list, in order
	for i := len(values) - 1; i >= 0; i-- {
		entries := strings.Split(values[i], ",")
		for j := len(entries) - 1; j >= 0; j-- {
			if hops == maxForwardedHops {
				return client
			}
			hops++
			hop := parseHop(strings.TrimSpace(entries[j]))
			if !hop.IsValid() {
				// Garbage written by (or passed through) a trusted proxy: what lies left of it
				// cannot be trusted, so the last trusted hop stands for the client.
				return client
			}
			client = hop
			if !c.isTrusted(hop) {
				return client
			}
		}
	}
	return client
}

// Key is the client's rate-limit identity: "ip:<v4>" or "ip:<v6 /64>". An IPv6 client usually holds
// a whole /64 and can pick a fresh address per request, so its limit covers the /64. The key is
// the raw RemoteAddr when it is not an address, so a misconfigured caller still gets one bucket.
func (c *ClientAddrs) Key(r *http.Request) string {
	return AddrKey(c.Addr(r), r.RemoteAddr)
}

// AddrKey is the rate-limit identity of a: its IPv4 address or its IPv6 /64. fallback is used when
// a is not valid.
func AddrKey(a netip.Addr, fallback string) string {
	switch {
	case !a.IsValid():
		return "ip:" + fallback
	case a.Is4():
		return "ip:" + a.String()
	default:
		p, _ := a.WithZone("").Prefix(64)
		return "ip:" + p.String()
	}
}

func (c *ClientAddrs) isTrusted(a netip.Addr) bool {
	for _, p := range c.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseHop parses one address as it appears in RemoteAddr or X-Forwarded-For: "ip", "ip:port",
// "[ipv6]" or "[ipv6]:port". IPv4-mapped IPv6 is unmapped, so one client has one form. A zone
// is dropped: it names a local interface, not a client.
func parseHop(s string) netip.Addr {
	if s == "" || len(s) > 64 {
		return netip.Addr{}
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone("")
	}
	host := s
	if h, _, err := net.SplitHostPort(s); err == nil {
		host = h
	} else if inner, ok := strings.CutPrefix(s, "["); ok {
		host, _ = strings.CutSuffix(inner, "]")
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap().WithZone("")
}
