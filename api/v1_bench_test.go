package api

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BenchmarkV1Overhead is issue 15's "added latency of /v1/chat/completions over calling the
// upstream directly, with rate limit, budget and ledger on": each iteration calls the fake
// OpenAI-compatible upstream directly, then the same request through POST /v1/chat/completions,
// non-streamed (whole round trip) and streamed (time to the first content byte), sequentially and
// from 32 goroutines. The node's path: tenant resolution, the RateLimiter grain,
// the model rule, the Budget reserve, the upstream call, the Budget commit and the model_call
// ledger event (JetStream). Metrics are medians and p99s in µs; cpu-µs/op is the test process's CPU
// time per iteration (client, fake upstream and node, the node's settle work included) and
// node-cpu-µs/op that less the CPU of a direct call alone: the node's CPU per request.
//
//	go test ./api -run '^$' -bench V1Overhead -benchtime 2000x
func BenchmarkV1Overhead(b *testing.B) {
	up := newFakeUpstream(b)
	tenant := withBudget(benchTenant("bench", "fake/instant"), `{"daily": 1000000000000, "monthly": 1000000000000}`)
	node := newGatewayServer(b, routerFor(up), tenant)
	client := benchClient()
	for _, mode := range []struct {
		name   string
		stream bool
	}{{"json", false}, {"stream-ttfb", true}} {
		body := fmt.Sprintf(`{"model":"fake/instant","messages":[{"role":"user","content":"hello"}],"max_tokens":16,"stream":%v}`, mode.stream)
		direct := `{"model":"fake/instant","messages":[{"role":"user","content":"hello"}],"max_tokens":16,"stream":true}`
		for _, par := range []int{1, 32} {
			b.Run(fmt.Sprintf("%s/concurrency-%d", mode.name, par), func(b *testing.B) {
				var mu sync.Mutex
				var upstream, through []time.Duration
				one := func() error {
					du, err := timeCall(client, up.URL+"/v1/chat/completions", "", direct, mode.stream)
					if err != nil {
						return err
					}
					dn, err := timeCall(client, node.URL+"/v1/chat/completions", "bench", body, mode.stream)
					if err != nil {
						return err
					}
					mu.Lock()
					upstream, through = append(upstream, du), append(through, dn)
					mu.Unlock()
					return nil
				}
				directCPU := cpuPerCall(b, max(200, min(b.N, 2000)), func() error {
					_, err := timeCall(client, up.URL+"/v1/chat/completions", "", direct, mode.stream)
					return err
				})
				cpu0 := processCPU(b)
				b.ReportAllocs()
				b.ResetTimer()
				if par == 1 {
					for range b.N {
						if err := one(); err != nil {
							b.Fatal(err)
						}
					}
				} else {
					b.SetParallelism(max(1, par/runtime.GOMAXPROCS(0))) // par goroutines in all
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							if err := one(); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				b.StopTimer()
				if len(through) == 0 {
					return
				}
				if err := node.mt.Wait(b.Context()); err != nil { // the settle work is the node's too
					b.Fatal(err)
				}
				cpu := float64((processCPU(b) - cpu0).Nanoseconds()) / 1000 / float64(len(through))
				b.ReportMetric(cpu, "cpu-µs/op")
				b.ReportMetric(cpu-directCPU, "node-cpu-µs/op")
				q := func(ds []time.Duration, p float64) float64 {
					slices.Sort(ds)
					return float64(ds[int(float64(len(ds)-1)*p)].Nanoseconds()) / 1000
				}
				b.ReportMetric(q(upstream, 0.5), "upstream-p50-µs")
				b.ReportMetric(q(through, 0.5), "node-p50-µs")
				b.ReportMetric(q(through, 0.5)-q(upstream, 0.5), "added-p50-µs")
				b.ReportMetric(q(through, 0.99)-q(upstream, 0.99), "added-p99-µs")
			})
		}
	}
}

// processCPU is the CPU time (user and system) the test process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuPerCall is the process CPU time of one call of fn, in µs, over n sequential calls: the
// client's and the fake upstream's share of an iteration, which node-cpu-µs/op leaves out.
func cpuPerCall(b *testing.B, n int, fn func() error) float64 {
	start := processCPU(b)
	for range n {
		if err := fn(); err != nil {
			b.Fatal(err)
		}
	}
	return float64((processCPU(b) - start).Nanoseconds()) / 1000 / float64(n)
}

// timeCall posts body and times the whole answer, or for a stream the first content chunk.
func timeCall(client *http.Client, url, tenant, body string, firstByte bool) (time.Duration, error) {
	start := time.Now()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if tenant != "" {
		req.Header.Set("x-tenant-id", tenant)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(resp.Body)
		return 0, fmt.Errorf("%s: status %d: %s", url, resp.StatusCode, raw)
	}
	if !firstByte {
		_, err := io.Copy(io.Discard, resp.Body)
		return time.Since(start), err
	}
	sc := bufio.NewScanner(resp.Body)
	var d time.Duration
	for sc.Scan() {
		if d == 0 && strings.Contains(sc.Text(), `"content":"`) && !strings.Contains(sc.Text(), `"content":""`) {
			d = time.Since(start)
		}
	}
	if d == 0 {
		return 0, fmt.Errorf("%s: no content in the stream", url)
	}
	return d, sc.Err()
}
