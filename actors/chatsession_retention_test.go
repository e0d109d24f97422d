package actors

import (
	"context"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/crispy-enigma/crispy/actors/pb"
	"github.com/crispy-enigma/crispy/test/probe"
)

// gatedStream holds every DeleteMsg until release is closed; entered receives the sequence of
// each one that started.
type gatedStream struct {
	jetstream.Stream
	entered chan uint64
	release chan struct{}
}

func (g *gatedStream) DeleteMsg(ctx context.Context, seq uint64) error {
	g.entered <- seq
	<-g.release
	return g.Stream.DeleteMsg(ctx, seq)
}

// The removals of retention run beside the grain: a request is answered while the removal its
// predecessor started still waits for the store, what it drops meanwhile is out of the history at
// once and removed after, and in the end the stream holds exactly what the retention keeps. On a
// node alone the grain runs in its requester's goroutine, where a removal in line would hold up the
// answer (and here never end: the Append would time out).
func TestChatSessionRetentionRunsBesideTheAnswer(t *testing.T) {
	for _, single := range []bool{true, false} {
		t.Run(map[bool]string{true: "single member", false: "cluster member"}[single], func(t *testing.T) {
			e := newExchangeEnv(t)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			st, err := e.js.Stream(ctx, StreamChat)
			if err != nil {
				t.Fatal(err)
			}
			gated := &gatedStream{Stream: st, entered: make(chan uint64, 8), release: make(chan struct{})}
			released := false
			defer func() {
				if !released { // a removal in line holds an Append: let it end
					close(gated.release)
				}
			}()
			e.deps.SingleMember = single
			e.deps.streams = &streamCache{st: gated}
			grain := e.activation("beside")
			r := &pb.Retention{MaxMessages: 2}
			exchange := func(id, q, a string) {
				t.Helper()
				resp := askAppend(t, e.system, grain, &pb.AppendRequest{RequestId: id, Retention: r, Messages: []*pb.ChatMessage{
					{Role: "user", Content: q}, {Role: "assistant", Content: a}}})
				if resp.GetError() != "" {
					t.Fatal(resp.GetError())
				}
			}
			exchange("r0", "q0", "a0")
			first := e.lastStored("beside").Sequence
			exchange("r1", "q1", "a1") // drops r0: its removal starts and waits
			select {
			case seq := <-gated.entered:
				if seq != first {
					t.Fatalf("removal deletes seq %d, want %d (the first exchange)", seq, first)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no removal started")
			}
			exchange("r2", "q2", "a2") // answered while r0's removal waits; drops r1
			if diff := cmp.Diff([]string{"q2", "a2"}, historyNow(t, e, grain, r)); diff != "" {
				t.Fatalf("history while the removal waits (-want +got):\n%s", diff)
			}
			if n := storedCount(t, e.js, chatSubject("acme", "beside")); n != 3 {
				t.Fatalf("while the removal waits the stream holds %d messages, want 3", n)
			}
			close(gated.release)
			released = true
			settled(t, e.deps, e.p, grain)
			if n := storedCount(t, e.js, chatSubject("acme", "beside")); n != 1 {
				t.Fatalf("after the removals the stream holds %d messages, want 1 (r1 removed after r0's removal ended)", n)
			}
			if diff := cmp.Diff([]string{"q2", "a2"}, e.history(e.activation("beside"), r)); diff != "" {
				t.Fatalf("history after a reload (-want +got):\n%s", diff)
			}
		})
	}
}

// askAppend asks grain without the probe, whose Send would run a synchronized grain's mailbox in the
// test's goroutine: an Append held up by its grain fails the test instead of hanging it.
func askAppend(t *testing.T, system *actor.ActorSystem, grain *actor.PID, req *pb.AppendRequest) *pb.AppendResponse {
	t.Helper()
	got := make(chan any, 1)
	go func() {
		r, err := system.Root.RequestFuture(grain, req, 5*time.Second).Result()
		if err != nil {
			got <- err
			return
		}
		got <- r
	}()
	select {
	case r := <-got:
		resp, ok := r.(*pb.AppendResponse)
		if !ok {
			t.Fatalf("append: %v", r)
		}
		return resp
	case <-time.After(5 * time.Second):
		t.Fatal("append not answered in 5 s: the grain waits for its removal")
		return nil
	}
}

// historyNow reads the history without waiting for removals (exchangeEnv.history waits).
func historyNow(t *testing.T, e *exchangeEnv, grain *actor.PID, r *pb.Retention) []string {
	t.Helper()
	h := probe.Ask[*pb.HistoryResponse](t, e.p, grain, &pb.HistoryRequest{Retention: r})
	if h.GetError() != "" {
		t.Fatalf("history: %s", h.GetError())
	}
	return contents(h.GetMessages())
}
