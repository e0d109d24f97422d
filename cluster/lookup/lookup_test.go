package lookup_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	protocluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/crispy-enigma/crispy/cluster"
)

// echo answers a string with "<identity>:<string>" and stops itself on "stop", as an idle grain
// passivates.
type echo struct{ id string }

func (e *echo) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *protocluster.ClusterInit:
		e.id = m.Identity.Identity
	case *wrapperspb.StringValue:
		if m.Value == "stop" {
			ctx.Respond(wrapperspb.String("stopping"))
			ctx.Stop(ctx.Self())
			return
		}
		ctx.Respond(wrapperspb.String(e.id + ":" + m.Value))
	}
}

func startNode(t *testing.T) *cluster.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kind := protocluster.NewKind("echo", actor.PropsFromProducer(func() actor.Actor { return &echo{} }))
	n, err := cluster.Start(ctx, cluster.Options{NodeName: "lookup", Kinds: []*protocluster.Kind{kind}, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Stop(false) })
	return n
}

func ask(t *testing.T, c *protocluster.Cluster, id, msg string) string {
	t.Helper()
	res, err := c.Request(id, "echo", wrapperspb.String(msg), protocluster.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatalf("request %s: %v", id, err)
	}
	return res.(*wrapperspb.StringValue).Value
}

// TestActivationsComeAndGo places many grains, stops them all and places them again: each stop is
// forgotten (the kind's count returns to zero, so the placement actor holds none of them), and a
// stopped grain is activated afresh on its next request.
func TestActivationsComeAndGo(t *testing.T) {
	c := startNode(t).Cluster()
	const n = 3000
	for round := range 2 {
		for i := range n {
			id := fmt.Sprintf("g%d", i)
			if got, want := ask(t, c, id, "hi"), id+":hi"; got != want {
				t.Fatalf("round %d: %s answered %q, want %q", round, id, got, want)
			}
		}
		kind := c.GetClusterKind("echo")
		if got := kind.Count(); got != n {
			t.Fatalf("round %d: %d activations counted, want %d", round, got, n)
		}
		for i := range n {
			pid := c.Get(fmt.Sprintf("g%d", i), "echo")
			if pid == nil {
				t.Fatalf("round %d: g%d has no activation", round, i)
			}
			c.ActorSystem.Root.Stop(pid)
		}
		deadline := time.Now().Add(30 * time.Second)
		for kind.Count() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: %d activations still counted after stopping all", round, kind.Count())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestUnknownKindHasNoActivation: a request for a kind no member hosts gets no PID rather than
// crashing or hanging the placement actor, which keeps serving the kinds it knows.
func TestUnknownKindHasNoActivation(t *testing.T) {
	c := startNode(t).Cluster()
	if pid := c.Get("x", "nosuchkind"); pid != nil {
		t.Fatalf("unknown kind got %v", pid)
	}
	if got := ask(t, c, "after", "hi"); got != "after:hi" {
		t.Fatalf("after an unknown kind: %q", got)
	}
}
