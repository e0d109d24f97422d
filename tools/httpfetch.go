package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/crispy-enigma/crispy/config"
)

// Resolver resolves a host name; *net.Resolver implements it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// FetchOption configures http_fetch.
type FetchOption func(*fetchConfig)

type fetchConfig struct {
	resolver      Resolver
	maxBytes      int64
	timeout       time.Duration
	allowLoopback bool
	maxRedirects  int
}

// WithResolver replaces the DNS resolver (tests).
func WithResolver(r Resolver) FetchOption { return func(c *fetchConfig) { c.resolver = r } }

// WithMaxBytes sets the body size limit (default 1 MiB); a longer body is truncated.
func WithMaxBytes(n int64) FetchOption { return func(c *fetchConfig) { c.maxBytes = n } }

// WithFetchTimeout sets the time limit of one fetch, redirects included (default 10 s).
func WithFetchTimeout(d time.Duration) FetchOption { return func(c *fetchConfig) { c.timeout = d } }

// AllowLoopback lets http_fetch reach loopback addresses. Only for tests against an httptest server:
// every other refusal stays.
func AllowLoopback() FetchOption { return func(c *fetchConfig) { c.allowLoopback = true } }

// Well-known cloud metadata addresses outside the link-local range (which is refused anyway).
var metadataAddrs = []netip.Addr{
	netip.MustParseAddr("169.254.169.254"), // AWS, GCP, Azure, OpenStack
	netip.MustParseAddr("fd00:ec2::254"),   // AWS IMDS over IPv6
	netip.MustParseAddr("100.100.100.200"), // Alibaba Cloud
	netip.MustParseAddr("192.0.0.192"),     // Oracle Cloud
}

var refusedPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),     // "this network"
	netip.MustParsePrefix("100.64.0.0/10"), // carrier-grade NAT, shared address space
	netip.MustParsePrefix("192.0.0.0/24"),  // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"), // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),   // reserved, broadcast
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("100::/64"), // discard-only
	netip.MustParsePrefix("2001:db8::/32"),
}

// CheckAddr says whether http_fetch may connect to ip: loopback, private, link-local, unspecified,
// multicast, reserved and cloud metadata addresses are refused. IPv4-mapped, NAT64 (64:ff9b::/96)
// and 6to4 (2002::/16) addresses are judged by the IPv4 address they carry.
func CheckAddr(ip netip.Addr) error { return checkAddr(ip, false) }

func checkAddr(ip netip.Addr, allowLoopback bool) error {
	if !ip.IsValid() {
		return errors.New("invalid address")
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		b := ip.As16()
		if netip.MustParsePrefix("64:ff9b::/96").Contains(ip) {
			return checkAddr(netip.AddrFrom4([4]byte(b[12:16])), allowLoopback)
		}
		if netip.MustParsePrefix("2002::/16").Contains(ip) {
			return checkAddr(netip.AddrFrom4([4]byte(b[2:6])), allowLoopback)
		}
	}
	for _, m := range metadataAddrs {
		if ip == m {
			return fmt.Errorf("address %s is a cloud metadata address", ip)
		}
	}
	switch {
	case ip.IsLoopback():
		if allowLoopback {
			return nil
		}
		return fmt.Errorf("address %s is loopback", ip)
	case ip.IsPrivate():
		return fmt.Errorf("address %s is private", ip)
	case ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast():
		return fmt.Errorf("address %s is link-local", ip)
	case ip.IsUnspecified():
		return fmt.Errorf("address %s is unspecified", ip)
	case ip.IsMulticast(), ip.IsInterfaceLocalMulticast():
		return fmt.Errorf("address %s is multicast", ip)
	}
	for _, p := range refusedPrefixes {
		if p.Contains(ip) {
			return fmt.Errorf("address %s is reserved", ip)
		}
	}
	return nil
}

// hostAllowed reports whether host (no port) is one of the tenant's allowedHosts (case-insensitive,
// ports in the list ignored).
func hostAllowed(cfg *config.TenantConfig, host string) bool {
	if cfg == nil {
		return false
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	for _, h := range cfg.AllowedHosts {
		h = strings.ToLower(strings.TrimSpace(h))
		if hh, _, err := net.SplitHostPort(h); err == nil {
			h = hh
		}
		h = strings.Trim(h, "[]")
		if h != "" && h == host {
			return true
		}
	}
	return false
}

// errRefused marks a refused destination; it becomes the DESTINATION_REFUSED tool failure.
type refusedError struct{ reason string }

func (e *refusedError) Error() string { return e.reason }

func refused(format string, args ...any) error {
	return &refusedError{reason: fmt.Sprintf(format, args...)}
}

func checkURL(cfg *config.TenantConfig, u *url.URL) error {
	if u.Scheme != "http" && u.Scheme != "https" {
		return refused("only http and https URLs are fetched")
	}
	if u.User != nil {
		return refused("URLs with credentials are refused")
	}
	if u.Hostname() == "" {
		return refused("the URL has no host")
	}
	if !hostAllowed(cfg, u.Hostname()) {
		return refused("host %q is not in the tenant's allowedHosts", u.Hostname())
	}
	return nil
}

// newFetchClient builds a client whose every connection goes to an address that passed the check:
// the dialer resolves the name itself, refuses it if any address is refused (a name must not mix
// public and internal answers), and dials the checked IP, so DNS cannot change between check and
// connect. No proxy (a proxy would make the check meaningless); redirects are re-checked.
func newFetchClient(fc *fetchConfig, cfg *config.TenantConfig) *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		var ips []netip.Addr
		if ip, err := netip.ParseAddr(host); err == nil {
			ips = []netip.Addr{ip}
		} else {
			ips, err = fc.resolver.LookupNetIP(ctx, "ip", host)
			if err != nil {
				return nil, fmt.Errorf("resolve %s: %w", host, err)
			}
		}
		if len(ips) == 0 {
			return nil, fmt.Errorf("resolve %s: no addresses", host)
		}
		for _, ip := range ips {
			if err := checkAddr(ip, fc.allowLoopback); err != nil {
				return nil, refused("%s: %v", host, err)
			}
		}
		var lastErr error
		for _, ip := range ips {
			conn, err := dialer.DialContext(ctx, network, net.JoinHostPort(ip.Unmap().String(), port))
			if err == nil {
				return conn, nil
			}
			lastErr = err
		}
		return nil, lastErr
	}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           dial,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: fc.timeout,
		MaxIdleConns:          1,
		DisableKeepAlives:     true,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   fc.timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > fc.maxRedirects {
				return refused("more than %d redirects", fc.maxRedirects)
			}
			return checkURL(cfg, req.URL)
		},
	}
}

// HTTPFetch is the http_fetch tool: GET of a URL on one of the tenant's allowedHosts, after the
// address checks of CheckAddr, with a size limit (truncates) and a time limit.
func HTTPFetch(opts ...FetchOption) Tool {
	fc := &fetchConfig{resolver: net.DefaultResolver, maxBytes: 1 << 20, timeout: 10 * time.Second, maxRedirects: 5}
	for _, o := range opts {
		o(fc)
	}
	return Tool{
		Name:        "http_fetch",
		Description: "Fetch a web page or API response (GET) from one of the tenant's allowed hosts and return its text.",
		Parameters: json.RawMessage(`{"type":"object","properties":{
			"url":{"type":"string","description":"http or https URL on an allowed host","minLength":1,"maxLength":2048}},
			"required":["url"],"additionalProperties":false}`),
		Timeout:     fc.timeout + 2*time.Second,
		Permissions: []string{"http_fetch"},
		Run: func(ctx context.Context, call Call) (any, error) {
			var p struct {
				URL string `json:"url"`
			}
			if err := call.Decode(&p); err != nil {
				return nil, err
			}
			u, err := url.Parse(p.URL)
			if err != nil || !u.IsAbs() {
				return nil, Fail("INVALID_URL", "the URL is not an absolute http(s) URL")
			}
			if err := checkURL(call.Tenant, u); err != nil {
				return nil, Fail("DESTINATION_REFUSED", "%v", err)
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
			if err != nil {
				return nil, Fail("INVALID_URL", "the URL is not an absolute http(s) URL")
			}
			req.Header.Set("User-Agent", "crispy-enigma-http-fetch/1")
			resp, err := newFetchClient(fc, call.Tenant).Do(req)
			if err != nil {
				var re *refusedError
				if errors.As(err, &re) {
					return nil, Fail("DESTINATION_REFUSED", "%s", re.reason)
				}
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				return nil, &ToolFailure{Code: "FETCH_FAILED", Message: "the request failed", Cause: err}
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(io.LimitReader(resp.Body, fc.maxBytes+1))
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				return nil, &ToolFailure{Code: "FETCH_FAILED", Message: "reading the response failed", Cause: err}
			}
			truncated := int64(len(body)) > fc.maxBytes
			if truncated {
				body = body[:fc.maxBytes]
			}
			ct := resp.Header.Get("Content-Type")
			out := map[string]any{
				"url":          resp.Request.URL.String(),
				"status":       resp.StatusCode,
				"content_type": ct,
				"bytes":        len(body),
				"truncated":    truncated,
			}
			if isText(ct) {
				out["text"] = strings.ToValidUTF8(string(body), "\uFFFD")
			} else if utf8.Valid(body) {
				out["text"] = string(body)
			} else {
				out["text"] = ""
			}
			return out, nil
		},
	}
}

func isText(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return strings.HasPrefix(mt, "text/") || strings.HasSuffix(mt, "json") || strings.HasSuffix(mt, "xml") ||
		mt == "application/javascript"
}
