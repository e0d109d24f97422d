package actors_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/actors"
)

// BenchmarkSessionMemory activates b.N chat sessions on one node and reports what an active idle
// session costs (heap and RSS per session, after a GC), then passivates them all and reports what
// is left per session (the goal: nothing). Run it with a fixed count, e.g.
//
//	go test ./actors -run '^$' -bench SessionMemory -benchtime 100000x
//
// "empty" activates a session with a history read (a new session ID: the load finds nothing);
// "exchange" stores one exchange in a new session (AppendNew: a 17-byte question and a 34-byte
// reply), as /chat leaves a session.
func BenchmarkSessionMemory(b *testing.B) {
	for _, mode := range []string{"empty", "exchange"} {
		b.Run(mode, func(b *testing.B) {
			e := startEnvWith(b, b.TempDir(), actors.Deps{SingleMember: true, IdleTimeout: time.Hour})
			ctx := context.Background()
			r := actors.Retention{MaxAge: 30 * 24 * time.Hour, MaxMessages: 1000}
			msgs := []actors.Message{{Role: "user", Content: "What is the time?"}, {Role: "assistant", Content: "It is a quarter past eleven, sir."}}
			heap0, rss0 := settledHeap(), rss()
			b.ReportAllocs()
			b.ResetTimer()
			var next atomic.Int64
			var wg sync.WaitGroup
			for range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						id := "m" + strconv.FormatInt(i, 36)
						var err error
						if mode == "empty" {
							_, err = e.client.History(ctx, "acme", id, r, 0, time.Time{})
						} else {
							err = e.client.AppendNew(ctx, "acme", id, msgs, r)
						}
						if err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			kind := e.node.Cluster().GetClusterKind(actors.KindChatSession)
			if got := kind.Count(); got != int32(b.N) {
				b.Fatalf("%d sessions active, want %d", got, b.N)
			}
			heap1, rss1 := settledHeap(), rss()
			writeHeapProfile(b, mode+"-active")
			b.ReportMetric(float64(heap1-heap0)/float64(b.N), "heap-B/session")
			b.ReportMetric(float64(rss1-rss0)/float64(b.N), "rss-B/session")
			if testing.Verbose() {
				// Now, not after the passivation, which can take long (below).
				fmt.Fprintf(os.Stderr, "sessions %d active: heap %d -> %d MiB (%d B/session), rss %d -> %d MiB (%d B/session)\n",
					b.N, heap0>>20, heap1>>20, (heap1-heap0)/int64(b.N), rss0>>20, rss1>>20, (rss1-rss0)/int64(b.N))
			}

			// Passivate every session (as their idle timeout would) and wait until they stopped.
			// The PIDs come from the PID cache the client filled: Cluster.Get would ask the
			// placement actor, whose mailbox the terminations fill.
			//
			// The wait is bounded by $SESSION_MEMORY_PASSIVATE_WAIT (default 1m); past it the
			// benchmark reports how many passivated per second instead of the heap they leave.
			// (protoactor's own identity lookup scanned every activation per passivation, O(n²)
			// in all; cluster/lookup indexes them.)
			wait := time.Minute
			if v := os.Getenv("SESSION_MEMORY_PASSIVATE_WAIT"); v != "" {
				d, err := time.ParseDuration(v)
				if err != nil {
					b.Fatalf("SESSION_MEMORY_PASSIVATE_WAIT: %v", err)
				}
				wait = d
			}
			sys := e.node.Cluster().ActorSystem
			start := time.Now()
			for i := 1; i <= b.N; i++ {
				if pid, ok := e.node.Cluster().PidCache.Get("acme:m"+strconv.FormatInt(int64(i), 36), actors.KindChatSession); ok {
					sys.Root.Poison(pid)
				}
			}
			deadline := start.Add(wait)
			for kind.Count() > 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			elapsed := time.Since(start)
			if left := kind.Count(); left != 0 {
				b.ReportMetric(float64(int32(b.N)-left)/elapsed.Seconds(), "passivated/s")
				b.Logf("%d of %d sessions still active after %v of passivation: no passivated heap", left, b.N, elapsed.Round(time.Second))
				return
			}
			b.ReportMetric(elapsed.Seconds(), "passivate-s")
			heap2 := settledHeap()
			writeHeapProfile(b, mode+"-passivated")
			b.ReportMetric(float64(heap2-heap0)/float64(b.N), "heap-B/passivated")
			if testing.Verbose() {
				fmt.Fprintf(os.Stderr, "sessions %d passivated in %v: heap %d -> %d -> %d MiB\n",
					b.N, elapsed.Round(time.Millisecond), heap0>>20, heap1>>20, heap2>>20)
			}
		})
	}
}

// writeHeapProfile writes the heap profile to $SESSION_MEMORY_PROFILE-<name>.pb.gz when that is
// set: where the bytes of a session are (go tool pprof -sample_index=inuse_space).
func writeHeapProfile(b *testing.B, name string) {
	prefix := os.Getenv("SESSION_MEMORY_PROFILE")
	if prefix == "" {
		return
	}
	f, err := os.Create(prefix + "-" + name + ".pb.gz")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.WriteHeapProfile(f); err != nil {
		b.Fatal(err)
	}
}

// settledHeap is the live heap after two GCs (the second frees what finalizers released).
func settledHeap() int64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// rss is this process's resident set size from /proc/self/status (0 where there is none).
func rss() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
