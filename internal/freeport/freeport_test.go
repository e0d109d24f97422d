package freeport

import (
	"net"
	"testing"
)

func TestPortsAreDistinctAndBindable(t *testing.T) {
	lo, hi := candidates()
	seen := map[int]bool{}
	for range 20 {
		p := Port(t)
		if p < lo || p >= hi {
			t.Fatalf("port %d outside [%d, %d)", p, lo, hi)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
	ln, err := net.Listen("tcp", Addr(t))
	if err != nil {
		t.Fatalf("reserved address does not bind: %v", err)
	}
	ln.Close()
}
