package cluster

import (
	"fmt"
	"sort"
	"sync"

	protocluster "github.com/asynkron/protoactor-go/cluster"
)

// InMemoryAgent is the membership registry shared by the in-memory providers of members in one
// process (a single node, or several members in one test). It replaces protoactor's test provider,
// which keeps notifying a member after it has shut down: the topology update then writes the
// member's remote block list while its gossip loop may still read it unlocked (a data race inside
// protoactor). Here a member stops listening before it leaves, and nothing runs in the background.
type InMemoryAgent struct {
	mu      sync.Mutex
	members map[string]*protocluster.Member
	// listeners get the full member list on every change, in order (calls are made under mu).
	listeners map[string]*protocluster.MemberList
}

// NewInMemoryAgent returns an empty registry.
func NewInMemoryAgent() *InMemoryAgent {
	return &InMemoryAgent{
		members:   make(map[string]*protocluster.Member),
		listeners: make(map[string]*protocluster.MemberList),
	}
}

// NewInMemoryProvider returns a membership provider for a member registered with agent: members
// whose providers share an agent see each other.
func NewInMemoryProvider(agent *InMemoryAgent) protocluster.ClusterProvider {
	return &inMemoryProvider{agent: agent}
}

// join adds (or, for a client, only subscribes) id and tells every listener the new topology.
func (a *InMemoryAgent) join(id string, m *protocluster.Member, ml *protocluster.MemberList) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if m != nil {
		a.members[id] = m
	}
	a.listeners[id] = ml
	a.notifyLocked()
}

// leave unsubscribes id first, so the leaving member's own member list is never updated after its
// shutdown began, then removes it and tells the others.
func (a *InMemoryAgent) leave(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.listeners, id)
	if _, ok := a.members[id]; !ok {
		return
	}
	delete(a.members, id)
	a.notifyLocked()
}

func (a *InMemoryAgent) notifyLocked() {
	ids := make([]string, 0, len(a.members))
	for id := range a.members {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, ml := range a.listeners {
		// Each listener gets its own copies: the member list keeps what it is given.
		members := make(protocluster.Members, 0, len(ids))
		for _, id := range ids {
			m := a.members[id]
			members = append(members, &protocluster.Member{Id: m.Id, Host: m.Host, Port: m.Port, Kinds: append([]string(nil), m.Kinds...)})
		}
		ml.UpdateClusterTopology(members)
	}
}

type inMemoryProvider struct {
	agent *InMemoryAgent
	mu    sync.Mutex
	id    string
}

func (p *inMemoryProvider) StartMember(c *protocluster.Cluster) error {
	host, port, err := c.ActorSystem.GetHostPort()
	if err != nil {
		return fmt.Errorf("in-memory provider: member address: %w", err)
	}
	p.setID(c.ActorSystem.ID)
	p.agent.join(c.ActorSystem.ID, &protocluster.Member{
		Id: c.ActorSystem.ID, Host: host, Port: int32(port), Kinds: c.GetClusterKinds(),
	}, c.MemberList)
	return nil
}

func (p *inMemoryProvider) StartClient(c *protocluster.Cluster) error {
	p.setID(c.ActorSystem.ID)
	p.agent.join(c.ActorSystem.ID, nil, c.MemberList)
	return nil
}

func (p *inMemoryProvider) setID(id string) {
	p.mu.Lock()
	p.id = id
	p.mu.Unlock()
}

// Shutdown leaves the registry whether graceful or not: in one process a crashed member is gone
// at once (there is no heartbeat to time out).
func (p *inMemoryProvider) Shutdown(bool) error {
	p.mu.Lock()
	id := p.id
	p.id = ""
	p.mu.Unlock()
	if id != "" {
		p.agent.leave(id)
	}
	return nil
}
