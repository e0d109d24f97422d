// Package harness builds the crispy binary and runs nodes as real processes on loopback, for
// black-box and multi-node tests. Every process it starts is stopped by the test's cleanup.
package harness

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/internal/freeport"
)

// Build compiles ./cmd/crispy into dir and returns the binary's path.
func Build(t testing.TB, dir string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	bin := filepath.Join(dir, "crispy")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/crispy")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build crispy: %v\n%s", err, out)
	}
	return bin
}

// FreeAddr returns a loopback address whose port is reserved for t (see internal/freeport).
func FreeAddr(t testing.TB) string {
	t.Helper()
	return freeport.Addr(t)
}

// Node is one crispy process.
type Node struct {
	Bin, DataDir, TenantsDir string
	Addr, AdminAddr          string
	Args                     []string // extra serve flags
	Env                      []string // extra environment

	mu   sync.Mutex
	cmd  *exec.Cmd
	out  bytes.Buffer
	done chan error
}

// URL is the tenant-facing base URL.
func (n *Node) URL() string { return "http://" + n.Addr }

// Start runs `crispy serve` and waits until /readyz answers 200.
func (n *Node) Start(t testing.TB) {
	t.Helper()
	n.Launch(t)
	n.WaitReady(t, 30*time.Second)
}

// Launch runs `crispy serve` without waiting for it to be ready: nodes of a cluster start together,
// because each waits for its peers' NATS servers before it is ready.
func (n *Node) Launch(t testing.TB) {
	t.Helper()
	args := append([]string{"serve", "--listen", n.Addr, "--admin-addr", n.AdminAddr,
		"--data-dir", n.DataDir, "--tenants-dir", n.TenantsDir, "--log-format", "json", "--node-name", "bb"}, n.Args...)
	cmd := exec.Command(n.Bin, args...)
	cmd.Env = append(os.Environ(), n.Env...)
	n.mu.Lock()
	n.out.Reset()
	cmd.Stdout, cmd.Stderr = &lockedWriter{n}, &lockedWriter{n}
	n.mu.Unlock()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.cmd, n.done = cmd, make(chan error, 1)
	go func() { n.done <- cmd.Wait() }()
	t.Cleanup(func() { n.Kill() })
}

// WaitReady waits until the launched process's /readyz answers 200, failing the test after limit
// or when the process exits.
func (n *Node) WaitReady(t testing.TB, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		select {
		case err := <-n.done:
			n.cmd = nil
			t.Fatalf("crispy exited during start: %v\n%s", err, n.Output())
		default:
		}
		if n.ready() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("crispy not ready after %v\n%s", limit, n.Output())
}

// ready reports whether /readyz answers 200.
func (n *Node) ready() bool {
	resp, err := http.Get("http://" + n.AdminAddr + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

// Stop sends SIGTERM and waits for the process to exit, returning its exit error.
func (n *Node) Stop(ctx context.Context) error {
	if n.cmd == nil || n.cmd.Process == nil {
		return nil
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-n.done:
		n.cmd = nil
		return err
	case <-ctx.Done():
		n.Kill()
		return fmt.Errorf("crispy did not stop: %w", ctx.Err())
	}
}

// Kill stops the process with SIGKILL (no drain), if it still runs.
func (n *Node) Kill() {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	_ = n.cmd.Process.Kill()
	<-n.done
	n.cmd = nil
}

// Output is everything the process wrote so far.
func (n *Node) Output() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.out.String()
}

type lockedWriter struct{ n *Node }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.n.mu.Lock()
	defer w.n.mu.Unlock()
	return w.n.out.Write(p)
}
