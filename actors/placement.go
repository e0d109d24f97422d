package actors

import (
	"sync"

	"github.com/asynkron/protoactor-go/cluster"
)

// Placement answers, inside a grain, whether this member owns an identity under the topology this
// member last saw: the rendezvous hash disthash routes requests with.
//
// Why grains ask: disthash's placement actor spawns an activation on whichever member a requester
// asks, without checking that member owns the identity, and only re-checks its activations when
// the topology changes. A requester whose topology lags (a member just crashed or joined) can so
// start an activation that outlives the change beside the owner's until it idles out. A chat
// session that finds it is not the owner after a request passivates; the requests queued behind
// its stop are re-sent by the client (failover.onActivationTerminated) and reach the owner.
//
// The topology comes from the actor system's event stream, not from MemberList.Members(), which
// is read without its lock.
type Placement struct {
	mu   sync.RWMutex
	self string
	rdv  *cluster.Rendezvous // nil until the first topology
	// kinds counts, per kind, the members of the last topology that host it; members is their number.
	kinds   map[string]int
	members int
}

// NewPlacement returns a Placement that owns everything until Bind.
func NewPlacement() *Placement { return &Placement{} }

// Bind follows c's topology from now on. Call it once, right after the member started.
func (p *Placement) Bind(c *cluster.Cluster) {
	p.mu.Lock()
	p.self = c.ActorSystem.Address()
	p.mu.Unlock()
	c.ActorSystem.EventStream.Subscribe(func(evt any) {
		if t, ok := evt.(*cluster.ClusterTopology); ok {
			p.update(t.GetMembers())
		}
	})
	// The topologies published before the subscription: the members the started member saw (as
	// newFailover does, once, at start).
	if ms := c.MemberList.Members().Members(); len(ms) > 0 {
		p.set(ms, false)
	}
}

func (p *Placement) update(members []*cluster.Member) { p.set(members, true) }

// set installs a topology; a seed (replace false) never replaces one that came from an event.
func (p *Placement) set(members []*cluster.Member, replace bool) {
	rdv := cluster.NewRendezvous()
	rdv.UpdateMembers(members)
	kinds := map[string]int{}
	for _, m := range members {
		for _, k := range m.GetKinds() {
			kinds[k]++
		}
	}
	p.mu.Lock()
	if replace || p.rdv == nil {
		p.rdv, p.kinds, p.members = rdv, kinds, len(members)
	}
	p.mu.Unlock()
}

// EveryMemberHosts reports whether every member of the topology this member last saw hosts kind.
// It says yes while it knows no topology: a member that was never bound is alone.
//
// Members advertise what they can read as kinds (FeatureChatGroups): a format a member writes
// must wait until every member can read it, or a rolling upgrade would hand a newer member's
// writes to an older one's reads.
func (p *Placement) EveryMemberHosts(kind string) bool {
	if p == nil {
		return true
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.rdv == nil || p.kinds[kind] == p.members
}

// Owns reports whether this member owns the identity of kind. It says yes while it knows no
// topology (not bound, or none seen yet), and when the topology has no member for the kind: a
// grain is never stopped for want of knowledge.
func (p *Placement) Owns(kind, identity string) bool {
	if p == nil {
		return true
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.rdv == nil {
		return true
	}
	owner := p.rdv.GetByClusterIdentity(&cluster.ClusterIdentity{Kind: kind, Identity: identity})
	return owner == "" || owner == p.self
}
