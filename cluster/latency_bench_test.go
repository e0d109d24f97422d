//go:build !race

package cluster

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/crispy-enigma/crispy/actors"
)

// BenchmarkGrainRequest measures one RateLimiter request from member A to a grain A hosts
// (same-node) and to a grain B hosts (cross-node, protobuf over protoactor remote gRPC on loopback),
// with p50/p99 per request. Two members in one process share the in-memory membership provider.
func BenchmarkGrainRequest(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	agent := NewInMemoryAgent()
	var nodes []*Node
	for _, name := range []string{"a", "b"} {
		n, err := Start(ctx, Options{NodeName: name, Provider: NewInMemoryProvider(agent), Logger: zerolog.Nop(),
			Kinds: actors.Kinds(actors.Deps{Logger: zerolog.Nop()})})
		if err != nil {
			b.Fatal(err)
		}
		defer n.Stop(false)
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		if err := n.WaitMembers(ctx, 2); err != nil {
			b.Fatal(err)
		}
	}
	client := actors.NewClient(nodes[0].Cluster(), 5*time.Second)
	// The identity format is actors' rateLimitIdentity ("<tenant>:ratelimit:<user>").
	userOn := func(addr string) string {
		for i := 0; ; i++ {
			u := fmt.Sprintf("u%d", i)
			pid := nodes[0].Cluster().Get("bench:ratelimit:"+u, actors.KindRateLimiter)
			if pid != nil && pid.Address == addr {
				return u
			}
		}
	}
	lim := actors.RateLimit{PerMinute: 1 << 30, Burst: 1 << 30}
	for _, bc := range []struct {
		name string
		user string
	}{
		{"same-node", userOn(nodes[0].Address())},
		{"cross-node", userOn(nodes[1].Address())},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			lat := make([]time.Duration, 0, b.N)
			for b.Loop() {
				t0 := time.Now()
				if _, err := client.Allow(ctx, "bench", bc.user, lim); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}
