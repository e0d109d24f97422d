// Package lookup places grains on the cluster: rendezvous hashing over the members that host a
// kind decides a grain's owner, and the owner's placement actor spawns its one activation.
//
// It keeps the protocol of protoactor's disthash (the same actor name and messages, so members
// running either agree) but not its bookkeeping. disthash found the identity of a stopped
// activation by scanning every activation it had placed, so each passivation cost O(n): with
// 1,000,000 sessions active a node managed 40 passivations a second, and activations queued
// behind them. Here an index by PID makes it O(1), an unknown PID is ignored instead of crashing
// the placement actor, the maps are rebuilt when they have shrunk to a quarter of their peak
// (Go maps never give memory back), and the rendezvous is swapped atomically rather than written
// while requests read it.
package lookup

import (
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/eventstream"
)

// ActorName is the placement actor's name on every member, as disthash names it.
const ActorName = "partition-activator"

// activationTimeout bounds one activation request to the owner's placement actor.
const activationTimeout = 5 * time.Second

// Lookup is a cluster.IdentityLookup.
type Lookup struct {
	c         *cluster.Cluster
	rdv       atomic.Pointer[cluster.Rendezvous]
	placement *actor.PID
	sub       *eventstream.Subscription
}

// New returns a Lookup for cluster.Configure.
func New() *Lookup { return &Lookup{} }

var _ cluster.IdentityLookup = (*Lookup)(nil)

// Setup starts the placement actor and follows the topology.
func (l *Lookup) Setup(c *cluster.Cluster, _ []string, _ bool) {
	l.c = c
	l.rdv.Store(cluster.NewRendezvous())
	system := c.ActorSystem
	props := actor.PropsFromProducer(func() actor.Actor { return newPlacement(c) })
	pid, err := system.Root.SpawnNamed(props, ActorName)
	if err != nil {
		c.Logger().Error("spawn placement actor", slog.Any("error", err))
	}
	l.placement = pid
	l.sub = system.EventStream.Subscribe(func(ev any) {
		t, ok := ev.(*cluster.ClusterTopology)
		if !ok {
			return
		}
		rdv := cluster.NewRendezvous()
		rdv.UpdateMembers(t.Members)
		l.rdv.Store(rdv)
		system.Root.Send(l.placement, t)
	})
}

// Get asks the identity's owner for its activation; nil when there is no owner or it did not
// answer (the caller retries).
func (l *Lookup) Get(id *cluster.ClusterIdentity) *actor.PID {
	owner := l.rdv.Load().GetByClusterIdentity(id)
	if owner == "" {
		return nil
	}
	res, err := l.c.ActorSystem.Root.RequestFuture(actor.NewPID(owner, ActorName),
		&cluster.ActivationRequest{ClusterIdentity: id}, activationTimeout).Result()
	if err != nil {
		return nil
	}
	r, ok := res.(*cluster.ActivationResponse)
	if !ok {
		return nil
	}
	return r.Pid
}

// RemovePid tells every member that pid no longer serves id, so their PID caches drop it.
func (l *Lookup) RemovePid(id *cluster.ClusterIdentity, pid *actor.PID) {
	l.c.MemberList.BroadcastEvent(&cluster.ActivationTerminated{Pid: pid, ClusterIdentity: id}, true)
}

// Shutdown stops following the topology and stops the placement actor with its activations.
func (l *Lookup) Shutdown() {
	if l.sub != nil {
		l.c.ActorSystem.EventStream.Unsubscribe(l.sub)
	}
	if l.placement != nil {
		if err := l.c.ActorSystem.Root.StopFuture(l.placement).Wait(); err != nil {
			l.c.Logger().Error("stop placement actor", slog.Any("error", err))
		}
	}
}

type grain struct {
	id  *cluster.ClusterIdentity
	pid *actor.PID
}

// placement is the member's placement actor: the parent of every activation this member hosts.
type placement struct {
	c     *cluster.Cluster
	byKey map[string]grain  // ClusterIdentity.AsKey() → activation
	byPID map[string]string // activation PID's Id → key
	peak  int
}

func newPlacement(c *cluster.Cluster) *placement {
	return &placement{c: c, byKey: map[string]grain{}, byPID: map[string]string{}}
}

func (p *placement) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *cluster.ActivationRequest:
		p.activate(ctx, msg)
	case *actor.Terminated:
		p.terminated(msg.Who)
	case *cluster.ClusterTopology:
		p.rebalance(ctx, msg)
	}
}

func (p *placement) activate(ctx actor.Context, msg *cluster.ActivationRequest) {
	key := msg.ClusterIdentity.AsKey()
	if g, ok := p.byKey[key]; ok {
		ctx.Respond(&cluster.ActivationResponse{Pid: g.pid})
		return
	}
	kind := p.c.GetClusterKind(msg.ClusterIdentity.Kind)
	if kind == nil {
		ctx.Logger().Error("unknown cluster kind", slog.String("kind", msg.ClusterIdentity.Kind))
		ctx.Respond(&cluster.ActivationResponse{Failed: true})
		return
	}
	pid := ctx.SpawnPrefix(cluster.WithClusterIdentity(kind.Props, msg.ClusterIdentity), msg.ClusterIdentity.Identity)
	kind.Inc()
	p.byKey[key] = grain{id: msg.ClusterIdentity, pid: pid}
	p.byPID[pid.Id] = key
	p.peak = max(p.peak, len(p.byKey))
	ctx.Respond(&cluster.ActivationResponse{Pid: pid})
}

func (p *placement) terminated(who *actor.PID) {
	key, ok := p.byPID[who.GetId()]
	if !ok {
		return // not an activation of ours
	}
	g := p.byKey[key]
	delete(p.byPID, who.GetId())
	delete(p.byKey, key)
	if kind := p.c.GetClusterKind(g.id.Kind); kind != nil {
		kind.Dec()
	}
	p.c.MemberList.BroadcastEvent(&cluster.ActivationTerminated{Pid: who, ClusterIdentity: g.id}, true)
	p.shrink()
}

// shrink rebuilds the maps once they hold a quarter of their peak, so that a node that once held
// a million sessions does not keep their buckets for good.
func (p *placement) shrink() {
	const floor = 1024
	if p.peak < floor || len(p.byKey) > p.peak/4 {
		return
	}
	byKey := make(map[string]grain, len(p.byKey))
	byPID := make(map[string]string, len(p.byPID))
	for k, g := range p.byKey {
		byKey[k] = g
		byPID[g.pid.Id] = k
	}
	p.byKey, p.byPID, p.peak = byKey, byPID, len(byKey)
}

// rebalance stops the activations another member now owns; they restart there on their next
// request.
func (p *placement) rebalance(ctx actor.Context, t *cluster.ClusterTopology) {
	rdv := cluster.NewRendezvous()
	rdv.UpdateMembers(t.Members)
	me := p.c.ActorSystem.Address()
	for _, g := range p.byKey {
		if rdv.GetByClusterIdentity(g.id) != me {
			ctx.Poison(g.pid)
		}
	}
}
