package api

import (
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/config"
)

// TestClientAddr pins the right-to-left walk of X-Forwarded-For. The attack it stops: on a public
// tenant the rate limit was keyed on an ID the client sends, so a client varying it got 30 of 30
// requests through a 5/minute limit. The client address is that key now, and X-Forwarded-For is
// believed only from trusted proxies, so a client cannot pick it either.
func TestClientAddr(t *testing.T) {
	trusted, err := config.ParseTrustedProxies("10.0.0.0/8, 2001:db8:ffff::/48")
	if err != nil {
		t.Fatal(err)
	}
	addrs := NewClientAddrs(trusted)
	tests := []struct {
		name   string
		remote string
		xff    []string
		want   string
	}{
		{"no proxy", "198.51.100.7:4242", nil, "198.51.100.7"},
		{"untrusted peer: its X-Forwarded-For is ignored", "198.51.100.7:4242", []string{"1.2.3.4"}, "198.51.100.7"},
		{"trusted peer names the client", "10.0.0.1:80", []string{"203.0.113.9"}, "203.0.113.9"},
		{"a spoofed leftmost entry is not believed", "10.0.0.1:80", []string{"6.6.6.6, 203.0.113.9"}, "203.0.113.9"},
		{"a chain of trusted proxies is walked", "10.0.0.1:80", []string{"6.6.6.6, 203.0.113.9, 10.2.3.4"}, "203.0.113.9"},
		{"several headers form one list", "10.0.0.1:80", []string{"6.6.6.6", "203.0.113.9", "10.2.3.4"}, "203.0.113.9"},
		{"all hops trusted: the leftmost", "10.0.0.1:80", []string{"10.9.9.9, 10.2.3.4"}, "10.9.9.9"},
		{"trusted peer without header", "10.0.0.1:80", nil, "10.0.0.1"},
		{"garbage stops the walk at the last trusted hop", "10.0.0.1:80", []string{"203.0.113.9, not-an-ip, 10.2.3.4"}, "10.2.3.4"},
		{"empty entry stops the walk", "10.0.0.1:80", []string{"203.0.113.9,,"}, "10.0.0.1"},
		{"entries with ports and brackets", "10.0.0.1:80", []string{"[2001:db8::1]:443, 10.2.3.4:80"}, "2001:db8::1"},
		{"IPv4-mapped IPv6 is unmapped", "[::ffff:10.0.0.1]:80", []string{"::ffff:203.0.113.9"}, "203.0.113.9"},
		{"IPv6 trusted proxy", "[2001:db8:ffff::5]:80", []string{"2001:db8:1:2::9"}, "2001:db8:1:2::9"},
		{"zone dropped", "[fe80::1%eth0]:80", nil, "fe80::1"},
		{"hops beyond the bound are not walked", "10.0.0.1:80", []string{"203.0.113.9, " + strings.Repeat("10.1.1.1, ", 40) + "10.1.1.2"}, "10.1.1.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tt.remote
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := addrs.Addr(r); got != netip.MustParseAddr(tt.want) {
				t.Errorf("Addr = %v, want %s", got, tt.want)
			}
		})
	}
}

func TestClientAddrKey(t *testing.T) {
	addrs := NewClientAddrs(nil)
	tests := []struct{ remote, want, why string }{
		{"198.51.100.7:1", "ip:198.51.100.7", ""},
		{"[2001:db8:1:2:aaaa::1]:1", "ip:2001:db8:1:2::/64", "an IPv6 client holds its /64: one bucket for all of it"},
		{"[2001:db8:1:2:bbbb::2]:1", "ip:2001:db8:1:2::/64", ""},
		{"pipe", "ip:pipe", "not an address: one bucket per RemoteAddr"},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tt.remote
		if got := addrs.Key(r); got != tt.want {
			t.Errorf("%s: Key = %q, want %q %s", tt.remote, got, tt.want, tt.why)
		}
	}
}

// FuzzClientAddr: any RemoteAddr and X-Forwarded-For give an address that is the peer or appears
// in the header, without panicking, and Key stays short.
func FuzzClientAddr(f *testing.F) {
	f.Add("10.0.0.1:80", "203.0.113.9, 10.2.3.4")
	f.Add("[::ffff:10.0.0.1]:80", "[2001:db8::1]:443,,x")
	f.Add("198.51.100.7:1", "")
	trusted, _ := config.ParseTrustedProxies("10.0.0.0/8,::ffff:0:0/96")
	addrs := NewClientAddrs(trusted)
	f.Fuzz(func(t *testing.T, remote, xff string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = remote
		r.Header.Set("X-Forwarded-For", xff)
		a := addrs.Addr(r)
		found := a == parseHop(remote)
		for _, e := range strings.Split(xff, ",") {
			found = found || (a.IsValid() && a == parseHop(strings.TrimSpace(e)))
		}
		if !found {
			t.Fatalf("Addr %v is neither the peer %q nor an entry of %q", a, remote, xff)
		}
		if k := addrs.Key(r); len(k) > len(remote)+64 {
			t.Fatalf("Key %q too long", k)
		}
	})
}
