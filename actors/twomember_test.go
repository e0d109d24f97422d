//go:build !race

// Two cluster members in one process: protoactor's remote.Start sets grpclog's global logger, which
// races with the other member's gRPC goroutines under -race. These tests run without -race.

package actors_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/crispy-enigma/crispy/actors"
	"github.com/crispy-enigma/crispy/cluster"
	"github.com/crispy-enigma/crispy/cluster/natsserver"
)

// TestGrainsAcrossTwoMembers sends a request to each grain kind hosted on the OTHER member, so the
// messages cross protoactor remote (protobuf over gRPC), which a plain Go struct would not survive.
func TestGrainsAcrossTwoMembers(t *testing.T) {
	srv, err := natsserver.Start(natsserver.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect("two-members")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := actors.EnsureStreams(ctx, js, 1); err != nil {
		t.Fatal(err)
	}

	agent := cluster.NewInMemoryAgent()
	var nodes []*cluster.Node
	for _, name := range []string{"one", "two"} {
		n, err := cluster.Start(ctx, cluster.Options{
			NodeName: name,
			Kinds:    actors.Kinds(actors.Deps{JS: js, Logger: zerolog.Nop()}),
			Provider: cluster.NewInMemoryProvider(agent),
			Logger:   zerolog.Nop(),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Stop(false) })
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		if err := n.WaitMembers(ctx, 2); err != nil {
			t.Fatal(err)
		}
	}
	one, two := nodes[0], nodes[1]
	client := actors.NewClient(one.Cluster(), 5*time.Second)

	// remoteIdentity finds an identity whose activation disthash places on member two.
	remoteIdentity := func(kind string, format string) string {
		for i := range 200 {
			id := fmt.Sprintf(format, i)
			pid := one.Cluster().Get(id, kind)
			if pid != nil && pid.Address == two.Address() {
				return id
			}
		}
		t.Fatalf("no %s identity placed on member two", kind)
		return ""
	}

	t.Run("ChatSession on the other member", func(t *testing.T) {
		id := remoteIdentity(actors.KindChatSession, "acme:remote-%d")
		session := id[len("acme:"):]
		msgs := []actors.Message{
			{Role: "user", Content: "across", Timestamp: time.UnixMilli(1_700_000_000_000), TokenCount: 1},
			{Role: "assistant", Content: "members", Timestamp: time.UnixMilli(1_700_000_000_001), TokenCount: 1},
		}
		if err := client.Append(ctx, "acme", session, msgs, actors.Retention{MaxMessages: 10}); err != nil {
			t.Fatal(err)
		}
		got, err := client.History(ctx, "acme", session, actors.Retention{MaxMessages: 10}, 0, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(msgs, got); diff != "" {
			t.Fatalf("(-want +got):\n%s", diff)
		}
	})

	// The Responses API's conditional append (AppendAfterResponse) and its message fields cross
	// members as protobuf.
	t.Run("ChatSession response turns on the other member", func(t *testing.T) {
		id := remoteIdentity(actors.KindChatSession, "acme:responses-%d")
		session := id[len("acme:"):]
		ts := time.UnixMilli(1_700_000_000_000)
		turn := func(n int, resp string) []actors.Message {
			return []actors.Message{
				{Role: "user", Content: fmt.Sprint("question ", n), Timestamp: ts},
				{Role: "assistant", Content: fmt.Sprint("answer ", n), Timestamp: ts, TokenCount: 3, ResponseID: resp,
					Model: "m", TokensIn: 7, ToolCallsJSON: `[{"id":"c1"}]`},
				{Role: "tool", Content: "42", Timestamp: ts, ToolCallID: "c1"},
			}
		}
		r := actors.Retention{MaxMessages: 100}
		if err := client.AppendAfterResponse(ctx, "acme", session, turn(1, "resp_1"), r, ""); err != nil {
			t.Fatal(err)
		}
		cases := []struct {
			after, resp string
			want        error
		}{
			{"", "resp_x", actors.ErrResponseConflict},           // the session already holds a response
			{"resp_other", "resp_x", actors.ErrResponseConflict}, // not the newest response
			{"resp_1", "resp_2", nil},
			{"resp_1", "resp_y", actors.ErrResponseConflict}, // resp_2 was stored after resp_1
		}
		for _, tc := range cases {
			if err := client.AppendAfterResponse(ctx, "acme", session, turn(2, tc.resp), r, tc.after); !errors.Is(err, tc.want) {
				t.Fatalf("after %q: %v, want %v", tc.after, err, tc.want)
			}
		}
		got, err := client.History(ctx, "acme", session, r, 0, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(append(turn(1, "resp_1"), turn(2, "resp_2")...), got); diff != "" {
			t.Fatalf("(-want +got):\n%s", diff)
		}
	})

	t.Run("RateLimiter on the other member", func(t *testing.T) {
		id := remoteIdentity(actors.KindRateLimiter, "acme:ratelimit:user-%d")
		user := id[len("acme:ratelimit:"):]
		lim := actors.RateLimit{PerMinute: 2, Burst: 2}
		var allowed []bool
		for range 3 {
			d, err := client.Allow(ctx, "acme", user, lim)
			if err != nil {
				t.Fatal(err)
			}
			allowed = append(allowed, d.Allowed)
		}
		if diff := cmp.Diff([]bool{true, true, false}, allowed); diff != "" {
			t.Fatalf("(-want +got):\n%s", diff)
		}
	})

	// A lease's fields (wanted, granted, given back) cross members as protobuf.
	t.Run("RateLimiter lease on the other member", func(t *testing.T) {
		id := remoteIdentity(actors.KindRateLimiter, "t%d:ratelimit:tenant")
		tenant := id[:len(id)-len(":ratelimit:tenant")]
		ceiling, userLim := actors.RateLimit{PerMinute: 1000}, actors.RateLimit{PerMinute: 800}
		_, user, lease, err := client.AllowWithLease(ctx, tenant, "tenant", ceiling, "user:a", userLim,
			actors.RateLease{Want: 50, Life: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if !user.Allowed || lease.Permits != 50 || lease.Until == 0 || user.Remaining != 800-1-50 {
			t.Fatalf("lease: user %+v, lease %+v; want allowed, 50 permits, remaining 749", user, lease)
		}
		_, user, lease, err = client.AllowWithLease(ctx, tenant, "tenant", ceiling, "user:a", userLim,
			actors.RateLease{Returned: 50, ReturnedAt: lease.Until})
		if err != nil {
			t.Fatal(err)
		}
		if lease.Permits != 0 || user.Remaining != 800-2 {
			t.Fatalf("after giving the lease back: user %+v, lease %+v; want remaining 798, no lease", user, lease)
		}
	})

	t.Run("grains re-activate on the survivor when a member leaves", func(t *testing.T) {
		id := remoteIdentity(actors.KindChatSession, "acme:survive-%d")
		session := id[len("acme:"):]
		msg := []actors.Message{{Role: "user", Content: "still here", Timestamp: time.UnixMilli(1_700_000_000_000)}}
		if err := client.Append(ctx, "acme", session, msg, actors.Retention{}); err != nil {
			t.Fatal(err)
		}
		two.Stop(false)
		if err := one.WaitMembers(ctx, 1); err != nil {
			t.Fatal(err)
		}
		got, err := client.History(ctx, "acme", session, actors.Retention{}, 0, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(msg, got); diff != "" {
			t.Fatalf("history on the survivor (-want +got):\n%s", diff)
		}
		if pid := one.Cluster().Get(id, actors.KindChatSession); pid.Address != one.Address() {
			t.Fatalf("activation at %s, want the survivor %s", pid.Address, one.Address())
		}
	})
}
