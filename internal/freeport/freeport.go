// Package freeport hands tests loopback ports that nothing else will take while the test runs.
//
// Asking the kernel for port 0 and closing the listener is racy: the kernel gives the same port to
// the next process that binds port 0 or dials out, and a multi-node test that picks a node's ports
// before starting its peers (whose actor remotes do bind port 0) then fails with "address already
// in use". So ports come from just below the kernel's ephemeral range, which it never hands out by
// itself, and each is reserved across the test processes of one machine by a lock file held until
// the test ends.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// span is how many ports below the ephemeral range are candidates.
const span = 8000

// Port returns a free loopback port reserved for t.
func Port(t testing.TB) int {
	t.Helper()
	p, err := reserve(t)
	if err != nil {
		t.Fatalf("reserve a loopback port: %v", err)
	}
	return p
}

// Addr returns 127.0.0.1:<port> with a port reserved for t.
func Addr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(Port(t)))
}

func reserve(t testing.TB) (int, error) {
	lo, hi := candidates()
	dir := filepath.Join(os.TempDir(), "crispy-freeport")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return 0, fmt.Errorf("lock dir: %w", err)
	}
	n := hi - lo
	start := rand.IntN(n)
	for i := range n {
		port := lo + (start+i)%n
		f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(port)), os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			return 0, fmt.Errorf("lock file: %w", err)
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
			f.Close() // another test process holds it
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			f.Close() // bound by something that does not take part in the locking
			continue
		}
		ln.Close()
		t.Cleanup(func() { f.Close() })
		return port, nil
	}
	return 0, fmt.Errorf("no free port in [%d, %d)", lo, hi)
}

// candidates is the range just below the kernel's ephemeral ports (32768–60999 by default on
// Linux), or above it when it starts too low to leave room.
func candidates() (lo, hi int) {
	elo, ehi := 32768, 60999
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			a, errA := strconv.Atoi(f[0])
			b, errB := strconv.Atoi(f[1])
			if errA == nil && errB == nil && a <= b {
				elo, ehi = a, b
			}
		}
	}
	if elo-span >= 10000 {
		return elo - span, elo
	}
	if ehi+span <= 65535 {
		return ehi + 1, ehi + 1 + span
	}
	return 10000, 10000 + span // the whole range is ephemeral: best effort
}
