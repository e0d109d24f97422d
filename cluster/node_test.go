package cluster

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	protocluster "github.com/asynkron/protoactor-go/cluster"
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

// blockingGrain answers nothing and blocks its mailbox until release is closed: a grain busy with a
// slow store call.
type blockingGrain struct {
	entered chan<- struct{}
	release <-chan struct{}
}

func (g *blockingGrain) Receive(ctx actor.Context) {
	if _, ok := ctx.Message().(*protocluster.ClusterInit); ok {
		return
	}
	if _, ok := ctx.Message().(string); ok {
		g.entered <- struct{}{}
		<-g.release
	}
}

// Regression: a graceful stop waited for every grain activation in turn (protoactor's placement actor
// poisons each and waits up to 10 s apiece, then sleeps 2 s), so a node stopped after load took
// 25 s and logged placement-actor timeouts. The member now deregisters and stops without waiting for
// busy grains.
func TestGracefulStopDoesNotWaitForBusyGrains(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	entered, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	logs := &bytes.Buffer{}
	var mu sync.Mutex
	logger := zerolog.New(zerolog.SyncWriter(&lockedWriter{mu: &mu, w: logs}))
	agent := NewInMemoryAgent()
	kind := protocluster.NewKind("Blocking", actor.PropsFromProducer(func() actor.Actor {
		return &blockingGrain{entered: entered, release: release}
	}))
	n, err := Start(ctx, Options{NodeName: "busy", Kinds: []*protocluster.Kind{kind}, Provider: NewInMemoryProvider(agent), Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	pid := n.Cluster().Get("one", "Blocking")
	if pid == nil {
		t.Fatal("no activation")
	}
	n.Cluster().ActorSystem.Root.Send(pid, "work")
	<-entered

	stopped := make(chan struct{})
	go func() { n.Stop(true); close(stopped) }()
	select {
	case <-stopped:
	case <-ctx.Done():
		t.Fatal("Stop(true) waited for a busy grain")
	}
	agent.mu.Lock()
	registered := len(agent.members)
	agent.mu.Unlock()
	if got := registered; got != 0 {
		t.Errorf("%d members registered after a graceful stop, want 0", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if s := logs.String(); strings.Contains(s, "Failed to poison") || strings.Contains(s, `"level":"error"`) {
		t.Errorf("stop logged errors:\n%s", s)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
