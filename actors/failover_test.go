package actors

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/crispy-enigma/crispy/actors/pb"
	crispycluster "github.com/crispy-enigma/crispy/cluster"
	"github.com/crispy-enigma/crispy/test/probe"
)

func member(host string, port int32) *cluster.Member {
	return &cluster.Member{Id: host + "-id", Host: host, Port: port}
}

func pidAt(m *cluster.Member, id string) *actor.PID { return actor.NewPID(m.Address(), id) }

// A member leaving stops exactly the requests in flight to it, marks them, and wakes lookups;
// requests to members still there are untouched.
func TestFailoverStopsRequestsToADepartedMember(t *testing.T) {
	a, b := member("10.0.0.1", 1), member("10.0.0.2", 2)
	fo := &failover{calls: map[*call]struct{}{}, left: make(chan struct{})}
	fo.onTopology(&cluster.ClusterTopology{Members: []*cluster.Member{a, b}, Joined: []*cluster.Member{a, b}})

	stopped := map[string]int{}
	toA := fo.track(pidAt(a, "g1"), func() { stopped["a"]++ })
	toB := fo.track(pidAt(b, "g2"), func() { stopped["b"]++ })
	left := fo.leftSignal()

	fo.onTopology(&cluster.ClusterTopology{Members: []*cluster.Member{b}, Left: []*cluster.Member{a}})
	if diff := cmp.Diff(map[string]int{"a": 1}, stopped); diff != "" {
		t.Fatalf("stopped requests (-want +got):\n%s", diff)
	}
	if memberLeft, _ := fo.untrack(toA); !memberLeft {
		t.Error("request to the departed member not reported as memberLeft")
	}
	if memberLeft, _ := fo.untrack(toB); memberLeft {
		t.Error("request to a remaining member reported as memberLeft")
	}
	select {
	case <-left:
	default:
		t.Error("lookups waiting when the member left were not woken")
	}
	if fo.isMember(a.Address()) || !fo.isMember(b.Address()) {
		t.Errorf("isMember after a left: a %v, b %v", fo.isMember(a.Address()), fo.isMember(b.Address()))
	}

	// A PID resolved just before the topology change is stopped as soon as it is tracked.
	late := fo.track(pidAt(a, "g3"), func() { stopped["late"]++ })
	if memberLeft, _ := fo.untrack(late); stopped["late"] != 1 || !memberLeft {
		t.Errorf("request to an address already gone: stopped %d, memberLeft %v", stopped["late"], memberLeft)
	}
	if len(fo.calls) != 0 {
		t.Errorf("calls left tracked: %v", fo.calls)
	}
}

// An activation's ActivationTerminated stops exactly the requests in flight to that activation.
func TestFailoverStopsRequestsToATerminatedActivation(t *testing.T) {
	a := member("10.0.0.1", 1)
	fo := &failover{calls: map[*call]struct{}{}, left: make(chan struct{})}
	fo.onTopology(&cluster.ClusterTopology{Members: []*cluster.Member{a}, Joined: []*cluster.Member{a}})

	stopped := map[string]int{}
	first := fo.track(pidAt(a, "session$1"), func() { stopped["first"]++ })
	second := fo.track(pidAt(a, "session$1"), func() { stopped["second"]++ })
	other := fo.track(pidAt(a, "session$2"), func() { stopped["other"]++ })

	fo.onActivationTerminated(pidAt(a, "session$1"))
	fo.onActivationTerminated(nil) // ignored
	if diff := cmp.Diff(map[string]int{"first": 1, "second": 1}, stopped); diff != "" {
		t.Fatalf("stopped requests (-want +got):\n%s", diff)
	}
	for name, cl := range map[string]*call{"first": first, "second": second} {
		if memberLeft, ended := fo.untrack(cl); memberLeft || !ended {
			t.Errorf("%s: memberLeft %v activationEnded %v, want false true", name, memberLeft, ended)
		}
	}
	if _, ended := fo.untrack(other); ended {
		t.Error("request to another activation reported as activationEnded")
	}
	if len(fo.calls) != 0 {
		t.Errorf("calls left tracked: %v", fo.calls)
	}
}

// A request that reaches a grain's mailbox after the grain was poisoned (disthash moving it to a
// member that joined, or passivation) is dropped by protoactor without a dead letter. The client
// re-sends it to a new activation when the old one's ActivationTerminated arrives, instead of
// waiting out the request timeout (the soak's 503s after 10 s at every restart).
func TestRequestQueuedBehindAStoppingActivationIsResent(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	handling, release := make(chan struct{}), make(chan struct{})
	// posted closes when the "queued" request lands in a mailbox: the client tracks a request before
	// it sends it, so from then on both requests are tracked and the queued one sits behind the
	// poison pill.
	posted := make(chan struct{})
	var postedOnce sync.Once
	watch := postWatch(func(msg any) {
		if env, ok := msg.(*actor.MessageEnvelope); ok {
			msg = env.Message
		}
		if r, ok := msg.(*pb.HistoryRequest); ok && r.GetTraceId() == "queued" {
			postedOnce.Do(func() { close(posted) })
		}
	})
	var activations atomic.Int32
	kind := cluster.NewKind("Blocker", actor.PropsFromFunc(func(c actor.Context) {
		switch m := c.Message().(type) {
		case *actor.Started:
			activations.Add(1)
		case *pb.HistoryRequest:
			if m.GetTraceId() == "block" {
				close(handling)
				<-release
			}
			c.Respond(&pb.HistoryResponse{})
		}
	}, actor.WithMailbox(actor.Unbounded(watch))))
	node, err := crispycluster.Start(ctx, crispycluster.Options{NodeName: "t", Kinds: []*cluster.Kind{kind}, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Stop(true)
	const timeout = 5 * time.Second
	c := NewClient(node.Cluster(), timeout)
	// failOnLeave: a request the stopped activation never handled is re-sent even when it is not
	// idempotent.
	ask := func(traceID string) error {
		_, err := deliver[*pb.HistoryResponse](ctx, c, "x", "Blocker", &pb.HistoryRequest{TraceId: traceID}, failOnLeave)
		return err
	}

	blocked := make(chan error, 1)
	go func() { blocked <- ask("block") }()
	<-handling
	pid, ok := c.c.PidCache.Get("x", "Blocker")
	if !ok {
		t.Fatal("the activation's PID is not cached")
	}
	node.Cluster().ActorSystem.Root.Poison(pid) // queued behind "block"

	queued := make(chan error, 1)
	start := time.Now()
	go func() { queued <- ask("queued") }() // resolves the cached PID: queued behind the poison
	select {
	case <-posted:
	case <-ctx.Done():
		t.Fatal("the queued request never reached the mailbox")
	}
	c.fo.mu.Lock()
	n := 0
	for cl := range c.fo.calls {
		if cl.addr == pid.GetAddress() && cl.id == pid.GetId() {
			n++
		}
	}
	c.fo.mu.Unlock()
	if n != 2 {
		t.Fatalf("%d requests tracked for the activation, want 2", n)
	}
	close(release)

	if err := <-blocked; err != nil {
		t.Fatalf("blocking request: %v", err)
	}
	if err := <-queued; err != nil {
		t.Fatalf("request queued behind the poison: %v (after %v)", err, time.Since(start))
	}
	if d := time.Since(start); d >= timeout {
		t.Errorf("queued request answered after %v: it waited out the timeout", d)
	}
	if n := activations.Load(); n != 2 {
		t.Errorf("activations = %d, want 2 (the re-sent request activates the grain again)", n)
	}
}

// An Append re-sent with the same request ID (its first grain's member left before answering)
// stores each message once: whether the grain handling the re-send loaded the first write, already
// holds it, or loaded the session before the first write landed (JetStream's duplicate detection).
func TestChatSessionAppendWithRequestIDIsIdempotent(t *testing.T) {
	js, _ := startNATS(t, t.TempDir())
	clock := newFakeClock()
	deps := Deps{JS: js, Now: clock.Now, Logger: zerolog.Nop()}.withDefaults()
	system := actor.NewActorSystem()
	p := probe.New(t, system, 0)
	now := clock.Now()
	appendReq := func(requestID string, contents ...string) *pb.AppendRequest {
		req := &pb.AppendRequest{RequestId: requestID}
		for _, c := range contents {
			req.Messages = append(req.Messages, chatMsg("user", c, now))
		}
		return req
	}
	ask := func(pid *actor.PID, req *pb.AppendRequest) {
		t.Helper()
		if r := probe.Ask[*pb.AppendResponse](t, p, pid, req); r.GetError() != "" {
			t.Fatalf("append: %s", r.GetError())
		}
	}

	// The stale twin loads the empty session before anything is written.
	stale := system.Root.Spawn(chatSessionProps(deps, "acme", "idem"))
	if r := probe.Ask[*pb.HistoryResponse](t, p, stale, &pb.HistoryRequest{}); len(r.GetMessages()) != 0 {
		t.Fatalf("initial history %v", contents(r.GetMessages()))
	}

	first := system.Root.Spawn(chatSessionProps(deps, "acme", "idem"))
	ask(first, appendReq("r1", "q1", "a1"))
	ask(first, appendReq("r1", "q1", "a1")) // same activation: it holds the IDs
	fresh := system.Root.Spawn(chatSessionProps(deps, "acme", "idem"))
	ask(fresh, appendReq("r1", "q1", "a1")) // new activation: it loaded the IDs
	ask(stale, appendReq("r1", "q1", "a1")) // loaded before: JetStream reports the duplicates
	ask(stale, appendReq("r2", "q2"))       // a new request is stored, after r1

	want := []string{"q1", "a1", "q2"}
	const wantStored = 2 // r1's two messages are one stream message
	for name, pid := range map[string]*actor.PID{"stale": stale, "new": system.Root.Spawn(chatSessionProps(deps, "acme", "idem"))} {
		r := probe.Ask[*pb.HistoryResponse](t, p, pid, &pb.HistoryRequest{})
		if diff := cmp.Diff(want, contents(r.GetMessages())); diff != "" {
			t.Errorf("history via %s activation (-want +got):\n%s", name, diff)
		}
	}
	if n := storedCount(t, js, "chat.acme.idem"); n != wantStored {
		t.Errorf("stream holds %d messages, want %d", n, wantStored)
	}
}

// postWatch is a mailbox middleware that reports every message posted to the mailbox.
type postWatch func(msg any)

func (w postWatch) MailboxStarted()       {}
func (w postWatch) MessagePosted(msg any) { w(msg) }
func (w postWatch) MessageReceived(any)   {}
func (w postWatch) MailboxEmpty()         {}
