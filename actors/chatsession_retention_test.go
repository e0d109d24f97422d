package actors

import (
	"context"
	"fmt"
	"sync"
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
			gated := &gatedStream{Stream: chatStreamOf(t, e.js), entered: make(chan uint64, 8), release: make(chan struct{})}
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

// countingStream counts the removals retention asks the store for.
type countingStream struct {
	jetstream.Stream
	mu              sync.Mutex
	purges, deletes int
}

func (c *countingStream) DeleteMsg(ctx context.Context, seq uint64) error {
	c.mu.Lock()
	c.deletes++
	c.mu.Unlock()
	return c.Stream.DeleteMsg(ctx, seq)
}

func (c *countingStream) Purge(ctx context.Context, opts ...jetstream.StreamPurgeOpt) error {
	c.mu.Lock()
	c.purges++
	c.mu.Unlock()
	return c.Stream.Purge(ctx, opts...)
}

func (c *countingStream) counts() (purges, deletes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.purges, c.deletes
}

// What the cap drops stays in the store until a batch of it is dropped (histories leave it out at
// once), then goes in one purge, or in deletes by sequence when other sessions wrote so much in
// between that the purge's walk would cost more. What the age limit drops goes at once.
func TestChatSessionRetentionRemovesInBatches(t *testing.T) {
	const hour = 60 * 60 * 1000
	tests := []struct {
		name string
		// filler: messages other sessions write after exchange 0
		filler int
		// age: the age limit, and the clock moves past it after exchange 0
		age         bool
		exchanges   int
		wantStored  uint64
		wantPurges  int
		wantDeletes int
	}{
		{name: "at the cap", exchanges: 4, wantStored: 4},
		{name: "one dropped waits for a batch", exchanges: 5, wantStored: 5},
		{name: "a batch goes in one purge", exchanges: 6, wantStored: 4, wantPurges: 1},
		{name: "the next batch too", exchanges: 8, wantStored: 4, wantPurges: 2},
		{name: "deletes when others wrote much in between", filler: 1100, exchanges: 6, wantStored: 4, wantDeletes: 2},
		{name: "the age limit removes at once", age: true, exchanges: 2, wantStored: 1, wantDeletes: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newExchangeEnv(t)
			counting := &countingStream{Stream: chatStreamOf(t, e.js)}
			e.deps.streams = &streamCache{st: counting}
			r := &pb.Retention{MaxMessages: 8} // a batch of 2 stream messages
			if tt.age {
				r.MaxAgeMs = hour
			}
			grain := e.activation("batches")
			var want []string
			for k := range tt.exchanges {
				q, a := fmt.Sprintf("q%d", k), fmt.Sprintf("a%d", k)
				e.append(grain, &pb.AppendRequest{RequestId: fmt.Sprintf("r%d", k), Retention: r, Messages: []*pb.ChatMessage{
					{Role: "user", Content: q}, {Role: "assistant", Content: a}}})
				want = append(want, q, a)
				if k == 0 {
					for i := range tt.filler {
						if _, err := e.js.Publish(context.Background(), chatSubject("acme", fmt.Sprintf("other%d", i%7)), []byte("x")); err != nil {
							t.Fatal(err)
						}
					}
					if tt.age {
						e.clock.Advance(2 * time.Hour)
						want = want[:0]
					}
				}
			}
			want = want[max(0, len(want)-8):]
			if diff := cmp.Diff(want, e.history(grain, r)); diff != "" {
				t.Errorf("history (-want +got):\n%s", diff)
			}
			settled(t, e.deps, e.p, grain)
			if n := storedCount(t, e.js, chatSubject("acme", "batches")); n != tt.wantStored {
				t.Errorf("the stream holds %d messages of the session, want %d", n, tt.wantStored)
			}
			if p, d := counting.counts(); p != tt.wantPurges || d != tt.wantDeletes {
				t.Errorf("%d purges and %d deletes, want %d and %d", p, d, tt.wantPurges, tt.wantDeletes)
			}
			if diff := cmp.Diff(want, e.history(e.activation("batches"), r)); diff != "" {
				t.Errorf("history after a reload (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRetentionBatch(t *testing.T) {
	for _, tt := range []struct{ maxMessages, want int }{
		{0, 1}, {1, 1}, {7, 1}, {8, 2}, {20, 5}, {64, 16}, {1000, 16},
	} {
		if got := retentionBatch(&pb.Retention{MaxMessages: int32(tt.maxMessages)}); got != tt.want {
			t.Errorf("retentionBatch(cap %d) = %d, want %d", tt.maxMessages, got, tt.want)
		}
	}
}

func TestPurgeCheaper(t *testing.T) {
	for _, tt := range []struct {
		n    int
		span uint64
		want bool
	}{
		{n: 1, span: 1, want: false},        // one delete is one request, a purge too, and it walks
		{n: 2, span: 2, want: true},         // a session alone
		{n: 5, span: 5 * 256, want: true},   // 256 sessions writing at once
		{n: 5, span: 5 * 2048, want: false}, // 2,048
		{n: 2, span: 1024, want: true},
		{n: 2, span: 1025, want: false},
		{n: 33, span: 1 << 40, want: true}, // many deletes: a session loaded after a long pause
	} {
		if got := purgeCheaper(tt.n, tt.span); got != tt.want {
			t.Errorf("purgeCheaper(%d, %d) = %t, want %t", tt.n, tt.span, got, tt.want)
		}
	}
}
