// Package actors holds the grains (virtual actors) of crispy: ChatSession, a session's ordered
// messages persisted in JetStream, and RateLimiter, docs/api.md's sliding window in memory. Their
// messages are protobuf (package pb) because messages to grains on another member must be.
// Client is the typed API the HTTP layer uses.
package actors

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Grain kind names, registered with the cluster by Kinds.
const (
	KindChatSession = "ChatSession"
	KindRateLimiter = "RateLimiter"
)

// DefaultIdleTimeout is how long a grain stays activated without messages when Deps.IdleTimeout is 0.
const DefaultIdleTimeout = 5 * time.Minute

// Deps are what the grains need; Kinds hands them to every activation.
type Deps struct {
	// JS stores chat sessions (stream CHAT).
	JS jetstream.JetStream
	// Replicas of the CHAT stream if a grain has to create it (EnsureStreams normally did at start).
	Replicas int
	// IdleTimeout passivates a grain after this long without messages (0 = DefaultIdleTimeout).
	IdleTimeout time.Duration
	Logger      zerolog.Logger
	// Now is the clock (nil = time.Now); tests pass a fake one.
	Now func() time.Time
	// Placement tells a chat session whether this member owns it (nil: it always does). Bind it
	// to the cluster once the member started.
	Placement *Placement
}

func (d Deps) withDefaults() Deps {
	if d.IdleTimeout <= 0 {
		d.IdleTimeout = DefaultIdleTimeout
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Replicas <= 0 {
		d.Replicas = 1
	}
	return d
}

// Kinds returns the cluster kinds of the grains, to pass to the cluster at start.
func Kinds(deps Deps) []*cluster.Kind {
	deps = deps.withDefaults()
	return []*cluster.Kind{
		cluster.NewKind(KindChatSession, chatSessionProps(deps, "", "")),
		cluster.NewKind(KindRateLimiter, rateLimiterProps(deps)),
		cluster.NewKind(KindBudget, budgetProps(deps, "")), // budget.go
	}
}

// chatSessionProps makes ChatSession props. With an empty tenant the identity comes from the
// cluster (ClusterInit); tests spawn sessions directly with an identity to force duplicate activations.
func chatSessionProps(deps Deps, tenantID, sessionID string) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor { return newChatSession(deps, tenantID, sessionID) })
}

func rateLimiterProps(deps Deps) *actor.Props {
	// The synchronized dispatcher runs the mailbox in the sender's goroutine instead of starting a
	// goroutine per burst of messages: a decision is a few hundred ns of CPU, so scheduling dominated.
	// Only for grains that never block (ChatSession does I/O and keeps the default dispatcher).
	return actor.PropsFromProducer(func() actor.Actor { return newRateLimiter(deps) },
		actor.WithDispatcher(actor.NewSynchronizedDispatcher(300)))
}
