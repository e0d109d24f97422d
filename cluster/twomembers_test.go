//go:build !race

// Two members in one process: remote.Start sets grpclog's global logger, which races with the other
// member's gRPC goroutines under -race, so this file is excluded from race builds.

package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestTwoMembersSeeEachOther(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	agent := NewInMemoryAgent()
	var nodes []*Node
	for _, name := range []string{"one", "two"} {
		n, err := Start(ctx, Options{NodeName: name, Provider: NewInMemoryProvider(agent), Logger: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		if err := n.WaitMembers(ctx, 2); err != nil {
			t.Fatal(err)
		}
	}
	// A member that leaves disappears from the other's view.
	nodes[1].Stop(false)
	if err := nodes[0].WaitMembers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if got := nodes[0].Members(); got[0] != nodes[0].Address() {
		t.Fatalf("remaining members %v", got)
	}
	nodes[0].Stop(false)
}
