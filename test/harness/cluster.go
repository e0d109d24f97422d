package harness

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// Cluster is several crispy processes on loopback forming one cluster through their embedded NATS
// servers, each routed to all the others.
type Cluster struct {
	Name  string
	Nodes []*Node
}

// ClusterOptions configure NewCluster.
type ClusterOptions struct {
	Bin, TenantsDir string
	Size            int      // number of nodes (default 3)
	Name            string   // cluster name (default "crispytest")
	Args            []string // extra serve flags for every node
	Env             []string // extra environment for every node
}

// NewCluster prepares (does not start) opts.Size nodes named n0, n1, … with their own data dirs,
// HTTP, admin and NATS route ports, and the same route list.
func NewCluster(t testing.TB, opts ClusterOptions) *Cluster {
	t.Helper()
	if opts.Size <= 0 {
		opts.Size = 3
	}
	if opts.Name == "" {
		opts.Name = "crispytest"
	}
	routeAddrs := make([]string, opts.Size)
	routes := make([]string, opts.Size)
	for i := range routeAddrs {
		routeAddrs[i] = FreeAddr(t)
		routes[i] = "nats://" + routeAddrs[i]
	}
	c := &Cluster{Name: opts.Name}
	for i := range opts.Size {
		args := append([]string{
			"--node-name", fmt.Sprintf("n%d", i),
			"--cluster", opts.Name,
			"--nats-cluster-listen", routeAddrs[i],
			"--nats-routes", strings.Join(routes, ","),
		}, opts.Args...)
		c.Nodes = append(c.Nodes, &Node{
			Bin: opts.Bin, DataDir: t.TempDir(), TenantsDir: opts.TenantsDir,
			Addr: FreeAddr(t), AdminAddr: FreeAddr(t), Args: args, Env: opts.Env,
		})
	}
	return c
}

// clusterReadyLimit bounds a cluster's start: a JetStream meta leader election and the creation of
// every replicated stream on a loaded two-core machine.
const clusterReadyLimit = 90 * time.Second

// Start launches every node at once and waits until all are ready.
func (c *Cluster) Start(t testing.TB) {
	t.Helper()
	for _, n := range c.Nodes {
		n.Launch(t)
	}
	var wg sync.WaitGroup
	for _, n := range c.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.waitReadyOrKill(clusterReadyLimit)
		}()
	}
	wg.Wait()
	for i, n := range c.Nodes {
		if n.cmd == nil {
			t.Fatalf("node %d did not become ready\n%s", i, n.Output())
		}
	}
}

// waitReadyOrKill is WaitReady for use off the test goroutine: instead of failing the test it kills
// a node that is not ready in time (Start then reports it).
func (n *Node) waitReadyOrKill(limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		select {
		case err := <-n.done:
			n.mu.Lock()
			fmt.Fprintf(&n.out, "\n[harness] exited during start: %v\n", err)
			n.mu.Unlock()
			n.cmd = nil
			return
		default:
		}
		if n.ready() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	n.Kill()
}

// memberAddress matches the log line in which a node reports its actor remote address.
var memberAddress = regexp.MustCompile(`"address":"([^"]+)"[^\n]*"event":"cluster member started"`)

// MemberAddress is the node's protoactor member address (host:port) from its log, or "" before the
// member started. Tests use it to tell which node owns a grain.
func (n *Node) MemberAddress() string {
	m := memberAddress.FindAllStringSubmatch(n.Output(), -1)
	if len(m) == 0 {
		return ""
	}
	return m[len(m)-1][1]
}

// natsURL matches the log line in which a node reports its embedded NATS server's client URL.
var natsURL = regexp.MustCompile(`"clientURL":"([^"]+)"[^\n]*"event":"embedded nats started"`)

// NATSURL is the client URL of the node's embedded NATS server from its log, or "" before it started.
// Tests use it to ask JetStream which server leads a stream.
func (n *Node) NATSURL() string {
	m := natsURL.FindAllStringSubmatch(n.Output(), -1)
	if len(m) == 0 {
		return ""
	}
	return m[len(m)-1][1]
}

// Running reports whether the process was started and has not been stopped or killed.
func (n *Node) Running() bool { return n.cmd != nil }
