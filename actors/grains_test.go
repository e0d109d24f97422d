package actors

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/crispy-enigma/crispy/actors/pb"
	"github.com/crispy-enigma/crispy/test/probe"
)

// syncBuffer collects log lines from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRateLimiterGrainHandling(t *testing.T) {
	clock := newFakeClock()
	system := actor.NewActorSystem()
	grain := system.Root.Spawn(rateLimiterProps(Deps{Now: clock.Now}.withDefaults()))
	p := probe.New(t, system, 0)

	req := pbRateLimit(2, 5, 60, 10)
	first := probe.Ask[*pb.RateLimitResponse](t, p, grain, req)
	second := probe.Ask[*pb.RateLimitResponse](t, p, grain, req)
	third := probe.Ask[*pb.RateLimitResponse](t, p, grain, req)
	resetAt := clock.Now().UnixMilli() + 60_000
	want := []*pb.RateLimitResponse{
		{Allowed: true, Limit: 2, Remaining: 1, ResetAtMs: resetAt},
		{Allowed: true, Limit: 2, Remaining: 0, ResetAtMs: resetAt},
		{Allowed: false, Limit: 2, Remaining: 0, ResetAtMs: resetAt, RetryAfterMs: 60_000},
	}
	got := []*pb.RateLimitResponse{first, second, third}
	for i := range want {
		if diff := cmp.Diff(want[i].String(), got[i].String()); diff != "" {
			t.Errorf("reply %d (-want +got):\n%s", i, diff)
		}
	}
	clock.Advance(60 * time.Second)
	if r := probe.Ask[*pb.RateLimitResponse](t, p, grain, req); !r.GetAllowed() {
		t.Fatalf("after a whole window: %v, want allowed", r)
	}
}

func chatMsg(role, content string, ts time.Time) *pb.ChatMessage {
	return &pb.ChatMessage{Role: role, Content: content, TimestampMs: ts.UnixMilli(), TokenCount: int32(len(content))}
}

func contents(msgs []*pb.ChatMessage) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.GetContent()
	}
	return out
}

func TestChatSessionGrainHandling(t *testing.T) {
	js, _ := startNATS(t, t.TempDir())
	clock := newFakeClock()
	deps := Deps{JS: js, Now: clock.Now}.withDefaults()
	system := actor.NewActorSystem()
	grain := system.Root.Spawn(chatSessionProps(deps, "acme", "s1"))
	p := probe.New(t, system, 0)

	now := clock.Now()
	app := probe.Ask[*pb.AppendResponse](t, p, grain, &pb.AppendRequest{Messages: []*pb.ChatMessage{
		chatMsg("user", "hello", now), chatMsg("assistant", "hi there", now),
	}})
	if app.GetError() != "" {
		t.Fatalf("append: %s", app.GetError())
	}
	hist := probe.Ask[*pb.HistoryResponse](t, p, grain, &pb.HistoryRequest{})
	if diff := cmp.Diff([]string{"hello", "hi there"}, contents(hist.GetMessages())); diff != "" {
		t.Fatalf("history (-want +got):\n%s", diff)
	}
	if got := hist.GetMessages()[0]; got.GetRole() != "user" || got.GetTimestampMs() != now.UnixMilli() || got.GetTokenCount() != 5 {
		t.Fatalf("first message %v: role, timestamp or token count lost", got)
	}
	if n := storedCount(t, js, "chat.acme.s1"); n != 1 {
		t.Fatalf("stream holds %d messages, want 1 (the exchange is one stream message)", n)
	}
	if r := probe.Ask[*pb.ClearResponse](t, p, grain, &pb.ClearRequest{}); r.GetError() != "" {
		t.Fatalf("clear: %s", r.GetError())
	}
	if hist := probe.Ask[*pb.HistoryResponse](t, p, grain, &pb.HistoryRequest{}); len(hist.GetMessages()) != 0 {
		t.Fatalf("history after clear: %v", contents(hist.GetMessages()))
	}
	if n := storedCount(t, js, "chat.acme.s1"); n != 0 {
		t.Fatalf("stream holds %d messages after clear, want 0", n)
	}
	// After a clear the session accepts writes again (its expected last sequence is reset).
	if r := probe.Ask[*pb.AppendResponse](t, p, grain, &pb.AppendRequest{Messages: []*pb.ChatMessage{chatMsg("user", "again", now)}}); r.GetError() != "" {
		t.Fatalf("append after clear: %s", r.GetError())
	}
}

// TestChatSessionDuplicateActivationIsFenced spawns two ChatSession activations for one identity
// outside placement, as membership churn can. Each write is conditional on the last subject sequence
// the activation saw (Nats-Expected-Last-Subject-Sequence), so the stale twin's write is refused; it
// reloads and its message lands after the other's, and nothing is overwritten.
func TestChatSessionDuplicateActivationIsFenced(t *testing.T) {
	js, _ := startNATS(t, t.TempDir())
	clock := newFakeClock()
	logs := &syncBuffer{}
	deps := Deps{JS: js, Now: clock.Now, Logger: zerolog.New(logs)}.withDefaults()
	system := actor.NewActorSystem()
	twinA := system.Root.Spawn(chatSessionProps(deps, "acme", "dup"))
	twinB := system.Root.Spawn(chatSessionProps(deps, "acme", "dup"))
	p := probe.New(t, system, 0)

	// Both activate and load the (empty) session.
	for _, twin := range []*actor.PID{twinA, twinB} {
		if r := probe.Ask[*pb.HistoryResponse](t, p, twin, &pb.HistoryRequest{}); len(r.GetMessages()) != 0 || r.GetError() != "" {
			t.Fatalf("initial history %v %q", r.GetMessages(), r.GetError())
		}
	}
	now := clock.Now()
	appendTo := func(twin *actor.PID, content string) {
		t.Helper()
		r := probe.Ask[*pb.AppendResponse](t, p, twin, &pb.AppendRequest{Messages: []*pb.ChatMessage{chatMsg("user", content, now)}})
		if r.GetError() != "" {
			t.Fatalf("append %q: %s", content, r.GetError())
		}
	}
	appendTo(twinA, "a1")
	refusalsBefore := strings.Count(logs.String(), "write refused")
	appendTo(twinB, "b1") // B is stale (expects no message): refused, reloads, lands after a1
	if got := strings.Count(logs.String(), "write refused"); got != refusalsBefore+1 {
		t.Fatalf("stale twin B's write was not refused (refusals %d → %d)", refusalsBefore, got)
	}
	appendTo(twinA, "a2") // now A is stale
	if got := strings.Count(logs.String(), "write refused"); got != refusalsBefore+2 {
		t.Fatalf("stale twin A's write was not refused")
	}

	// Every twin reads every acknowledged write: B has not written since a2, yet its read sees it.
	want := []string{"a1", "b1", "a2"}
	fresh := system.Root.Spawn(chatSessionProps(deps, "acme", "dup"))
	for name, twin := range map[string]*actor.PID{"A": twinA, "B": twinB, "new": fresh} {
		r := probe.Ask[*pb.HistoryResponse](t, p, twin, &pb.HistoryRequest{})
		if diff := cmp.Diff(want, contents(r.GetMessages())); diff != "" {
			t.Fatalf("history seen by %s (-want +got):\n%s", name, diff)
		}
	}
	if n := storedCount(t, js, "chat.acme.dup"); n != 3 {
		t.Fatalf("stream holds %d messages, want 3 (nothing overwritten or lost)", n)
	}
}

// TestChatSessionRetention: docs/api.md "Sessions": retention on every append and read drops messages
// older than sessionRetentionDays and keeps the newest maxMessagesPerSession — and the stream really
// drops them.
func TestChatSessionRetention(t *testing.T) {
	js, _ := startNATS(t, t.TempDir())
	clock := newFakeClock()
	deps := Deps{JS: js, Now: clock.Now}.withDefaults()
	system := actor.NewActorSystem()
	p := probe.New(t, system, 0)

	t.Run("by cap on append", func(t *testing.T) {
		grain := system.Root.Spawn(chatSessionProps(deps, "acme", "cap"))
		for i := range 7 {
			r := probe.Ask[*pb.AppendResponse](t, p, grain, &pb.AppendRequest{
				Messages:  []*pb.ChatMessage{chatMsg("user", string(rune('a'+i)), clock.Now())},
				Retention: &pb.Retention{MaxMessages: 3},
			})
			if r.GetError() != "" {
				t.Fatal(r.GetError())
			}
		}
		h := probe.Ask[*pb.HistoryResponse](t, p, grain, &pb.HistoryRequest{Retention: &pb.Retention{MaxMessages: 3}})
		if diff := cmp.Diff([]string{"e", "f", "g"}, contents(h.GetMessages())); diff != "" {
			t.Fatalf("(-want +got):\n%s", diff)
		}
		settled(t, deps, p, grain)
		if n := storedCount(t, js, "chat.acme.cap"); n != 3 {
			t.Fatalf("stream holds %d messages, want 3", n)
		}
	})
	t.Run("a long dropped prefix", func(t *testing.T) {
		// More dropped stream messages than retention deletes one by one: one subject purge.
		grain := system.Root.Spawn(chatSessionProps(deps, "acme", "long"))
		n := maxRetentionDeletes + 8
		for i := range n {
			r := probe.Ask[*pb.AppendResponse](t, p, grain, &pb.AppendRequest{
				Messages: []*pb.ChatMessage{chatMsg("user", fmt.Sprint(i), clock.Now())}})
			if r.GetError() != "" {
				t.Fatal(r.GetError())
			}
		}
		ret := &pb.Retention{MaxMessages: 2}
		h := probe.Ask[*pb.HistoryResponse](t, p, grain, &pb.HistoryRequest{Retention: ret})
		if diff := cmp.Diff([]string{fmt.Sprint(n - 2), fmt.Sprint(n - 1)}, contents(h.GetMessages())); diff != "" {
			t.Fatalf("(-want +got):\n%s", diff)
		}
		settled(t, deps, p, grain)
		if got := storedCount(t, js, "chat.acme.long"); got != 2 {
			t.Fatalf("stream holds %d messages, want 2", got)
		}
	})
	t.Run("by age on read", func(t *testing.T) {
		grain := system.Root.Spawn(chatSessionProps(deps, "acme", "age"))
		day := 24 * time.Hour
		old := clock.Now()
		r := probe.Ask[*pb.AppendResponse](t, p, grain, &pb.AppendRequest{Messages: []*pb.ChatMessage{
			chatMsg("user", "old1", old), chatMsg("assistant", "old2", old),
		}})
		if r.GetError() != "" {
			t.Fatal(r.GetError())
		}
		clock.Advance(2 * day)
		r = probe.Ask[*pb.AppendResponse](t, p, grain, &pb.AppendRequest{Messages: []*pb.ChatMessage{chatMsg("user", "new", clock.Now())}})
		if r.GetError() != "" {
			t.Fatal(r.GetError())
		}
		settled(t, deps, p, grain)
		if n := storedCount(t, js, "chat.acme.age"); n != 2 {
			t.Fatalf("before retention the stream holds %d, want 2 (an exchange, a message)", n)
		}
		ret := &pb.Retention{MaxAgeMs: day.Milliseconds()}
		h := probe.Ask[*pb.HistoryResponse](t, p, grain, &pb.HistoryRequest{Retention: ret})
		if diff := cmp.Diff([]string{"new"}, contents(h.GetMessages())); diff != "" {
			t.Fatalf("(-want +got):\n%s", diff)
		}
		settled(t, deps, p, grain)
		if n := storedCount(t, js, "chat.acme.age"); n != 1 {
			t.Fatalf("stream holds %d messages, want 1 (old ones removed, not hidden)", n)
		}
		// A message stamped earlier than the last stored one (an exchange that started before another
		// finished) is stored with the last stored timestamp, so timestamps never decrease in history
		// order and retention never has to delete from the middle.
		r = probe.Ask[*pb.AppendResponse](t, p, grain, &pb.AppendRequest{
			Messages:  []*pb.ChatMessage{chatMsg("user", "late-old", old), chatMsg("user", "newest", clock.Now())},
			Retention: ret,
		})
		if r.GetError() != "" {
			t.Fatal(r.GetError())
		}
		settled(t, deps, p, grain)
		if n := storedCount(t, js, "chat.acme.age"); n != 2 {
			t.Fatalf("stream holds %d messages, want 2 (a message, an exchange)", n)
		}
		h = probe.Ask[*pb.HistoryResponse](t, p, grain, &pb.HistoryRequest{Retention: ret})
		if diff := cmp.Diff([]string{"new", "late-old", "newest"}, contents(h.GetMessages())); diff != "" {
			t.Fatalf("(-want +got):\n%s", diff)
		}
		for i := 1; i < len(h.GetMessages()); i++ {
			if h.GetMessages()[i].GetTimestampMs() < h.GetMessages()[i-1].GetTimestampMs() {
				t.Fatalf("timestamps decrease at %d: %v", i, h.GetMessages())
			}
		}
		clock.Advance(2 * day) // everything expires: the session is empty and still writable
		h = probe.Ask[*pb.HistoryResponse](t, p, grain, &pb.HistoryRequest{Retention: ret})
		settled(t, deps, p, grain)
		if len(h.GetMessages()) != 0 || storedCount(t, js, "chat.acme.age") != 0 {
			t.Fatalf("after expiry: history %v", contents(h.GetMessages()))
		}
		r = probe.Ask[*pb.AppendResponse](t, p, grain, &pb.AppendRequest{Messages: []*pb.ChatMessage{chatMsg("user", "fresh", clock.Now())}, Retention: ret})
		if r.GetError() != "" {
			t.Fatal(r.GetError())
		}
	})
	t.Run("limit and before page the history", func(t *testing.T) {
		grain := system.Root.Spawn(chatSessionProps(deps, "acme", "page"))
		base := clock.Now()
		var msgs []*pb.ChatMessage
		for i := range 5 {
			msgs = append(msgs, chatMsg("user", string(rune('a'+i)), base.Add(time.Duration(i)*time.Second)))
		}
		if r := probe.Ask[*pb.AppendResponse](t, p, grain, &pb.AppendRequest{Messages: msgs}); r.GetError() != "" {
			t.Fatal(r.GetError())
		}
		tests := []struct {
			limit  int32
			before time.Time
			want   []string
		}{
			{0, time.Time{}, []string{"a", "b", "c", "d", "e"}},
			{2, time.Time{}, []string{"d", "e"}},
			{0, base.Add(3 * time.Second), []string{"a", "b", "c"}},
			{2, base.Add(3 * time.Second), []string{"b", "c"}},
			{2, base, []string{}},
		}
		for _, tt := range tests {
			req := &pb.HistoryRequest{Limit: tt.limit}
			if !tt.before.IsZero() {
				req.BeforeMs = tt.before.UnixMilli()
			}
			h := probe.Ask[*pb.HistoryResponse](t, p, grain, req)
			if diff := cmp.Diff(tt.want, contents(h.GetMessages())); diff != "" {
				t.Errorf("limit %d before %v (-want +got):\n%s", tt.limit, tt.before, diff)
			}
		}
	})
}

func TestWaitReturnsWhenContextIsCancelled(t *testing.T) {
	system := actor.NewActorSystem()
	silent := system.Root.Spawn(actor.PropsFromFunc(func(actor.Context) {})) // never replies
	ctx, cancel := context.WithCancel(context.Background())
	f := system.Root.RequestFuture(silent, &pb.ClearRequest{}, time.Hour)
	cancel()
	if _, err := wait(ctx, system, f); !errors.Is(err, context.Canceled) {
		t.Fatalf("wait after cancel: %v, want context.Canceled", err)
	}
}

// TestRateLimiterPassivatesOnceItsWindowIsEmpty: an idle RateLimiter stops only when no admitted
// request is still inside a window (stopping earlier would forget them and widen the limit).
func TestRateLimiterPassivatesOnceItsWindowIsEmpty(t *testing.T) {
	clock := newFakeClock()
	system := actor.NewActorSystem()
	grain := system.Root.Spawn(rateLimiterProps(Deps{Now: clock.Now, IdleTimeout: 20 * time.Millisecond}.withDefaults()))
	p := probe.New(t, system, 0)
	if r := probe.Ask[*pb.RateLimitResponse](t, p, grain, pbRateLimit(5, 5, 60, 10)); !r.GetAllowed() {
		t.Fatalf("first request denied: %v", r)
	}
	clock.Advance(61 * time.Second) // the admitted request left both windows
	p.Watch(grain)
	probe.Expect[*actor.Terminated](t, p)
}

func TestRetryAfterSeconds(t *testing.T) {
	tests := []struct {
		d    RateDecision
		want int
	}{
		{RateDecision{Allowed: true}, 0},
		{RateDecision{RetryAfter: time.Millisecond}, 1},
		{RateDecision{RetryAfter: time.Second}, 1},
		{RateDecision{RetryAfter: 1001 * time.Millisecond}, 2},
		{RateDecision{RetryAfter: 45 * time.Second}, 45},
	}
	for _, tt := range tests {
		if got := tt.d.RetryAfterSeconds(); got != tt.want {
			t.Errorf("%+v: %d, want %d", tt.d, got, tt.want)
		}
	}
}
