// Package actors holds the grains (virtual actors) of crispy: ChatSession, a session's ordered
// messages persisted in JetStream, and RateLimiter, docs/api.md's sliding window in memory. Their
// messages are protobuf (package pb) because messages to grains on another member must be.
// Client is the typed API the HTTP layer uses.
package actors

import (
	"context"
	"fmt"
	"sync"
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
	// SingleMember: this member is alone for its whole life (no membership provider, so no other
	// member can ever host a grain). A session then has at most one activation at a time (disthash
	// spawns the next only after the last one stopped), nothing else writes its subject, and a read
	// is answered from memory instead of asking the stream whether another activation wrote.
	SingleMember bool
	// AfterWork tracks what grains do after they answered (retention removals); the node waits for
	// it on shutdown, before it closes its JetStream connection (nil: one of its own).
	AfterWork *AfterWork

	// streams caches the CHAT stream's handle for every activation (set by withDefaults).
	streams *streamCache
	// forceBatch writes exchanges as atomic batches whatever the replicas (tests of the batch path
	// on a one-server JetStream).
	forceBatch bool
}

// streamCache holds a JetStream stream handle once one activation fetched it.
type streamCache struct {
	mu sync.Mutex
	st jetstream.Stream
}

func (c *streamCache) get() jetstream.Stream {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st
}

func (c *streamCache) set(st jetstream.Stream) {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.st = st
	c.mu.Unlock()
}

// AfterWork is grain work that runs in goroutines of its own after the grain answered. Work may
// start while someone waits (a sync.WaitGroup forbids that).
//
// The goroutines are kept for more work until they have been idle for afterWorkIdle. A goroutine
// started per piece of work begins with a small stack, and a removal's JetStream request (JSON
// decoding through reflection) grew it every time: stack copying was 2 % of a node's CPU under
// /chat load at a session cap. A kept goroutine grows its stack once.
type AfterWork struct {
	mu   sync.Mutex
	n    int           // running
	idle chan struct{} // closed when n drops to 0
	// handoff passes work to a goroutine waiting for more (unbuffered: a send succeeds only
	// while one waits); nil until the first work.
	handoff chan func()
}

// afterWorkIdle is how long an AfterWork goroutine waits for more work before it ends.
const afterWorkIdle = 10 * time.Second

// Go runs fn in a goroutine of its own (a waiting one, or a new one), tracked until it returns.
func (w *AfterWork) Go(fn func()) {
	w.mu.Lock()
	if w.n == 0 {
		w.idle = make(chan struct{})
	}
	w.n++
	if w.handoff == nil {
		w.handoff = make(chan func())
	}
	handoff := w.handoff
	w.mu.Unlock()
	select {
	case handoff <- fn:
	default:
		go w.worker(handoff, fn)
	}
}

// worker runs fn, then what it is handed until it waited afterWorkIdle for nothing.
func (w *AfterWork) worker(handoff chan func(), fn func()) {
	idle := time.NewTimer(afterWorkIdle)
	defer idle.Stop()
	for {
		w.run(fn)
		idle.Reset(afterWorkIdle)
		select {
		case fn = <-handoff:
		case <-idle.C:
			return
		}
	}
}

// run runs fn and marks it done, even when it panics (the panic goes on, ending the process as
// it would have in a goroutine of its own).
func (w *AfterWork) run(fn func()) {
	defer w.done()
	fn()
}

func (w *AfterWork) done() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.n--; w.n == 0 {
		close(w.idle)
	}
}

// Wait blocks until no work runs, or ctx ends. Work that starts more work before it ends (a
// removal whose report starts the next) keeps it waiting.
func (w *AfterWork) Wait(ctx context.Context) error {
	for {
		w.mu.Lock()
		n, idle := w.n, w.idle
		w.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-idle:
		case <-ctx.Done():
			return fmt.Errorf("grain work after the answers: %w", ctx.Err())
		}
	}
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
	if d.AfterWork == nil {
		d.AfterWork = &AfterWork{}
	}
	if d.streams == nil {
		d.streams = &streamCache{}
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
		cluster.NewKind(FeatureChatGroups, featureProps()),
	}
}

// FeatureChatGroups is a kind no request is sent to: a member that registers it says that it reads
// a chat exchange stored as one stream message (publishGroup). The membership carries every
// member's kinds, so a chat session writes groups only once every member has it (Placement.
// EveryMemberHosts) and a rolling upgrade from an older version keeps writing what the older
// members read.
const FeatureChatGroups = "feature:chat-groups"

// featureProps is the actor behind a feature kind; nothing asks it anything.
func featureProps() *actor.Props {
	return actor.PropsFromFunc(func(actor.Context) {})
}

// chatSessionProps makes ChatSession props. With an empty tenant the identity comes from the
// cluster (ClusterInit); tests spawn sessions directly with an identity to force duplicate activations.
func chatSessionProps(deps Deps, tenantID, sessionID string) *actor.Props {
	shared := &deps
	// The lock-free mailbox holds no buffer while empty; the default one preallocates a ring of ten
	// slots (about 200 bytes more per idle session). Both are unbounded and FIFO.
	opts := []actor.PropsOption{actor.WithMailbox(actor.UnboundedLockfree())}
	if deps.SingleMember {
		// A node alone runs a session's mailbox in the requester's goroutine (the HTTP handler,
		// which waits for the answer anyway) instead of starting a goroutine per burst of
		// messages: two goroutine handoffs fewer per request, and no new stack to grow while the
		// grain writes to JetStream (under /chat load 2-18 % less CPU per request; one request at
		// a time, no change beyond the noise). The grain blocks its requester for its store round
		// trip, which is bounded by storeTimeout rather than by the request's context. Not on a
		// cluster: there a remote member's messages arrive on one endpoint reader, which a
		// session's I/O would stall.
		opts = append(opts, actor.WithDispatcher(actor.NewSynchronizedDispatcher(300)))
	}
	return actor.PropsFromProducer(func() actor.Actor { return newChatSession(shared, tenantID, sessionID) }, opts...)
}

func rateLimiterProps(deps Deps) *actor.Props {
	// The synchronized dispatcher runs the mailbox in the sender's goroutine instead of starting a
	// goroutine per burst of messages: a decision is a few hundred ns of CPU, so scheduling dominated.
	// Only for grains that never block (ChatSession does I/O and keeps the default dispatcher).
	return actor.PropsFromProducer(func() actor.Actor { return newRateLimiter(deps) },
		actor.WithDispatcher(actor.NewSynchronizedDispatcher(300)))
}
