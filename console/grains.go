package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	protocluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/nats-io/nats.go"

	"github.com/crispy-enigma/crispy/actors"
)

// activatorPrefix is where the identity lookup (cluster/lookup.ActorName) spawns grain activations:
// "partition-activator/<identity>$<seq>".
const activatorPrefix = "partition-activator/"

// childOfActivation matches a key below an activation: "$<seq>/" (protoactor's sequence IDs use
// [0-9A-Za-z~+]).
var childOfActivation = regexp.MustCompile(`\$[0-9A-Za-z~+]+/`)

// LocalGrains counts the grain activations in system's process registry by kind. protoactor does
// not say which kind an activation is, so the kind is read from the identity's shape, which the
// actors package defines: a Budget is "<tenant>", a RateLimiter "<tenant>:ratelimit:<user>", a
// ChatSession "<tenant>:<session>". One pass over the registry under its shard read locks.
func LocalGrains(system *actor.ActorSystem) func() map[string]int {
	return func() map[string]int {
		counts := map[string]int{actors.KindChatSession: 0, actors.KindRateLimiter: 0, actors.KindBudget: 0}
		for _, shard := range system.ProcessRegistry.LocalPIDs.LocalPIDs {
			shard.IterCb(func(key string, _ any) {
				if kind := kindOf(key); kind != "" {
					counts[kind]++
				}
			})
		}
		return counts
	}
}

// kindOf classifies a process registry key; "" for anything that is not a grain activation.
func kindOf(key string) string {
	rest, ok := strings.CutPrefix(key, activatorPrefix)
	if !ok {
		return ""
	}
	i := strings.LastIndexByte(rest, '$')
	if i <= 0 || strings.Contains(rest[i:], "/") || childOfActivation.MatchString(rest) {
		return "" // not an activation, or a child actor of one
	}
	id := rest[:i]
	switch {
	case strings.Contains(id, ":ratelimit:"):
		return actors.KindRateLimiter
	case strings.Contains(id, ":"):
		return actors.KindChatSession
	default:
		return actors.KindBudget
	}
}

// GrainStats answers "how many grains of each kind does each member host": every node answers a
// NATS request with its own counts (Serve), and Grains gathers the answers that arrive within a
// short window. Members that do not answer in time are missing from the result, not waited for.
type GrainStats struct {
	nc      *nats.Conn // nil: only this node's counts
	subject string
	self    MemberGrains
	local   func() map[string]int
	expect  func() int // how many answers to wait for (the member count)
	window  time.Duration
}

// NewGrainStats reports this node's grains (local) and, through nc, its peers'. subject must be
// the same on every node of one cluster and differ between clusters sharing a NATS.
func NewGrainStats(nc *nats.Conn, subject, node, member string, local func() map[string]int, expect func() int) *GrainStats {
	return &GrainStats{nc: nc, subject: subject, self: MemberGrains{Member: member, Node: node}, local: local,
		expect: expect, window: 750 * time.Millisecond}
}

// Serve answers the peers' requests until the returned stop is called.
func (g *GrainStats) Serve() (stop func(), err error) {
	if g.nc == nil {
		return func() {}, nil
	}
	sub, err := g.nc.Subscribe(g.subject, func(m *nats.Msg) {
		b, err := json.Marshal(g.mine())
		if err == nil {
			_ = m.Respond(b)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("console: grain stats: subscribe: %w", err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

func (g *GrainStats) mine() MemberGrains {
	m := g.self
	m.Kinds = g.local()
	return m
}

// maxAnswers bounds what one gather collects, whatever answers arrive.
const maxAnswers = 256

// Grains gathers every member's counts, sorted by member.
func (g *GrainStats) Grains(ctx context.Context) ([]MemberGrains, error) {
	if g.nc == nil {
		return []MemberGrains{g.mine()}, nil
	}
	inbox := g.nc.NewRespInbox()
	ch := make(chan *nats.Msg, 64)
	sub, err := g.nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil, fmt.Errorf("console: grain stats: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := g.nc.PublishRequest(g.subject, inbox, nil); err != nil {
		return nil, fmt.Errorf("console: grain stats: %w", err)
	}
	want := max(1, g.expect())
	timer := time.NewTimer(g.window)
	defer timer.Stop()
	seen := map[string]MemberGrains{}
	for len(seen) < want && len(seen) < maxAnswers {
		select {
		case m := <-ch:
			var mg MemberGrains
			if json.Unmarshal(m.Data, &mg) == nil && mg.Member != "" {
				seen[mg.Member] = mg
			}
		case <-timer.C:
			want = 0
		case <-ctx.Done():
			want = 0
		}
	}
	if len(seen) == 0 {
		return []MemberGrains{g.mine()}, errors.New("no member answered; showing this node only")
	}
	out := make([]MemberGrains, 0, len(seen))
	for _, mg := range seen {
		out = append(out, mg)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Member < out[j].Member })
	return out, nil
}

// ProtoMembers lists a protoactor cluster's members: those in its member list are up, those its
// remote has blocked (declared dead) are blocked.
func ProtoMembers(c *protocluster.Cluster) MemberLister { return protoMembers{c} }

type protoMembers struct{ c *protocluster.Cluster }

func (p protoMembers) Members() []Member {
	self := p.c.ActorSystem.ID
	out := []Member{}
	for _, m := range p.c.MemberList.Members().Members() {
		state := "up"
		if p.c.Remote != nil && p.c.Remote.BlockList().IsBlocked(m.Id) {
			state = "blocked"
		}
		out = append(out, Member{ID: m.Id, Address: m.Address(), Kinds: append([]string(nil), m.Kinds...),
			State: state, Self: m.Id == self})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Address < out[j].Address })
	return out
}
