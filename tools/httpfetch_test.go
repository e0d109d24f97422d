package tools

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/crispy-enigma/crispy/config"
)

func TestCheckAddr(t *testing.T) {
	tests := []struct {
		ip      string
		allowed bool
		why     string
	}{
		{"127.0.0.1", false, "loopback"},
		{"127.8.9.10", false, "all of 127/8 is loopback"},
		{"::1", false, "IPv6 loopback"},
		{"::ffff:127.0.0.1", false, "IPv4-mapped loopback"},
		{"10.0.0.1", false, "private"},
		{"172.16.0.1", false, "private"},
		{"172.31.255.255", false, "private"},
		{"192.168.1.1", false, "private"},
		{"fd12::1", false, "unique local"},
		{"169.254.169.254", false, "cloud metadata"},
		{"169.254.1.1", false, "link-local"},
		{"fe80::1", false, "IPv6 link-local"},
		{"fd00:ec2::254", false, "AWS IMDS over IPv6"},
		{"100.100.100.200", false, "Alibaba metadata"},
		{"100.64.0.1", false, "carrier-grade NAT"},
		{"0.0.0.0", false, "unspecified"},
		{"::", false, "IPv6 unspecified"},
		{"224.0.0.1", false, "multicast"},
		{"ff02::1", false, "IPv6 multicast"},
		{"255.255.255.255", false, "broadcast"},
		{"64:ff9b::a00:1", false, "NAT64 of 10.0.0.1"},
		{"2002:7f00:1::", false, "6to4 of 127.0.0.1"},
		{"93.184.215.14", true, "a public IPv4 address"},
		{"8.8.8.8", true, "a public IPv4 address"},
		{"2606:4700:4700::1111", true, "a public IPv6 address"},
		{"172.32.0.1", true, "just outside 172.16/12"},
	}
	for _, tc := range tests {
		t.Run(tc.ip, func(t *testing.T) {
			err := CheckAddr(netip.MustParseAddr(tc.ip))
			if (err == nil) != tc.allowed {
				t.Errorf("CheckAddr(%s) = %v, want allowed=%v (%s)", tc.ip, err, tc.allowed, tc.why)
			}
		})
	}
}

// fakeResolver maps names to addresses so tests never touch real DNS.
type fakeResolver map[string][]netip.Addr

func (f fakeResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	if a, ok := f[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func fetchTenant(hosts ...string) *config.TenantConfig {
	return &config.TenantConfig{TenantID: "acme", FeatureFlags: map[string]bool{"http_fetch": true}, AllowedHosts: hosts}
}

func fetch(t *testing.T, r *Registry, cfg *config.TenantConfig, rawURL string) (Result, *Error) {
	t.Helper()
	p, _ := json.Marshal(map[string]string{"url": rawURL})
	return r.Execute(context.Background(), ExecuteRequest{Tenant: cfg, Tool: "http_fetch", Params: p})
}

func TestHTTPFetchAgainstLoopbackServer(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		switch r.URL.Path {
		case "/big":
			w.Header().Set("Content-Type", "text/plain")
			w.Write([]byte(strings.Repeat("x", 5000)))
		case "/redirect-out":
			http.Redirect(w, r, "http://not-allowed.test/", http.StatusFound)
		case "/redirect-in":
			http.Redirect(w, r, "/hello", http.StatusFound)
		default:
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Write([]byte("hello " + r.Method))
		}
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	port := u.Port()

	resolver := fakeResolver{
		"app.test":      {netip.MustParseAddr("127.0.0.1")},
		"internal.test": {netip.MustParseAddr("10.1.2.3")},
		"mixed.test":    {netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("169.254.169.254")},
	}
	loopOK := mustRegistry(t, HTTPFetch(AllowLoopback(), WithResolver(resolver), WithMaxBytes(1000)))
	strict := mustRegistry(t, HTTPFetch(WithResolver(resolver)))

	t.Run("fetches via the checked IP of a resolved name", func(t *testing.T) {
		// app.test exists only in the fake resolver: success proves the dialer connected to the
		// address it checked instead of resolving again.
		res, err := fetch(t, loopOK, fetchTenant("app.test"), "http://app.test:"+port+"/hello")
		if err != nil || !res.Success {
			t.Fatalf("fetch = %+v, %v", res, err)
		}
		d := res.Data.(map[string]any)
		if d["status"] != 200 || d["text"] != "hello GET" || d["content_type"] != "text/plain; charset=utf-8" {
			t.Errorf("data = %v", d)
		}
	})
	t.Run("size limit truncates", func(t *testing.T) {
		res, err := fetch(t, loopOK, fetchTenant("app.test"), "http://app.test:"+port+"/big")
		if err != nil || !res.Success {
			t.Fatalf("fetch = %+v, %v", res, err)
		}
		d := res.Data.(map[string]any)
		if d["truncated"] != true || len(d["text"].(string)) != 1000 {
			t.Errorf("truncated=%v len=%d, want true 1000", d["truncated"], len(d["text"].(string)))
		}
	})
	t.Run("redirect within allowed hosts is followed", func(t *testing.T) {
		res, err := fetch(t, loopOK, fetchTenant("app.test"), "http://app.test:"+port+"/redirect-in")
		if err != nil || !res.Success || res.Data.(map[string]any)["text"] != "hello GET" {
			t.Fatalf("fetch = %+v, %v", res, err)
		}
	})

	refusals := []struct {
		name string
		reg  *Registry
		cfg  *config.TenantConfig
		url  string
	}{
		{"loopback refused without the test option", strict, fetchTenant("app.test"), "http://app.test:" + port + "/hello"},
		{"loopback literal refused", strict, fetchTenant("127.0.0.1"), srv.URL + "/hello"},
		{"host not in allowedHosts", loopOK, fetchTenant("other.test"), "http://app.test:" + port + "/hello"},
		{"name resolving to a private address", loopOK, fetchTenant("internal.test"), "http://internal.test/"},
		{"name resolving to loopback and metadata", loopOK, fetchTenant("mixed.test"), "http://mixed.test:" + port + "/"},
		{"metadata literal", loopOK, fetchTenant("169.254.169.254"), "http://169.254.169.254/latest/meta-data/"},
		{"private literal", loopOK, fetchTenant("10.0.0.1"), "http://10.0.0.1/"},
		{"redirect to an unlisted host", loopOK, fetchTenant("app.test"), "http://app.test:" + port + "/redirect-out"},
		{"not http", loopOK, fetchTenant("app.test"), "file:///etc/passwd"},
		{"credentials in URL", loopOK, fetchTenant("app.test"), "http://u:p@app.test:" + port + "/"},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			before := hits.Load()
			res, err := fetch(t, tc.reg, tc.cfg, tc.url)
			if err != nil {
				t.Fatalf("dispatch error %v, want a DESTINATION_REFUSED tool failure", err)
			}
			if res.Success || res.Error.Code != "DESTINATION_REFUSED" {
				t.Fatalf("res = %+v (%v), want DESTINATION_REFUSED", res, res.Error)
			}
			if tc.name != "redirect to an unlisted host" && hits.Load() != before {
				t.Errorf("the server was reached")
			}
		})
	}

	t.Run("needs the http_fetch permission", func(t *testing.T) {
		cfg := fetchTenant("app.test")
		cfg.FeatureFlags = nil
		_, err := fetch(t, loopOK, cfg, "http://app.test:"+port+"/hello")
		if err == nil || err.Code != CodePermissionDenied {
			t.Fatalf("err = %v, want PERMISSION_DENIED", err)
		}
	})
}
