package actors

import (
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/crispy-enigma/crispy/actors/pb"
	"github.com/crispy-enigma/crispy/test/probe"
)

func member(host string, port int32) *cluster.Member {
	return &cluster.Member{Id: host + "-id", Host: host, Port: port}
}

// A member leaving stops exactly the requests in flight to it, marks them, and wakes lookups;
// requests to members still there are untouched.
func TestFailoverStopsRequestsToADepartedMember(t *testing.T) {
	a, b := member("10.0.0.1", 1), member("10.0.0.2", 2)
	fo := &failover{calls: map[string]map[*call]struct{}{}, left: make(chan struct{})}
	fo.onTopology(&cluster.ClusterTopology{Members: []*cluster.Member{a, b}, Joined: []*cluster.Member{a, b}})

	stopped := map[string]int{}
	toA := fo.track(a.Address(), func() { stopped["a"]++ })
	toB := fo.track(b.Address(), func() { stopped["b"]++ })
	left := fo.leftSignal()

	fo.onTopology(&cluster.ClusterTopology{Members: []*cluster.Member{b}, Left: []*cluster.Member{a}})
	if diff := cmp.Diff(map[string]int{"a": 1}, stopped); diff != "" {
		t.Fatalf("stopped requests (-want +got):\n%s", diff)
	}
	if !fo.untrack(toA) {
		t.Error("request to the departed member not reported as memberLeft")
	}
	if fo.untrack(toB) {
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
	late := fo.track(a.Address(), func() { stopped["late"]++ })
	if stopped["late"] != 1 || !fo.untrack(late) {
		t.Errorf("request to an address already gone: stopped %d, memberLeft %v", stopped["late"], late.memberLeft)
	}
	if len(fo.calls) != 0 {
		t.Errorf("calls left tracked: %v", fo.calls)
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
	for name, pid := range map[string]*actor.PID{"stale": stale, "new": system.Root.Spawn(chatSessionProps(deps, "acme", "idem"))} {
		r := probe.Ask[*pb.HistoryResponse](t, p, pid, &pb.HistoryRequest{})
		if diff := cmp.Diff(want, contents(r.GetMessages())); diff != "" {
			t.Errorf("history via %s activation (-want +got):\n%s", name, diff)
		}
	}
	if n := storedCount(t, js, "chat.acme.idem"); n != uint64(len(want)) {
		t.Errorf("stream holds %d messages, want %d", n, len(want))
	}
}
