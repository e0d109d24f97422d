package actors_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	protocluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"

	"github.com/crispy-enigma/crispy/actors"
	"github.com/crispy-enigma/crispy/actors/pb"
	"github.com/crispy-enigma/crispy/cluster"
	"github.com/crispy-enigma/crispy/cluster/natsserver"
	"github.com/crispy-enigma/crispy/observe"
)

// traced is a grain request that carries the HTTP request's trace ID.
type traced interface{ GetTraceId() string }

// recorder stands in for a grain kind: it records the trace ID of every request it receives and
// answers with an empty (successful) reply, so the test sees exactly what crossed the wire.
type recorder struct{ got chan<- string }

func (r recorder) Receive(ctx actor.Context) {
	var reply any
	switch ctx.Message().(type) {
	case *pb.AppendRequest:
		reply = &pb.AppendResponse{}
	case *pb.HistoryRequest:
		reply = &pb.HistoryResponse{}
	case *pb.ClearRequest:
		reply = &pb.ClearResponse{}
	case *pb.RateLimitRequest:
		reply = &pb.RateLimitResponse{Allowed: true}
	case *pb.BudgetReserveRequest:
		reply = &pb.BudgetReserveResponse{Allowed: true}
	case *pb.BudgetCommitRequest:
		reply = &pb.BudgetCommitResponse{}
	case *pb.BudgetReleaseRequest:
		reply = &pb.BudgetReleaseResponse{}
	case *pb.BudgetStatusRequest:
		reply = &pb.BudgetStatusResponse{}
	default:
		return
	}
	r.got <- ctx.Message().(traced).GetTraceId()
	ctx.Respond(reply)
}

// TestClientSendsTraceID: every grain request made with a ctx carrying a trace ID arrives at the
// grain with it (issue 8 "the trace ID carried ... across nodes (grain messages carry it)").
func TestClientSendsTraceID(t *testing.T) {
	got := make(chan string, 1)
	props := actor.PropsFromProducer(func() actor.Actor { return recorder{got: got} })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	node, err := cluster.Start(ctx, cluster.Options{
		NodeName: "trace-test",
		Kinds: []*protocluster.Kind{
			protocluster.NewKind(actors.KindChatSession, props),
			protocluster.NewKind(actors.KindRateLimiter, props),
			protocluster.NewKind(actors.KindBudget, props),
		},
		Logger: zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Stop(false) })
	c := actors.NewClient(node.Cluster(), 5*time.Second)

	calls := []struct {
		name string
		call func(context.Context) error
	}{
		{"Append", func(ctx context.Context) error {
			return c.Append(ctx, "acme", "s1", []actors.Message{{Role: "user", Content: "hi"}}, actors.Retention{})
		}},
		{"History", func(ctx context.Context) error {
			_, err := c.History(ctx, "acme", "s1", actors.Retention{}, 0, time.Time{})
			return err
		}},
		{"Clear", func(ctx context.Context) error { return c.Clear(ctx, "acme", "s1") }},
		{"Allow", func(ctx context.Context) error {
			_, err := c.Allow(ctx, "acme", "u1", actors.RateLimit{PerMinute: 10})
			return err
		}},
		{"Reserve", func(ctx context.Context) error {
			_, err := c.Reserve(ctx, "acme", "r1", 10, actors.TokenBudget{Daily: 100})
			return err
		}},
		{"Commit", func(ctx context.Context) error { return c.Commit(ctx, "acme", "r1", 5) }},
		{"Release", func(ctx context.Context) error { return c.Release(ctx, "acme", "r1") }},
		{"BudgetStatus", func(ctx context.Context) error {
			_, err := c.BudgetStatus(ctx, "acme")
			return err
		}},
	}
	for _, tc := range calls {
		t.Run(tc.name, func(t *testing.T) {
			for _, want := range []string{"trace-" + tc.name, ""} {
				rctx := ctx
				if want != "" {
					rctx = observe.WithTraceID(ctx, want)
				}
				if err := tc.call(rctx); err != nil {
					t.Fatal(err)
				}
				if id := <-got; id != want {
					t.Errorf("grain received trace ID %q, want %q", id, want)
				}
			}
		})
	}
}

// lockedBuffer is a log sink safe for the grains' goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the log lines whose message contains msg, decoded.
func (b *lockedBuffer) lines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if s, _ := m[zerolog.MessageFieldName].(string); strings.Contains(s, msg) {
			out = append(out, m)
		}
	}
	return out
}

// TestGrainLogLinesCarryTraceID: the grains' log lines about a request hold its trace ID as
// traceId, so they can be joined with the API's lines for the same request.
func TestGrainLogLinesCarryTraceID(t *testing.T) {
	srv, err := natsserver.Start(natsserver.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect("trace-log-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := actors.EnsureStreams(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	node, err := cluster.Start(ctx, cluster.Options{
		NodeName: "trace-log-test",
		Kinds:    actors.Kinds(actors.Deps{JS: js, IdleTimeout: time.Minute, Logger: zerolog.New(logs)}),
		Logger:   zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Stop(false) })
	c := actors.NewClient(node.Cluster(), 5*time.Second)

	data, err := proto.Marshal(&pb.ChatMessage{Role: "user", Content: "elsewhere", TimestampMs: 1})
	if err != nil {
		t.Fatal(err)
	}
	// ChatSession: a write behind the activation's back makes its next append refused and logged.
	if err := c.Append(ctx, "acme", "s1", []actors.Message{{Role: "user", Content: "one"}}, actors.Retention{}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "chat.acme.s1", data); err != nil {
		t.Fatal(err)
	}
	if err := c.Append(observe.WithTraceID(ctx, "trace-append"), "acme", "s1", []actors.Message{{Role: "user", Content: "two"}}, actors.Retention{}); err != nil {
		t.Fatal(err)
	}
	// Budget: committing an unknown reservation is charged and logged.
	if err := c.Commit(observe.WithTraceID(ctx, "trace-commit"), "acme", "never-reserved", 5); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct{ msg, want string }{
		{"chat session: write refused", "trace-append"},
		{"budget: commit of an unknown", "trace-commit"},
	} {
		lines := logs.lines(t, tc.msg)
		if len(lines) == 0 {
			t.Errorf("no log line %q", tc.msg)
		}
		for _, l := range lines {
			if l["traceId"] != tc.want {
				t.Errorf("log line %q has traceId %v, want %q", tc.msg, l["traceId"], tc.want)
			}
		}
	}
}
