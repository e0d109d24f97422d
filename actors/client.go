package actors

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/crispy-enigma/crispy/actors/pb"
)

// Message is one chat message.
type Message struct {
	Role       string
	Content    string
	Timestamp  time.Time // zero = the grain stamps it when storing
	TokenCount int
}

// Retention is the tenant's session retention (sessionRetentionDays, maxMessagesPerSession).
// Zero fields mean no limit.
type Retention struct {
	MaxAge      time.Duration
	MaxMessages int
}

// RateLimit is the tenant's rateLimit config. WindowSec 0 means 60 and BurstWindowSec 0 means
// WindowSec/6 (CONTRACT.md defaults); Burst 0 disables the burst window.
type RateLimit struct {
	PerMinute, Burst, WindowSec, BurstWindowSec int
}

// RateDecision is the RateLimiter's answer, what the rate-limit headers need.
type RateDecision struct {
	Allowed   bool
	Limit     int       // x-ratelimit-limit (= perMinute)
	Remaining int       // x-ratelimit-remaining
	ResetAt   time.Time // x-ratelimit-reset (epoch ms)
	// RetryAfter is the time until a request would be admitted (0 when allowed); Retry-After is
	// its ceiling in seconds, at least 1.
	RetryAfter time.Duration
}

// RetryAfterSeconds is the Retry-After header value of a denied request: RetryAfter rounded up to
// whole seconds, at least 1. It is 0 when the request was allowed.
func (d RateDecision) RetryAfterSeconds() int {
	if d.Allowed {
		return 0
	}
	return max(1, int((d.RetryAfter+time.Second-1)/time.Second))
}

// ErrGrain wraps an error a grain reported (storage failure and the like).
var ErrGrain = errors.New("grain error")

// Client is the typed API of the grains for the HTTP layer. It is safe for concurrent use.
type Client struct {
	c       *cluster.Cluster
	timeout time.Duration
}

// NewClient returns a client sending through c; timeout bounds every request (a sooner ctx deadline wins).
func NewClient(c *cluster.Cluster, timeout time.Duration) *Client {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	return &Client{c: c, timeout: timeout}
}

// Append stores msgs in order in the session, after applying retention; it returns once JetStream
// acknowledged them.
func (c *Client) Append(ctx context.Context, tenantID, sessionID string, msgs []Message, r Retention) error {
	id, err := sessionIdentity(tenantID, sessionID)
	if err != nil {
		return err
	}
	req := &pb.AppendRequest{Messages: make([]*pb.ChatMessage, len(msgs)), Retention: toPBRetention(r)}
	for i, m := range msgs {
		req.Messages[i] = &pb.ChatMessage{Role: m.Role, Content: m.Content, TokenCount: int32(m.TokenCount)}
		if !m.Timestamp.IsZero() {
			req.Messages[i].TimestampMs = m.Timestamp.UnixMilli()
		}
	}
	res, err := request[*pb.AppendResponse](ctx, c, id, KindChatSession, req)
	if err != nil {
		return err
	}
	return grainErr(res.GetError())
}

// History returns the session's messages, oldest first: the newest limit (0 = all) of those with a
// timestamp before before (zero = no bound), after applying retention.
func (c *Client) History(ctx context.Context, tenantID, sessionID string, r Retention, limit int, before time.Time) ([]Message, error) {
	id, err := sessionIdentity(tenantID, sessionID)
	if err != nil {
		return nil, err
	}
	req := &pb.HistoryRequest{Retention: toPBRetention(r), Limit: int32(max(0, limit))}
	if !before.IsZero() {
		req.BeforeMs = before.UnixMilli()
	}
	res, err := request[*pb.HistoryResponse](ctx, c, id, KindChatSession, req)
	if err != nil {
		return nil, err
	}
	if err := grainErr(res.GetError()); err != nil {
		return nil, err
	}
	out := make([]Message, len(res.GetMessages()))
	for i, m := range res.GetMessages() {
		out[i] = Message{
			Role:       m.GetRole(),
			Content:    m.GetContent(),
			Timestamp:  time.UnixMilli(m.GetTimestampMs()),
			TokenCount: int(m.GetTokenCount()),
		}
	}
	return out, nil
}

// Clear erases the session's stored messages.
func (c *Client) Clear(ctx context.Context, tenantID, sessionID string) error {
	id, err := sessionIdentity(tenantID, sessionID)
	if err != nil {
		return err
	}
	res, err := request[*pb.ClearResponse](ctx, c, id, KindChatSession, &pb.ClearRequest{})
	if err != nil {
		return err
	}
	return grainErr(res.GetError())
}

// Allow asks the user's RateLimiter whether one more request is admitted, and records it if so.
func (c *Client) Allow(ctx context.Context, tenantID, userID string, lim RateLimit) (RateDecision, error) {
	id, err := rateLimitIdentity(tenantID, userID)
	if err != nil {
		return RateDecision{}, err
	}
	res, err := request[*pb.RateLimitResponse](ctx, c, id, KindRateLimiter, &pb.RateLimitRequest{
		PerMinute:      int32(lim.PerMinute),
		Burst:          int32(lim.Burst),
		WindowSec:      int32(lim.WindowSec),
		BurstWindowSec: int32(lim.BurstWindowSec),
	})
	if err != nil {
		return RateDecision{}, err
	}
	return RateDecision{
		Allowed:    res.GetAllowed(),
		Limit:      int(res.GetLimit()),
		Remaining:  int(res.GetRemaining()),
		ResetAt:    time.UnixMilli(res.GetResetAtMs()),
		RetryAfter: time.Duration(res.GetRetryAfterMs()) * time.Millisecond,
	}, nil
}

func toPBRetention(r Retention) *pb.Retention {
	return &pb.Retention{MaxAgeMs: r.MaxAge.Milliseconds(), MaxMessages: int32(max(0, r.MaxMessages))}
}

func grainErr(s string) error {
	if s == "" {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrGrain, s)
}

// maxDeliveryAttempts bounds how often a request is re-sent after it was not delivered (dead letter:
// the cached activation passivated or its member left).
const maxDeliveryAttempts = 6

// request sends msg to the grain and waits for a reply of type R. It resolves the grain's PID through
// the cluster's PID cache (one identity lookup per activation, not per request) and sends with
// RequestFuture, which costs a few µs instead of cluster.Request's ~15 µs. A dead letter (stale PID)
// drops the cache entry and resends: the message was never processed, so that is safe. A timeout is
// not retried, because the grain may have processed the message (an Append must not be stored twice).
func request[R proto.Message](ctx context.Context, c *Client, identity, kind string, msg proto.Message) (R, error) {
	var zero R
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	deadline := time.Now().Add(c.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	var lastErr error
	for attempt := 0; attempt < maxDeliveryAttempts; attempt++ {
		if attempt > 0 {
			// The placement actor may not have seen the old activation's termination yet: back off
			// briefly (1, 4, 9, 16, 25 ms) so it can, instead of resolving the same dead PID again.
			select {
			case <-ctx.Done():
				return zero, ctx.Err()
			case <-time.After(time.Duration(attempt*attempt) * time.Millisecond):
			}
		}
		remaining := time.Until(deadline)
		if remaining <= 0 {
			break
		}
		pid, ok := c.c.PidCache.Get(identity, kind)
		if !ok || pid == nil {
			pid = c.c.Get(identity, kind)
			if pid == nil {
				lastErr = fmt.Errorf("%s %s: no activation (no member hosts kind?)", kind, identity)
				continue
			}
			c.c.PidCache.Set(identity, kind, pid)
		}
		res, err := wait(ctx, c.c.ActorSystem, c.c.ActorSystem.Root.RequestFuture(pid, msg, remaining))
		if err == nil {
			typed, ok := res.(R)
			if !ok {
				return zero, fmt.Errorf("%s %s: unexpected reply %T", kind, identity, res)
			}
			return typed, nil
		}
		if errors.Is(err, actor.ErrDeadLetter) || errors.Is(err, remote.ErrDeadLetter) {
			c.c.PidCache.RemoveByValue(identity, kind, pid)
			lastErr = err
			continue
		}
		if errors.Is(err, actor.ErrTimeout) || errors.Is(err, remote.ErrTimeout) {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return zero, ctxErr
			}
			return zero, fmt.Errorf("%s %s: %w (%w)", kind, identity, context.DeadlineExceeded, err)
		}
		return zero, fmt.Errorf("%s %s: %w", kind, identity, err)
	}
	if lastErr == nil {
		lastErr = context.DeadlineExceeded
	}
	return zero, fmt.Errorf("%s %s: not delivered: %w", kind, identity, lastErr)
}

// wait waits for the future, or for ctx to end: then it stops the future (no goroutine per request,
// which matters on the hot path) and returns ctx's error.
func wait(ctx context.Context, system *actor.ActorSystem, f *actor.Future) (any, error) {
	if ctx.Done() == nil {
		return f.Result()
	}
	stop := context.AfterFunc(ctx, func() { system.Root.Stop(f.PID()) })
	res, err := f.Result()
	stop()
	if res == nil && err == nil {
		// A stopped future resolves with neither a result nor an error.
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, errors.New("empty reply")
	}
	return res, err
}

// EnsureStreams creates or updates the CHAT stream: subjects chat.>, file storage, the given replicas,
// direct gets for fast loads.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, replicas int) error {
	if replicas <= 0 {
		replicas = 1
	}
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        StreamChat,
		Description: "chat sessions: one message per chat message on chat.<tenant>.<session>",
		Subjects:    []string{"chat.>"},
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		AllowDirect: true,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
	})
	if err != nil {
		return fmt.Errorf("ensure stream %s: %w", StreamChat, err)
	}
	return nil
}
