package api

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkGatewayOverhead is issue 4's "overhead the gateway adds over calling the upstream
// directly, with budgets, rate limits and ledger on": each iteration makes one non-streamed round
// trip to the fake OpenAI-compatible upstream directly, and one POST /chat (stream:false) through
// the server to the same upstream, and records both latencies. The server's path includes tenant
// resolution, the RateLimiter grain, the session history load, the Budget reserve, the model call,
// the Budget commit (two KV writes), the reply's append to the session (JetStream) and the
// model_call ledger event (JetStream publish); "bare" is the same server with no ledger and a tenant
// without tokenBudget, to show what budgets and the ledger add on their own.
// Metrics are medians (µs) and p99s.
func BenchmarkGatewayOverhead(b *testing.B) {
	up := newFakeUpstream(b)
	tenant := withBudget(benchTenant("bench", "fake/instant"), `{"daily": 1000000000000, "monthly": 1000000000000}`)
	full := newGatewayServer(b, routerFor(up), tenant)
	bare := newTestServer(b, testServerOpts{models: routerFor(up), tenants: []string{benchTenant("bench", "fake/instant")}})
	client := benchClient()
	direct := `{"model":"fake/instant","messages":[{"role":"user","content":"hello"}],"stream":true}`

	roundTrip := func(url, tenant, body string) (time.Duration, error) {
		start := time.Now()
		resp, err := benchPost(client, url, tenant, body)
		if err != nil {
			return 0, err
		}
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		d := time.Since(start)
		if err != nil {
			return 0, err
		}
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("%s: status %d: %s", url, resp.StatusCode, raw)
		}
		return d, nil
	}
	quantile := func(ds []time.Duration, q float64) float64 {
		slices.Sort(ds)
		return float64(ds[int(float64(len(ds)-1)*q)].Nanoseconds()) / 1000
	}
	run := func(b *testing.B, server string, parallel bool) {
		var mu sync.Mutex
		var upstream, gateway []time.Duration
		var seq atomic.Int64
		one := func() error {
			n := seq.Add(1)
			du, err := roundTrip(up.URL+"/v1/chat/completions", "", direct)
			if err != nil {
				return err
			}
			body := fmt.Sprintf(`{"message":"hello","sessionId":"ovh-%d","userId":"u%d","stream":false,"maxTokens":16}`, n%512, n%64)
			dg, err := roundTrip(server+"/chat", "bench", body)
			if err != nil {
				return err
			}
			mu.Lock()
			upstream, gateway = append(upstream, du), append(gateway, dg)
			mu.Unlock()
			return nil
		}
		b.ReportAllocs()
		b.ResetTimer()
		if parallel {
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := one(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		} else {
			for range b.N {
				if err := one(); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.StopTimer()
		if len(gateway) == 0 {
			return
		}
		pu, pg := quantile(upstream, 0.5), quantile(gateway, 0.5)
		b.ReportMetric(pu, "upstream-p50-µs")
		b.ReportMetric(pg, "server-p50-µs")
		b.ReportMetric(pg-pu, "added-p50-µs")
		b.ReportMetric(quantile(gateway, 0.99)-quantile(upstream, 0.99), "added-p99-µs")
	}
	for _, srv := range []struct {
		name, url string
	}{{"full", full.URL}, {"bare", bare.URL}} {
		b.Run(srv.name+"/sequential", func(b *testing.B) { run(b, srv.url, false) })
		b.Run(srv.name+"/parallel", func(b *testing.B) { run(b, srv.url, true) })
	}
}
