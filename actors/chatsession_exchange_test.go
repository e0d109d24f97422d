package actors

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"

	"github.com/crispy-enigma/crispy/actors/pb"
	"github.com/crispy-enigma/crispy/test/probe"
)

// exchangeEnv is one NATS server and actor system for the tests of grouped appends on a
// single-replica stream.
type exchangeEnv struct {
	t      *testing.T
	js     jetstream.JetStream
	clock  *fakeClock
	deps   Deps
	system *actor.ActorSystem
	p      *probe.Probe
	logs   *syncBuffer
}

func newExchangeEnv(t *testing.T) *exchangeEnv {
	t.Helper()
	js, _ := startNATS(t, t.TempDir())
	clock := newFakeClock()
	logs := &syncBuffer{}
	system := actor.NewActorSystem()
	t.Cleanup(system.Shutdown)
	return &exchangeEnv{t: t, js: js, clock: clock, system: system, p: probe.New(t, system, 0), logs: logs,
		deps: Deps{JS: js, Now: clock.Now, Logger: zerolog.New(logs)}.withDefaults()}
}

// activation spawns a new activation of the session, which loads it from the stream on its first
// request (as after passivation or on another member).
func (e *exchangeEnv) activation(session string) *actor.PID {
	return e.system.Root.Spawn(chatSessionProps(e.deps, "acme", session))
}

func (e *exchangeEnv) append(pid *actor.PID, req *pb.AppendRequest) {
	e.t.Helper()
	if r := probe.Ask[*pb.AppendResponse](e.t, e.p, pid, req); r.GetError() != "" {
		e.t.Fatalf("append %v: %s", contents(req.GetMessages()), r.GetError())
	}
	settled(e.t, e.deps, e.p, pid)
}

func (e *exchangeEnv) history(pid *actor.PID, r *pb.Retention) []string {
	e.t.Helper()
	h := probe.Ask[*pb.HistoryResponse](e.t, e.p, pid, &pb.HistoryRequest{Retention: r})
	if h.GetError() != "" {
		e.t.Fatalf("history: %s", h.GetError())
	}
	settled(e.t, e.deps, e.p, pid)
	return contents(h.GetMessages())
}

// publishRaw stores msgs as one stream message without a grain, as a member writes it: one
// ChatMessage (the format of every message before groups), or several as a group.
func (e *exchangeEnv) publishRaw(session, msgID string, msgs ...*pb.ChatMessage) {
	e.t.Helper()
	m := nats.NewMsg(chatSubject("acme", session))
	var err error
	if len(msgs) == 1 {
		m.Data, err = proto.Marshal(msgs[0])
	} else {
		m.Data, err = proto.Marshal(&pb.ChatMessages{Messages: msgs})
		m.Header.Set(hdrMessages, strconv.Itoa(len(msgs)))
	}
	if err != nil {
		e.t.Fatal(err)
	}
	if msgID != "" {
		m.Header.Set(jetstream.MsgIDHeader, msgID)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := e.js.PublishMsg(ctx, m); err != nil {
		e.t.Fatal(err)
	}
}

// lastStored is the session's newest stream message.
func (e *exchangeEnv) lastStored(session string) *jetstream.RawStreamMsg {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := e.js.Stream(ctx, StreamChat)
	if err != nil {
		e.t.Fatal(err)
	}
	raw, err := st.GetLastMsgForSubject(ctx, chatSubject("acme", session))
	if err != nil {
		e.t.Fatal(err)
	}
	return raw
}

func msgsOf(role string, contents ...string) []*pb.ChatMessage {
	out := make([]*pb.ChatMessage, len(contents))
	for i, c := range contents {
		out[i] = &pb.ChatMessage{Role: role, Content: c}
	}
	return out
}

func numbered(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + strconv.Itoa(i)
	}
	return out
}

func TestGroupMsgID(t *testing.T) {
	tests := []struct {
		requestID string
		n         int
		want      string
		wantIDs   []string
	}{
		{"r1", 2, "r1.0-1", []string{"r1.0", "r1.1"}},
		{"5f0c-9a", 3, "5f0c-9a.0-2", []string{"5f0c-9a.0", "5f0c-9a.1", "5f0c-9a.2"}},
		{"a.0-1", 2, "a.0-1.0-1", []string{"a.0-1.0", "a.0-1.1"}}, // a request ID that looks like a group's
	}
	for _, tt := range tests {
		got := groupMsgID(tt.requestID, tt.n)
		if got != tt.want {
			t.Errorf("groupMsgID(%q, %d) = %q, want %q", tt.requestID, tt.n, got, tt.want)
		}
		if diff := cmp.Diff(tt.wantIDs, groupMemberIDs(got, tt.n)); diff != "" {
			t.Errorf("groupMemberIDs(%q) (-want +got):\n%s", got, diff)
		}
		for i := range 1000 {
			if appendMsgID(tt.requestID, i) == got {
				t.Errorf("group ID %q is also message %d's ID", got, i)
			}
		}
	}
	// Not a group's ID (another count, or a message's own ID): no member IDs, so nothing is
	// wrongly held.
	for _, id := range []string{"r1.0-1", "r1.0", "", "r1"} {
		if ids := groupMemberIDs(id, 3); ids[0] != "" {
			t.Errorf("groupMemberIDs(%q, 3) = %v, want none", id, ids)
		}
	}
}

// On a single-replica stream an Append of 2..maxAppendBatch messages is one stream message, and its
// history is the same from the activation that wrote it and from a fresh one that loads it.
func TestChatSessionAppendIsOneStreamMessage(t *testing.T) {
	tests := []struct {
		name       string
		appends    [][]string // contents of each Append
		wantStored uint64
		wantGroup  int // Crispy-Messages of the newest stream message ("" = 0)
	}{
		{"one message", [][]string{{"q"}}, 1, 0},
		{"an exchange", [][]string{{"q", "a"}}, 1, 2},
		{"three exchanges", [][]string{{"q1", "a1"}, {"q2", "a2"}, {"q3", "a3"}}, 3, 2},
		{"a tool round", [][]string{{"q", "call", "result", "a"}}, 1, 4},
		{"one, then an exchange", [][]string{{"hello"}, {"q", "a"}}, 2, 2},
		{"the largest group", [][]string{numbered("m", maxAppendBatch)}, 1, maxAppendBatch},
		{"too many for a group", [][]string{numbered("m", maxAppendBatch+1)}, maxAppendBatch + 1, 0},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newExchangeEnv(t)
			session := fmt.Sprintf("s%d", i)
			writer := e.activation(session)
			var want []string
			for k, c := range tt.appends {
				e.append(writer, &pb.AppendRequest{RequestId: fmt.Sprintf("r%d", k), Messages: msgsOf("user", c...)})
				want = append(want, c...)
			}
			if n := storedCount(t, e.js, chatSubject("acme", session)); n != tt.wantStored {
				t.Errorf("stream holds %d messages, want %d", n, tt.wantStored)
			}
			last := e.lastStored(session)
			if got := last.Header.Get(hdrMessages); got != map[bool]string{true: "", false: strconv.Itoa(tt.wantGroup)}[tt.wantGroup == 0] {
				t.Errorf("newest stream message: %s %q, want %d", hdrMessages, got, tt.wantGroup)
			}
			if tt.wantGroup > 0 {
				if id, want := last.Header.Get(jetstream.MsgIDHeader), groupMsgID(fmt.Sprintf("r%d", len(tt.appends)-1), tt.wantGroup); id != want {
					t.Errorf("group's message ID %q, want %q", id, want)
				}
			}
			if diff := cmp.Diff(want, e.history(writer, nil)); diff != "" {
				t.Errorf("history from the writer (-want +got):\n%s", diff)
			}
			// Loaded, every message keeps its own ID (a group's are derived from its ID), so a
			// re-sent Append finds them held.
			var wantIDs []string
			for k, c := range tt.appends {
				for j := range c {
					wantIDs = append(wantIDs, appendMsgID(fmt.Sprintf("r%d", k), j))
				}
			}
			loaded := &chatSession{deps: &e.deps, subject: chatSubject("acme", session)}
			if err := loaded.reload(); err != nil {
				t.Fatal(err)
			}
			gotIDs := make([]string, len(loaded.msgs))
			for k, sm := range loaded.msgs {
				gotIDs[k] = sm.id
			}
			if diff := cmp.Diff(wantIDs, gotIDs); diff != "" {
				t.Errorf("loaded message IDs (-want +got):\n%s", diff)
			}
			e.system.Root.Stop(writer) // passivated: the next activation loads the session
			if diff := cmp.Diff(want, e.history(e.activation(session), nil)); diff != "" {
				t.Errorf("history after a reload (-want +got):\n%s", diff)
			}
		})
	}
}

// The messages of a group keep their own fields and non-decreasing timestamps, and a member that
// predates groups (it decodes every stream message as one ChatMessage) sees a message without role
// or content, stamped with the group's newest timestamp.
func TestChatSessionGroupFormat(t *testing.T) {
	e := newExchangeEnv(t)
	base := e.clock.Now()
	later := base.Add(time.Minute)
	user := &pb.ChatMessage{Role: "user", Content: "q", TimestampMs: later.UnixMilli(), TokenCount: 3}
	reply := &pb.ChatMessage{Role: "assistant", Content: "a", TimestampMs: base.UnixMilli(), TokenCount: 5,
		ResponseId: "resp_1", Model: "m", TokensIn: 7, ToolCallsJson: `[{"id":"c"}]`}
	grain := e.activation("fmt")
	e.append(grain, &pb.AppendRequest{RequestId: "r", Messages: []*pb.ChatMessage{user, reply}})

	raw := e.lastStored("fmt")
	var group pb.ChatMessages
	if err := proto.Unmarshal(raw.Data, &group); err != nil {
		t.Fatal(err)
	}
	// The reply was stamped before the user's message: stored with the user's timestamp.
	wantReply := proto.Clone(reply).(*pb.ChatMessage)
	wantReply.TimestampMs = later.UnixMilli()
	want := []*pb.ChatMessage{user, wantReply}
	for i := range want {
		if !proto.Equal(want[i], group.GetMessages()[i]) {
			t.Errorf("stored message %d = %v, want %v", i, group.GetMessages()[i], want[i])
		}
	}
	var old pb.ChatMessage // what an older member decodes
	if err := proto.Unmarshal(raw.Data, &old); err != nil {
		t.Fatalf("an older member cannot decode a group: %v", err)
	}
	if old.GetRole() != "" || old.GetContent() != "" || old.GetResponseId() != "" || old.GetTimestampMs() != later.UnixMilli() {
		t.Errorf("an older member sees %v, want no role, content or response and timestamp %d", &old, later.UnixMilli())
	}
	h := probe.Ask[*pb.HistoryResponse](t, e.p, e.activation("fmt"), &pb.HistoryRequest{})
	for i := range want {
		if !proto.Equal(want[i], h.GetMessages()[i]) {
			t.Errorf("loaded message %d = %v, want %v", i, h.GetMessages()[i], want[i])
		}
	}
}

// Retention counts chat messages. A cap that cuts an exchange in half drops only the dropped half
// from the history; its stream message stays until both halves are dropped, and a fresh activation
// (which loads the dropped half again) answers the same history.
func TestChatSessionRetentionCutsAGroup(t *testing.T) {
	tests := []struct {
		max        int32
		exchanges  int
		want       []string
		wantStored uint64
	}{
		{max: 3, exchanges: 1, want: []string{"q0", "a0"}, wantStored: 1},
		{max: 3, exchanges: 2, want: []string{"a0", "q1", "a1"}, wantStored: 2},             // exchange 0 half kept
		{max: 3, exchanges: 3, want: []string{"a1", "q2", "a2"}, wantStored: 2},             // exchange 0 purged
		{max: 1, exchanges: 2, want: []string{"a1"}, wantStored: 1},                         // exchange 1 half kept
		{max: 2, exchanges: 3, want: []string{"q2", "a2"}, wantStored: 1},                   // whole exchanges
		{max: 5, exchanges: 4, want: []string{"a1", "q2", "a2", "q3", "a3"}, wantStored: 3}, // 0 purged, 1 half
	}
	for i, tt := range tests {
		t.Run(fmt.Sprintf("max %d after %d exchanges", tt.max, tt.exchanges), func(t *testing.T) {
			e := newExchangeEnv(t)
			session := fmt.Sprintf("cap%d", i)
			r := &pb.Retention{MaxMessages: tt.max}
			grain := e.activation(session)
			for k := range tt.exchanges {
				k := strconv.Itoa(k)
				e.append(grain, &pb.AppendRequest{RequestId: "r" + k, Retention: r, Messages: []*pb.ChatMessage{
					{Role: "user", Content: "q" + k}, {Role: "assistant", Content: "a" + k}}})
			}
			if diff := cmp.Diff(tt.want, e.history(grain, r)); diff != "" {
				t.Errorf("history (-want +got):\n%s", diff)
			}
			if n := storedCount(t, e.js, chatSubject("acme", session)); n != tt.wantStored {
				t.Errorf("stream holds %d messages, want %d", n, tt.wantStored)
			}
			if diff := cmp.Diff(tt.want, e.history(e.activation(session), r)); diff != "" {
				t.Errorf("history after a reload (-want +got):\n%s", diff)
			}
			if n := storedCount(t, e.js, chatSubject("acme", session)); n != tt.wantStored {
				t.Errorf("after the reload's retention the stream holds %d messages, want %d", n, tt.wantStored)
			}
			// The writer still writes: its expected last sequence is the stream's.
			e.append(grain, &pb.AppendRequest{RequestId: "next", Retention: r, Messages: msgsOf("user", "x", "y")})
			got := e.history(grain, r)
			if got[len(got)-1] != "y" || len(got) > int(tt.max) {
				t.Errorf("after one more exchange: %v", got)
			}
			if diff := cmp.Diff(got, e.history(e.activation(session), r)); diff != "" {
				t.Errorf("after one more exchange, history after a reload (-writer +fresh):\n%s", diff)
			}
		})
	}

	t.Run("by age", func(t *testing.T) {
		e := newExchangeEnv(t)
		day := 24 * time.Hour
		r := &pb.Retention{MaxAgeMs: day.Milliseconds()}
		t0 := e.clock.Now()
		grain := e.activation("age")
		// The reply came two minutes after the question (the client stamps them).
		e.append(grain, &pb.AppendRequest{RequestId: "r0", Retention: r, Messages: []*pb.ChatMessage{
			chatMsg("user", "q0", t0), chatMsg("assistant", "a0", t0.Add(2*time.Minute))}})
		e.append(grain, &pb.AppendRequest{RequestId: "r1", Retention: r, Messages: []*pb.ChatMessage{
			chatMsg("user", "q1", t0.Add(10*time.Minute)), chatMsg("assistant", "a1", t0.Add(10*time.Minute))}})
		steps := []struct {
			advance    time.Duration
			want       []string
			wantStored uint64
		}{
			{day + time.Minute, []string{"a0", "q1", "a1"}, 2}, // q0 expired, a0 not: the group stays
			{2 * time.Minute, []string{"q1", "a1"}, 1},         // both expired: purged
			{10 * time.Minute, []string{}, 0},
		}
		for _, st := range steps {
			e.clock.Advance(st.advance)
			if diff := cmp.Diff(st.want, e.history(grain, r)); diff != "" {
				t.Errorf("after %v: history (-want +got):\n%s", st.advance, diff)
			}
			if n := storedCount(t, e.js, "chat.acme.age"); n != st.wantStored {
				t.Errorf("after %v: stream holds %d messages, want %d", st.advance, n, st.wantStored)
			}
			if diff := cmp.Diff(st.want, e.history(e.activation("age"), r)); diff != "" {
				t.Errorf("after %v: history after a reload (-want +got):\n%s", st.advance, diff)
			}
		}
	})

	// Out-of-order timestamps (written before stamping kept them in order) make stragglers that
	// retention deletes one by one: a group only when all its messages are dropped.
	t.Run("stragglers", func(t *testing.T) {
		tests := []struct {
			name       string
			groupAt    []time.Duration // the timestamps of the group in the middle, from t0
			want       []string
			wantStored uint64
		}{
			{"whole group expired", []time.Duration{0, 0}, []string{"m0", "m3"}, 2},
			{"half of the group expired", []time.Duration{0, time.Hour}, []string{"m0", "g2", "m3"}, 3},
		}
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				e := newExchangeEnv(t)
				session := fmt.Sprintf("straggler%d", i)
				t0 := e.clock.Now()
				e.publishRaw(session, "", chatMsg("user", "m0", t0.Add(time.Hour)))
				e.publishRaw(session, groupMsgID("g", 2), chatMsg("user", "g1", t0.Add(tt.groupAt[0])), chatMsg("assistant", "g2", t0.Add(tt.groupAt[1])))
				e.publishRaw(session, "", chatMsg("user", "m3", t0.Add(time.Hour)))
				r := &pb.Retention{MaxAgeMs: (30 * time.Minute).Milliseconds()}
				e.clock.Advance(40 * time.Minute)
				grain := e.activation(session)
				if diff := cmp.Diff(tt.want, e.history(grain, r)); diff != "" {
					t.Errorf("history (-want +got):\n%s", diff)
				}
				if n := storedCount(t, e.js, chatSubject("acme", session)); n != tt.wantStored {
					t.Errorf("stream holds %d messages, want %d", n, tt.wantStored)
				}
				if diff := cmp.Diff(tt.want, e.history(e.activation(session), r)); diff != "" {
					t.Errorf("history after a reload (-want +got):\n%s", diff)
				}
				e.append(grain, &pb.AppendRequest{Retention: r, Messages: msgsOf("user", "x", "y")})
				if diff := cmp.Diff(append(tt.want, "x", "y"), e.history(e.activation(session), r)); diff != "" {
					t.Errorf("history after another exchange (-want +got):\n%s", diff)
				}
			})
		}
	})
}

// An Append re-sent with the same request ID stores each message once, whichever activation handles
// the re-send and whatever an earlier try stored: the group (held, loaded, reported a duplicate by
// JetStream, or stored and removed again by retention), or some messages one by one (as an earlier
// member that wrote one message at a time, then died, left them).
func TestChatSessionResentExchangeIsStoredOnce(t *testing.T) {
	exchange := func(requestID string) *pb.AppendRequest {
		return &pb.AppendRequest{RequestId: requestID, Messages: msgsOf("user", requestID+"q", requestID+"a")}
	}
	t.Run("group", func(t *testing.T) {
		e := newExchangeEnv(t)
		stale := e.activation("idem")
		if got := e.history(stale, nil); len(got) != 0 {
			t.Fatalf("initial history %v", got)
		}
		first := e.activation("idem")
		e.append(first, exchange("r1"))
		e.append(first, exchange("r1"))                // same activation: it holds the IDs
		e.append(e.activation("idem"), exchange("r1")) // new activation: it loaded them
		e.append(stale, exchange("r1"))                // loaded before: JetStream reports the duplicate
		e.append(stale, exchange("r2"))
		want := []string{"r1q", "r1a", "r2q", "r2a"}
		for name, pid := range map[string]*actor.PID{"stale": stale, "new": e.activation("idem")} {
			if diff := cmp.Diff(want, e.history(pid, nil)); diff != "" {
				t.Errorf("history via %s activation (-want +got):\n%s", name, diff)
			}
		}
		if n := storedCount(t, e.js, "chat.acme.idem"); n != 2 {
			t.Errorf("stream holds %d messages, want 2", n)
		}
	})
	t.Run("group removed by retention", func(t *testing.T) {
		e := newExchangeEnv(t)
		r := &pb.Retention{MaxMessages: 2}
		stale := e.activation("gone")
		if got := e.history(stale, nil); len(got) != 0 {
			t.Fatalf("initial history %v", got)
		}
		grain := e.activation("gone")
		for _, id := range []string{"r1", "r2", "r3"} {
			req := exchange(id)
			req.Retention = r
			e.append(grain, req)
		}
		// r1 was purged: a late re-send stores it neither on the writer nor on a stale activation
		// (whose last sequence is before r1's).
		for name, pid := range map[string]*actor.PID{"writer": grain, "stale": stale} {
			req := exchange("r1")
			req.Retention = r
			e.append(pid, req)
			if diff := cmp.Diff([]string{"r3q", "r3a"}, e.history(pid, r)); diff != "" {
				t.Errorf("re-sent on the %s: history (-want +got):\n%s", name, diff)
			}
		}
		if n := storedCount(t, e.js, "chat.acme.gone"); n != 1 {
			t.Errorf("stream holds %d messages, want 1", n)
		}
	})
	t.Run("first message stored one by one", func(t *testing.T) {
		for _, loadedBefore := range []bool{false, true} {
			t.Run(fmt.Sprintf("loaded before: %v", loadedBefore), func(t *testing.T) {
				e := newExchangeEnv(t)
				grain := e.activation("mixed")
				if loadedBefore {
					e.history(grain, nil)
				}
				// An earlier member stored message 0 of r1 on its own, then died.
				e.publishRaw("mixed", appendMsgID("r1", 0), &pb.ChatMessage{Role: "user", Content: "r1q"})
				e.append(grain, exchange("r1"))
				want := []string{"r1q", "r1a"}
				if diff := cmp.Diff(want, e.history(e.activation("mixed"), nil)); diff != "" {
					t.Errorf("history (-want +got):\n%s", diff)
				}
				if n := storedCount(t, e.js, "chat.acme.mixed"); n != 2 {
					t.Errorf("stream holds %d messages, want 2 (message 1 stored on its own)", n)
				}
				if got := strings.Count(e.logs.String(), "write refused"); got != map[bool]int{false: 0, true: 1}[loadedBefore] {
					t.Errorf("%d refused writes", got)
				}
			})
		}
	})
}

// Two activations of one session (membership churn): each group write is conditional on the last
// subject sequence the activation saw, so the stale one's is refused, reloads, and lands after.
func TestChatSessionDuplicateActivationFencesGroups(t *testing.T) {
	e := newExchangeEnv(t)
	twinA, twinB := e.activation("dup"), e.activation("dup")
	for _, twin := range []*actor.PID{twinA, twinB} {
		if got := e.history(twin, nil); len(got) != 0 {
			t.Fatalf("initial history %v", got)
		}
	}
	refusals := func() int { return strings.Count(e.logs.String(), "write refused") }
	e.append(twinA, &pb.AppendRequest{Messages: msgsOf("user", "a1", "a1r")})
	e.append(twinB, &pb.AppendRequest{Messages: msgsOf("user", "b1", "b1r")}) // B is stale
	if got := refusals(); got != 1 {
		t.Fatalf("stale twin B's write: %d refusals, want 1", got)
	}
	e.append(twinA, &pb.AppendRequest{Messages: msgsOf("user", "a2", "a2r")}) // now A is
	if got := refusals(); got != 2 {
		t.Fatalf("stale twin A's write: %d refusals, want 2", got)
	}
	want := []string{"a1", "a1r", "b1", "b1r", "a2", "a2r"}
	for name, twin := range map[string]*actor.PID{"A": twinA, "B": twinB, "new": e.activation("dup")} {
		if diff := cmp.Diff(want, e.history(twin, nil)); diff != "" {
			t.Errorf("history seen by %s (-want +got):\n%s", name, diff)
		}
	}
	if n := storedCount(t, e.js, "chat.acme.dup"); n != 3 {
		t.Errorf("stream holds %d messages, want 3", n)
	}
}

// A session written one message per stream message (every session before groups) loads, takes
// groups after its messages, keeps the idempotency of its old requests, and its retention works
// across both formats.
func TestChatSessionLoadsTheOneMessageFormat(t *testing.T) {
	e := newExchangeEnv(t)
	now := e.clock.Now()
	e.publishRaw("old", appendMsgID("r0", 0), chatMsg("user", "q0", now))
	e.publishRaw("old", appendMsgID("r0", 1), chatMsg("assistant", "a0", now))
	e.publishRaw("old", "", chatMsg("user", "no id", now)) // stored without a message ID
	grain := e.activation("old")
	if diff := cmp.Diff([]string{"q0", "a0", "no id"}, e.history(grain, nil)); diff != "" {
		t.Fatalf("history (-want +got):\n%s", diff)
	}
	e.append(grain, &pb.AppendRequest{RequestId: "r0", Messages: []*pb.ChatMessage{ // a late re-send
		chatMsg("user", "q0", now), chatMsg("assistant", "a0", now)}})
	e.append(grain, &pb.AppendRequest{RequestId: "r1", Messages: []*pb.ChatMessage{
		chatMsg("user", "q1", now), chatMsg("assistant", "a1", now)}})
	want := []string{"q0", "a0", "no id", "q1", "a1"}
	if diff := cmp.Diff(want, e.history(e.activation("old"), nil)); diff != "" {
		t.Errorf("history after a reload (-want +got):\n%s", diff)
	}
	if n := storedCount(t, e.js, "chat.acme.old"); n != 4 {
		t.Errorf("stream holds %d messages, want 4 (three old, one group)", n)
	}
	r := &pb.Retention{MaxMessages: 1}
	if diff := cmp.Diff([]string{"a1"}, e.history(e.activation("old"), r)); diff != "" {
		t.Errorf("history capped at 1 (-want +got):\n%s", diff)
	}
	if n := storedCount(t, e.js, "chat.acme.old"); n != 1 {
		t.Errorf("stream holds %d messages, want 1 (the old ones purged, the group half kept)", n)
	}
}

// A group larger than the server's largest message is written one message at a time instead.
func TestChatSessionTooLargeForAGroup(t *testing.T) {
	e := newExchangeEnv(t)
	size := int(e.js.Conn().MaxPayload()) * 3 / 5 // each fits, both do not
	big := []string{strings.Repeat("q", size), strings.Repeat("a", size)}
	grain := e.activation("big")
	e.append(grain, &pb.AppendRequest{RequestId: "r", Messages: msgsOf("user", big...)})
	if n := storedCount(t, e.js, "chat.acme.big"); n != 2 {
		t.Errorf("stream holds %d messages, want 2", n)
	}
	e.append(grain, &pb.AppendRequest{RequestId: "r", Messages: msgsOf("user", big...)}) // re-sent
	if diff := cmp.Diff(big, e.history(e.activation("big"), nil)); diff != "" {
		t.Errorf("history differs (%d messages)", len(e.history(e.activation("big"), nil)))
	}
}

// While a member of the topology does not read groups (an older version during a rolling upgrade:
// no FeatureChatGroups among its kinds), an exchange is stored one message at a time, which every
// version reads; once every member has the feature, as one group.
func TestChatSessionGroupsWaitForEveryMember(t *testing.T) {
	// This member hosts every session; the other hosts budgets only, so the sessions stay here.
	self := &cluster.Member{Id: "self", Host: "10.0.0.1", Port: 7000, Kinds: []string{KindChatSession, FeatureChatGroups}}
	other := func(kinds ...string) *cluster.Member {
		return &cluster.Member{Id: "other", Host: "10.0.0.2", Port: 7000, Kinds: kinds}
	}
	tests := []struct {
		name       string
		members    []*cluster.Member
		wantStored uint64
	}{
		{"alone, never bound", nil, 1},
		{"every member reads groups", []*cluster.Member{self, other(KindBudget, FeatureChatGroups)}, 1},
		{"an older member", []*cluster.Member{self, other(KindBudget)}, 2},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newExchangeEnv(t)
			if tt.members != nil {
				e.deps.Placement = &Placement{self: self.Address()}
				e.deps.Placement.update(tt.members)
			}
			session := fmt.Sprintf("upgrade%d", i)
			grain := e.activation(session)
			e.append(grain, &pb.AppendRequest{RequestId: "r", Messages: []*pb.ChatMessage{
				{Role: "user", Content: "q"}, {Role: "assistant", Content: "a"}}})
			if n := storedCount(t, e.js, chatSubject("acme", session)); n != tt.wantStored {
				t.Errorf("the exchange is %d stream messages, want %d", n, tt.wantStored)
			}
			if diff := cmp.Diff([]string{"q", "a"}, e.history(e.activation(session), nil)); diff != "" {
				t.Errorf("history after a reload (-want +got):\n%s", diff)
			}
		})
	}
}
