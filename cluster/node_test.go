package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestStartSingleMember(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n, err := Start(ctx, Options{NodeName: "solo", Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop(false)
	if err := n.WaitMembers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if got := n.Members(); len(got) != 1 || got[0] != n.Address() {
		t.Fatalf("members %v, want just this node %s", got, n.Address())
	}
	if n.Cluster() == nil || n.Cluster().ActorSystem == nil {
		t.Fatal("no cluster")
	}
}

func TestStartRefusesCancelledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Start(ctx, Options{}); err == nil {
		t.Fatal("started with a cancelled context")
	}
}
