package probe_test

import (
	"testing"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/crispy-enigma/crispy/test/probe"
)

type ping struct{ n int }
type pong struct{ n int }

func TestProbeAskAndWatch(t *testing.T) {
	system := actor.NewActorSystem()
	echo := system.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		if m, ok := ctx.Message().(*ping); ok {
			ctx.Respond(&pong{n: m.n + 1})
		}
	}))
	p := probe.New(t, system, 0)
	if got := probe.Ask[*pong](t, p, echo, &ping{n: 41}); got.n != 42 {
		t.Fatalf("pong %d, want 42", got.n)
	}
	p.ExpectNone(t)
	p.Watch(echo)
	system.Root.Stop(echo)
	if got := probe.Expect[*actor.Terminated](t, p); !got.Who.Equal(echo) {
		t.Fatalf("terminated %v, want %v", got.Who, echo)
	}
}
