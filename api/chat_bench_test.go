package api

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/gateway"
)

// instantModel is a language model that answers at once, in process: the benchmarks measure the
// server (tenant resolution, rate-limit grain, history load and append through JetStream), not a model.
type instantModel struct{}

func (instantModel) OpenChat(_ context.Context, req gateway.ChatRequest) (gateway.ChatStream, error) {
	return &instantStream{model: req.Model}, nil
}

type instantStream struct {
	model string
	sent  bool
}

func (s *instantStream) Next(ctx context.Context) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if s.sent {
		return "", io.EOF
	}
	s.sent = true
	return "ok", nil
}

func (s *instantStream) Usage() gateway.Usage { return gateway.Usage{TokensIn: 1, TokensOut: 1} }
func (s *instantStream) Model() string        { return s.model }
func (s *instantStream) Close() error         { return nil }

// benchTenant has rate limits no benchmark reaches and keeps 100 messages per session, so a
// session's history (loaded and sent to the model on every request) stays a realistic size.
func benchTenant(id, chat string) string {
	return chatTenant(id, chat,
		`"rateLimit": {"perMinute": 1000, "burst": 1000}`, `"rateLimit": {"perMinute": 100000000, "burst": 100000000}`,
		`"apiKeys": []`, `"apiKeys": [], "maxMessagesPerSession": 100`)
}

// benchClient keeps connections alive across parallel requests (the default keeps only 2 idle per host).
func benchClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 256
	return &http.Client{Transport: tr}
}

func benchPost(client *http.Client, url, tenant, body string) (*http.Response, error) {
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-tenant-id", tenant)
	return client.Do(req)
}

// BenchmarkChatJSON is issue 3's "/chat JSON round trips/s with an instant model, history
// persisted": the whole stack over HTTP, on many sessions and on one.
func BenchmarkChatJSON(b *testing.B) {
	ts := newTestServer(b, testServerOpts{
		models:  gateway.RouterOptions{Local: map[string]gateway.ChatModel{"local/instant": instantModel{}}},
		tenants: []string{benchTenant("bench", "local/instant")},
	})
	client := benchClient()
	run := func(b *testing.B, session func(n int64) string) {
		var seq atomic.Int64
		b.ReportAllocs()
		b.SetParallelism(16) // clients in flight: 16 × GOMAXPROCS; the work is mostly waiting on I/O
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				n := seq.Add(1)
				body := fmt.Sprintf(`{"message":"hello number %d","sessionId":%q,"userId":"u%d","stream":false}`, n, session(n), n%64)
				resp, err := benchPost(client, ts.URL+"/chat", "bench", body)
				if err != nil {
					b.Error(err)
					return
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Errorf("status %d: %s", resp.StatusCode, raw)
					return
				}
			}
		})
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	}
	b.Run("many-sessions", func(b *testing.B) {
		run(b, func(n int64) string { return fmt.Sprintf("many-%d", n%1024) })
	})
	b.Run("one-session", func(b *testing.B) {
		run(b, func(int64) string { return "the-one" })
	})
}

// BenchmarkChatSSEFirstByte is issue 3's "time to first SSE byte added by the server over the
// model's own first token": each iteration times the first body byte of the upstream called
// directly, and of POST /chat streaming from the same upstream, whose first token is ready at once.
// ns/op covers both whole requests; the metrics are medians.
func BenchmarkChatSSEFirstByte(b *testing.B) {
	up := newFakeUpstream(b)
	ts := newTestServer(b, testServerOpts{models: routerFor(up), tenants: []string{benchTenant("bench", "fake/instant")}})
	client := benchClient()
	direct := `{"model":"fake/instant","messages":[{"role":"user","content":"hi"}],"stream":true}`
	firstByte := func(url, tenant, body string) time.Duration {
		start := time.Now()
		resp, err := benchPost(client, url, tenant, body)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		var one [1]byte
		if _, err := io.ReadFull(resp.Body, one[:]); err != nil {
			b.Fatal(err)
		}
		d := time.Since(start)
		rest, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !bytes.Contains(rest, []byte("[DONE]")) && !bytes.Contains(rest, []byte("event: done")) {
			b.Fatalf("status %d: %s", resp.StatusCode, rest)
		}
		return d
	}
	var upstream, server []time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		upstream = append(upstream, firstByte(up.URL+"/v1/chat/completions", "", direct))
		server = append(server, firstByte(ts.URL+"/chat", "bench",
			fmt.Sprintf(`{"message":"hi","sessionId":"ttfb-%d"}`, i%256)))
	}
	b.StopTimer()
	p50 := func(ds []time.Duration) time.Duration {
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	pu, ps := p50(upstream), p50(server)
	b.ReportMetric(float64(pu.Microseconds()), "upstream-ttfb-p50-µs")
	b.ReportMetric(float64(ps.Microseconds()), "server-ttfb-p50-µs")
	b.ReportMetric(float64((ps - pu).Microseconds()), "added-p50-µs")
}
