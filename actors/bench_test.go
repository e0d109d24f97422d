package actors_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	protocluster "github.com/asynkron/protoactor-go/cluster"

	"github.com/crispy-enigma/crispy/actors"
	"github.com/crispy-enigma/crispy/actors/pb"
)

// BenchmarkClientAllow measures RateLimiter decisions through the client on one node; every
// goroutine is its own user (its own grain), with realistic limits (most decisions past the first
// few hundred are denials, which cost the same). Goal ≥ 100,000 decisions/s on 2 cores.
func BenchmarkClientAllow(b *testing.B) {
	e := startEnv(b, b.TempDir(), 0)
	lim := actors.RateLimit{PerMinute: 600, Burst: 100}
	var users atomic.Int64
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		user := fmt.Sprintf("bench-%d", users.Add(1))
		for pb.Next() {
			if _, err := e.client.Allow(ctx, "acme", user, lim); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
}

// BenchmarkRequestAdmission is the rate-limit admission of one request, one at a time: the tenant
// ceiling and then the user's limit as two grain round trips (Allow twice), or as one
// (AllowWithCeiling). Limits no request reaches; 64 users take turns.
func BenchmarkRequestAdmission(b *testing.B) {
	e := startEnv(b, b.TempDir(), 0)
	ceiling := actors.RateLimit{PerMinute: 1 << 30, Burst: 1 << 30}
	lim := actors.RateLimit{PerMinute: 1 << 30, Burst: 1 << 30}
	ctx := context.Background()
	users := make([]string, 64)
	for i := range users {
		users[i] = fmt.Sprintf("user:u%d", i)
	}
	for _, tc := range []struct {
		name  string
		admit func(user string) error
	}{
		{"two-round-trips", func(user string) error {
			if _, err := e.client.Allow(ctx, "acme", "tenant", ceiling); err != nil {
				return err
			}
			_, err := e.client.Allow(ctx, "acme", user, lim)
			return err
		}},
		{"one-round-trip", func(user string) error {
			_, _, err := e.client.AllowWithCeiling(ctx, "acme", "tenant", ceiling, user, lim)
			return err
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := range b.N {
				if err := tc.admit(users[i%len(users)]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkClientAllowOneUser is the same with every goroutine on one grain (one mailbox).
func BenchmarkClientAllowOneUser(b *testing.B) {
	e := startEnv(b, b.TempDir(), 0)
	lim := actors.RateLimit{PerMinute: 600, Burst: 100}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := e.client.Allow(ctx, "acme", "one", lim); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
}

// BenchmarkAppendHistory is one chat turn's storage: read the history with a retention cap, then
// append the user + assistant message (one JetStream-acknowledged write: an atomic batch on a
// replicated stream, one stream message holding both on this single-replica one). members
// "cluster" is a member of a cluster (every read asks the stream whether another activation wrote),
// "single" a node alone for good (Deps.SingleMember: reads from memory); "new" starts a new session
// every turn (AppendNew: nothing is loaded, no history read, as /chat without a sessionId would).
func BenchmarkAppendHistory(b *testing.B) {
	for _, bc := range []struct {
		members  string
		sessions int
	}{{"cluster", 1}, {"cluster", 64}, {"single", 64}, {"single", 0}} {
		name := fmt.Sprintf("members=%s/sessions=%d", bc.members, bc.sessions)
		if bc.sessions == 0 {
			name = fmt.Sprintf("members=%s/sessions=new", bc.members)
		}
		b.Run(name, func(b *testing.B) {
			e := startEnvWith(b, b.TempDir(), actors.Deps{SingleMember: bc.members == "single"})
			r := actors.Retention{MaxAge: 30 * 24 * time.Hour, MaxMessages: 50}
			ctx := context.Background()
			var n atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					msgs := []actors.Message{{Role: "user", Content: "hello"}, {Role: "assistant", Content: "hi"}}
					if bc.sessions == 0 {
						if err := e.client.AppendNew(ctx, "acme", fmt.Sprintf("n%d", n.Add(1)), msgs, r); err != nil {
							b.Error(err)
							return
						}
						continue
					}
					session := fmt.Sprintf("s%d", n.Add(1)%int64(bc.sessions))
					if _, err := e.client.History(ctx, "acme", session, r, 0, time.Time{}); err != nil {
						b.Error(err)
						return
					}
					if err := e.client.Append(ctx, "acme", session, msgs, r); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "turns/s")
		})
	}
}

// BenchmarkClusterRequestAllow is the same decision through protoactor's cluster.Request (identity
// lookup through the PID cache on every call, retry bookkeeping), for comparison with the client.
func BenchmarkClusterRequestAllow(b *testing.B) {
	e := startEnv(b, b.TempDir(), 0)
	req := &pb.RateLimitRequest{PerMinute: 600, Burst: 100}
	var users atomic.Int64
	c := e.node.Cluster()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(p *testing.PB) {
		id := fmt.Sprintf("acme:ratelimit:bench-%d", users.Add(1))
		for p.Next() {
			if _, err := c.Request(id, actors.KindRateLimiter, req, protocluster.WithTimeout(5*time.Second)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
}
