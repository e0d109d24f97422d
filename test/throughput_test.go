package test

import (
	"fmt"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/test/harness"
)

// Bounds of one throughput measurement: whichever is reached first.
const (
	measureFor      = 8 * time.Second
	measureRequests = 20000
	measureWorkers  = 16
	measureSessions = 200
)

// TestMeasureChatThroughput reports /chat JSON throughput (built-in local/extractive model, many
// sessions, loopback) on one node and on a three-node cluster, with the load spread over the three
// nodes. It measures, it does not assert speed; it runs only with CRISPY_MEASURE=1.
func TestMeasureChatThroughput(t *testing.T) {
	if os.Getenv("CRISPY_MEASURE") == "" {
		t.Skip("set CRISPY_MEASURE=1 to measure /chat throughput")
	}
	tenants := clusterTenants(t)

	t.Run("one node", func(t *testing.T) {
		n := newNode(t)
		n.TenantsDir = tenants
		n.Start(t)
		reportThroughput(t, measureChat(t, &harness.Cluster{Nodes: []*harness.Node{n}}))
	})
	t.Run("three nodes", func(t *testing.T) {
		c := harness.NewCluster(t, harness.ClusterOptions{Bin: crispyBin, TenantsDir: tenants})
		c.Start(t)
		waitMembers(t, c, 3, 30*time.Second)
		reportThroughput(t, measureChat(t, c))
	})
}

type throughput struct {
	ok, failed int64
	elapsed    time.Duration
	latencies  []time.Duration
}

// measureChat sends JSON /chat requests from measureWorkers workers, worker w's i-th request to
// node i%len(nodes) for one of measureSessions sessions, after a warm-up that activates every session.
func measureChat(t *testing.T, c *harness.Cluster) throughput {
	t.Helper()
	for s := range measureSessions {
		if code := chatOnce(c.Nodes[s%len(c.Nodes)].URL(), loadTenant, fmt.Sprintf("tp-%d", s), "warm up", "u"); code != 200 {
			t.Fatalf("warm-up of session %d: %d", s, code)
		}
	}
	var (
		sent, ok, failed atomic.Int64
		mu               sync.Mutex
		lat              []time.Duration
		wg               sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(measureFor)
	for w := range measureWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for i := 0; time.Now().Before(deadline) && sent.Add(1) <= measureRequests; i++ {
				s := fmt.Sprintf("tp-%d", (w*31+i)%measureSessions)
				t0 := time.Now()
				code := chatOnce(c.Nodes[(w+i)%len(c.Nodes)].URL(), loadTenant, s, fmt.Sprintf("w%d m%d what is the plan", w, i), "u")
				if code == 200 {
					ok.Add(1)
					mine = append(mine, time.Since(t0))
				} else {
					failed.Add(1)
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return throughput{ok: ok.Load(), failed: failed.Load(), elapsed: time.Since(start), latencies: lat}
}

func reportThroughput(t *testing.T, r throughput) {
	sort.Slice(r.latencies, func(i, j int) bool { return r.latencies[i] < r.latencies[j] })
	pct := func(p float64) time.Duration {
		if len(r.latencies) == 0 {
			return 0
		}
		return r.latencies[int(p*float64(len(r.latencies)-1))].Round(100 * time.Microsecond)
	}
	t.Logf("%d ok, %d failed in %v: %.0f req/s, p50 %v, p99 %v (%d workers, %d sessions)",
		r.ok, r.failed, r.elapsed.Round(time.Millisecond), float64(r.ok)/r.elapsed.Seconds(), pct(0.5), pct(0.99),
		measureWorkers, measureSessions)
}
