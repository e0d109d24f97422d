package actors

import (
	"fmt"
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/rs/zerolog"

	"github.com/crispy-enigma/crispy/actors/pb"
	"github.com/crispy-enigma/crispy/test/probe"
)

func sessionMember(host string) *cluster.Member {
	return &cluster.Member{Id: host, Host: host, Port: 7000, Kinds: []string{KindChatSession}}
}

// Owns agrees with the rendezvous hash disthash routes by, and says yes while it knows nothing.
func TestPlacementOwns(t *testing.T) {
	a, b := sessionMember("10.0.0.1"), sessionMember("10.0.0.2")
	if !(*Placement)(nil).Owns(KindChatSession, "t:s") || !NewPlacement().Owns(KindChatSession, "t:s") {
		t.Fatal("a Placement without a topology does not own everything")
	}
	p := &Placement{self: a.Address()}
	p.update([]*cluster.Member{a, b})
	rdv := cluster.NewRendezvous()
	rdv.UpdateMembers([]*cluster.Member{a, b})
	owned := map[bool]int{}
	for i := range 100 {
		id := fmt.Sprintf("acme:s%d", i)
		want := rdv.GetByClusterIdentity(&cluster.ClusterIdentity{Kind: KindChatSession, Identity: id}) == a.Address()
		if got := p.Owns(KindChatSession, id); got != want {
			t.Fatalf("Owns(%s) = %v, want %v", id, got, want)
		}
		owned[want]++
	}
	if owned[true] == 0 || owned[false] == 0 {
		t.Fatalf("100 identities all on one member: %v", owned)
	}
	if !p.Owns("OtherKind", "acme:s1") {
		t.Error("a kind no member hosts is not owned")
	}
}

// A chat session activation on a member that does not own it answers, then stops; one on the
// owner stays.
func TestChatSessionPassivatesWhenNotTheOwner(t *testing.T) {
	js, _ := startNATS(t, t.TempDir())
	a, b := sessionMember("10.0.0.1"), sessionMember("10.0.0.2")
	rdv := cluster.NewRendezvous()
	rdv.UpdateMembers([]*cluster.Member{a, b})
	onB := ""
	for i := 0; onB == ""; i++ {
		if id := fmt.Sprintf("s%d", i); rdv.GetByClusterIdentity(&cluster.ClusterIdentity{Kind: KindChatSession, Identity: "acme:" + id}) == b.Address() {
			onB = id
		}
	}
	system := actor.NewActorSystem()
	p := probe.New(t, system, 0)
	for _, tt := range []struct {
		self     *cluster.Member
		wantStop bool
	}{{a, true}, {b, false}} {
		placement := &Placement{self: tt.self.Address()}
		placement.update([]*cluster.Member{a, b})
		deps := Deps{JS: js, Logger: zerolog.Nop(), Placement: placement}.withDefaults()
		pid := system.Root.Spawn(chatSessionProps(deps, "acme", onB))
		p.Watch(pid)
		p.Send(pid, &pb.HistoryRequest{})
		// Terminated is a system message: it may overtake the reply in the probe's mailbox.
		want := 1
		if tt.wantStop {
			want = 2
		}
		var answered, stopped bool
		for range want {
			switch m := probe.Expect[any](t, p).(type) {
			case *pb.HistoryResponse:
				if m.GetError() != "" {
					t.Fatalf("on %s: history: %s", tt.self.Host, m.GetError())
				}
				answered = true
			case *actor.Terminated:
				stopped = m.GetWho().GetId() == pid.GetId()
			default:
				t.Fatalf("on %s: unexpected %T", tt.self.Host, m)
			}
		}
		if !answered || stopped != tt.wantStop {
			t.Fatalf("on %s: answered %v, stopped %v (want stopped %v)", tt.self.Host, answered, stopped, tt.wantStop)
		}
		if !tt.wantStop {
			p.ExpectNone(t)
		}
	}
}

func TestPlacementEveryMemberHosts(t *testing.T) {
	withFeature := func(host string) *cluster.Member {
		return &cluster.Member{Id: host, Host: host, Port: 7000, Kinds: []string{KindChatSession, FeatureChatGroups}}
	}
	tests := []struct {
		name    string
		p       *Placement
		members []*cluster.Member
		want    bool
	}{
		{"nil", nil, nil, true},
		{"never bound", NewPlacement(), nil, true},
		{"every member", NewPlacement(), []*cluster.Member{withFeature("10.0.0.1"), withFeature("10.0.0.2")}, true},
		{"one member without", NewPlacement(), []*cluster.Member{withFeature("10.0.0.1"), sessionMember("10.0.0.2")}, false},
		{"only members without", NewPlacement(), []*cluster.Member{sessionMember("10.0.0.1")}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.members != nil {
				tt.p.update(tt.members)
			}
			if got := tt.p.EveryMemberHosts(FeatureChatGroups); got != tt.want {
				t.Errorf("EveryMemberHosts = %v, want %v", got, tt.want)
			}
		})
	}
}
