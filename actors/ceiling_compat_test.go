package actors_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	protocluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/rs/zerolog"

	"github.com/crispy-enigma/crispy/actors"
	"github.com/crispy-enigma/crispy/actors/pb"
	"github.com/crispy-enigma/crispy/cluster"
)

// oldRateLimiter answers as a RateLimiter that predates RateLimitRequest.user: its own window only
// (every request admitted), and it records the identities asked.
type oldRateLimiter struct {
	mu    *sync.Mutex
	asked *[]string
	id    string
}

func (r *oldRateLimiter) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *protocluster.ClusterInit:
		r.id = m.Identity.GetIdentity()
	case *pb.RateLimitRequest:
		r.mu.Lock()
		*r.asked = append(*r.asked, r.id)
		r.mu.Unlock()
		ctx.Respond(&pb.RateLimitResponse{Allowed: true, Limit: m.GetPerMinute(), Remaining: 1})
	}
}

// TestAllowWithCeilingOnAnOlderMember: during a rolling upgrade the ceiling's grain may run a version
// that ignores the user; its reply has no user decision, and the client then asks the user's own
// limiter instead of failing the request.
func TestAllowWithCeilingOnAnOlderMember(t *testing.T) {
	var mu sync.Mutex
	var asked []string
	props := actor.PropsFromProducer(func() actor.Actor { return &oldRateLimiter{mu: &mu, asked: &asked} })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	node, err := cluster.Start(ctx, cluster.Options{
		NodeName: "ceiling-compat",
		Kinds:    []*protocluster.Kind{protocluster.NewKind(actors.KindRateLimiter, props)},
		Logger:   zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Stop(false) })
	c := actors.NewClient(node.Cluster(), 5*time.Second)

	ceiling, user, err := c.AllowWithCeiling(ctx, "acme", "tenant", actors.RateLimit{PerMinute: 100}, "user:u1", actors.RateLimit{PerMinute: 7})
	if err != nil {
		t.Fatal(err)
	}
	if !ceiling.Allowed || !user.Allowed || user.Limit != 7 {
		t.Errorf("ceiling %+v user %+v, want both allowed, the user's limit 7", ceiling, user)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"acme:ratelimit:tenant", "acme:ratelimit:user:u1"}; len(asked) != 2 || asked[0] != want[0] || asked[1] != want[1] {
		t.Errorf("limiters asked %v, want %v", asked, want)
	}
}
