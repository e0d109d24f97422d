package actors

import (
	"fmt"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"

	"github.com/crispy-enigma/crispy/actors/pb"
	"github.com/crispy-enigma/crispy/test/probe"
)

// twoMembersHosting returns two members hosting kind, and an identity of prefix+"<n>" that the
// second one owns.
func twoMembersHosting(kind, prefix string) (a, b *cluster.Member, onB string) {
	a = &cluster.Member{Id: "10.0.0.1", Host: "10.0.0.1", Port: 7000, Kinds: []string{kind}}
	b = &cluster.Member{Id: "10.0.0.2", Host: "10.0.0.2", Port: 7000, Kinds: []string{kind}}
	rdv := cluster.NewRendezvous()
	rdv.UpdateMembers([]*cluster.Member{a, b})
	for i := 0; ; i++ {
		id := fmt.Sprintf("%s%d", prefix, i)
		if rdv.GetByClusterIdentity(&cluster.ClusterIdentity{Kind: kind, Identity: id}) == b.Address() {
			return a, b, id
		}
	}
}

// onEachMember runs fn as member a (which does not own the identity: its activation must stop)
// and as member b (the owner: it must stay).
func onEachMember(t *testing.T, a, b *cluster.Member, fn func(t *testing.T, placement *Placement, wantStop bool)) {
	for _, self := range []*cluster.Member{a, b} {
		t.Run(self.Host, func(t *testing.T) {
			placement := &Placement{self: self.Address()}
			placement.update([]*cluster.Member{a, b})
			fn(t, placement, self == a)
		})
	}
}

// askExpectingStop sends req to pid and returns the reply and whether pid stopped, reading want
// messages (Terminated is a system message: it may overtake the reply).
func askExpectingStop(t *testing.T, p *probe.Probe, pid *actor.PID, req proto.Message, wantStop bool) (reply any, stopped bool) {
	t.Helper()
	p.Send(pid, req)
	n := 1
	if wantStop {
		n = 2
	}
	for range n {
		switch m := probe.Expect[any](t, p).(type) {
		case *actor.Terminated:
			stopped = m.GetWho().GetId() == pid.GetId()
		default:
			reply = m
		}
	}
	if !wantStop {
		p.ExpectNone(t)
	}
	return reply, stopped
}

// TestRateLimiterPassivatesWhenNotTheOwner: a duplicate RateLimiter activation (started by a
// requester with a stale topology) used to count beside the owner's until it idled out, so a user
// got each limit twice during churn. It now answers and stops; the owner's stays.
func TestRateLimiterPassivatesWhenNotTheOwner(t *testing.T) {
	a, b, onB := twoMembersHosting(KindRateLimiter, "acme:ratelimit:u")
	system := actor.NewActorSystem()
	p := probe.New(t, system, 0)
	onEachMember(t, a, b, func(t *testing.T, placement *Placement, wantStop bool) {
		pid := system.Root.Spawn(rateLimiterProps(Deps{Logger: zerolog.Nop(), Placement: placement}.withDefaults()))
		system.Root.Send(pid, &cluster.ClusterInit{Identity: &cluster.ClusterIdentity{Kind: KindRateLimiter, Identity: onB}})
		p.Watch(pid)
		reply, stopped := askExpectingStop(t, p, pid, pbRateLimit(5, 5, 60, 10), wantStop)
		if r, ok := reply.(*pb.RateLimitResponse); !ok || !r.GetAllowed() {
			t.Fatalf("reply %v, want an allowed RateLimitResponse", reply)
		}
		if stopped != wantStop {
			t.Fatalf("stopped %v, want %v", stopped, wantStop)
		}
	})
}

// TestBudgetPassivatesWhenNotTheOwner: a duplicate Budget activation stops once it holds no
// reservation (dropping one would let its call overshoot the budget at commit); the owner's stays.
func TestBudgetPassivatesWhenNotTheOwner(t *testing.T) {
	js, _ := startNATS(t, t.TempDir())
	a, b, onB := twoMembersHosting(KindBudget, "acme")
	system := actor.NewActorSystem()
	p := probe.New(t, system, 0)
	lim := &pb.BudgetLimits{Daily: 1000}
	onEachMember(t, a, b, func(t *testing.T, placement *Placement, wantStop bool) {
		deps := Deps{JS: js, Logger: zerolog.Nop(), Placement: placement}.withDefaults()
		pid := system.Root.Spawn(budgetProps(deps, onB))
		p.Watch(pid)
		reply, stopped := askExpectingStop(t, p, pid, &pb.BudgetReserveRequest{ReservationId: "r1", Tokens: 10, Limits: lim}, false)
		if r, ok := reply.(*pb.BudgetReserveResponse); !ok || !r.GetAllowed() {
			t.Fatalf("reserve: %v", reply)
		}
		if stopped {
			t.Fatal("stopped while holding a reservation")
		}
		reply, stopped = askExpectingStop(t, p, pid, &pb.BudgetCommitRequest{ReservationId: "r1", Actual: 4}, wantStop)
		if r, ok := reply.(*pb.BudgetCommitResponse); !ok || r.GetError() != "" {
			t.Fatalf("commit: %v", reply)
		}
		if stopped != wantStop {
			t.Fatalf("stopped %v after the last reservation was committed, want %v", stopped, wantStop)
		}
	})
}

// TestBudgetCommitNeverExceedsItsReservation replays the over-spend: 40 calls with maxTokens 1
// each reserved a small estimate, then committed what a provider that ignores max_tokens produced,
// and together charged 1,260 tokens to a 300-token budget. A commit is now capped at its
// reservation, so the admitted reservations bound the total.
func TestBudgetCommitNeverExceedsItsReservation(t *testing.T) {
	js, _ := startNATS(t, t.TempDir())
	clock := newFakeClock()
	system := actor.NewActorSystem()
	pid := system.Root.Spawn(budgetProps(Deps{JS: js, Now: clock.Now, Logger: zerolog.Nop()}.withDefaults(), "acme"))
	p := probe.New(t, system, 0)
	lim := &pb.BudgetLimits{Daily: 300}
	var admitted []string
	for i := range 40 {
		id := fmt.Sprintf("r%d", i)
		r := probe.Ask[*pb.BudgetReserveResponse](t, p, pid, &pb.BudgetReserveRequest{ReservationId: id, Tokens: 8, Limits: lim})
		if r.GetAllowed() {
			admitted = append(admitted, id)
		}
	}
	for _, id := range admitted { // each call "produced" 31 tokens
		if r := probe.Ask[*pb.BudgetCommitResponse](t, p, pid, &pb.BudgetCommitRequest{ReservationId: id, Actual: 31}); r.GetError() != "" {
			t.Fatalf("commit %s: %s", id, r.GetError())
		}
	}
	st := probe.Ask[*pb.BudgetStatusResponse](t, p, pid, &pb.BudgetStatusRequest{})
	if st.GetDayUsed() > lim.GetDaily() {
		t.Fatalf("%d reservations of 8 admitted, charged %d tokens to a %d-token budget", len(admitted), st.GetDayUsed(), lim.GetDaily())
	}
	if want := int64(8 * len(admitted)); st.GetDayUsed() != want {
		t.Fatalf("charged %d, want %d (each commit capped at its reservation)", st.GetDayUsed(), want)
	}
}

// TestRateLimiterLeavesOneWindowAfterItsLastRequest: 20,000 distinct user IDs made 20,000
// limiters, each held for the idle timeout (5 minutes by default). A limiter now passivates once
// its window is empty, even when the idle timeout is much longer.
func TestRateLimiterLeavesOneWindowAfterItsLastRequest(t *testing.T) {
	system := actor.NewActorSystem()
	grain := system.Root.Spawn(rateLimiterProps(Deps{IdleTimeout: time.Hour, Logger: zerolog.Nop()}.withDefaults()))
	p := probe.New(t, system, 0)
	if r := probe.Ask[*pb.RateLimitResponse](t, p, grain, pbRateLimit(5, 5, 1, 1)); !r.GetAllowed() {
		t.Fatalf("first request denied: %v", r)
	}
	p.Watch(grain)
	probe.Expect[*actor.Terminated](t, p) // within the probe's timeout, not the hour
}
