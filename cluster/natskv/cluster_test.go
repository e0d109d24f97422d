//go:build !race

// Several protoactor members in one process: remote.Start sets grpclog's global logger, which races
// with the other members' gRPC goroutines under -race. The Makefile also runs ./cluster/... without
// -race, so these tests run there.

package natskv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	protocluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/crispy-enigma/crispy/cluster/lookup"
)

// echoKind's grains answer any StringValue with the member ID of the member hosting them, so a test
// sees where a request was served.
const echoKind = "echo"

type member struct {
	c        *protocluster.Cluster
	p        *Provider
	stopOnce sync.Once
}

func (m *member) id() string { return m.c.ActorSystem.ID }

func (m *member) port(t *testing.T) int {
	t.Helper()
	_, port, err := m.c.ActorSystem.GetHostPort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// stop leaves the cluster like the cluster package's Node.Stop: graceful deregisters; otherwise the
// member stops as if it crashed (remote down, heartbeats stopped, key left to expire).
func (m *member) stop(graceful bool) {
	m.stopOnce.Do(func() {
		m.c.Shutdown(graceful)
		if !graceful {
			_ = m.p.Shutdown(false)
		}
	})
}

// startMember starts a cluster member with the natskv provider on 127.0.0.1:port (0 picks one).
func startMember(t *testing.T, js jetstream.JetStream, opts Options, port int) *member {
	t.Helper()
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}))
	echo := actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(*wrapperspb.StringValue); ok {
			ctx.Respond(wrapperspb.String(ctx.ActorSystem().ID))
		}
	})
	p := New(js, opts)
	cfg := protocluster.Configure("crispy", p, lookup.New(),
		remote.Configure("127.0.0.1", port),
		protocluster.WithKinds(protocluster.NewKind(echoKind, echo)),
	)
	m := &member{c: protocluster.New(system, cfg), p: p}
	m.c.StartMember()
	t.Cleanup(func() { m.stop(false) })
	return m
}

// waitMembers polls until m sees exactly the members want.
func waitMembers(t *testing.T, m *member, want ...*member) {
	t.Helper()
	ids := make([]string, 0, len(want))
	for _, w := range want {
		ids = append(ids, w.id())
	}
	sort.Strings(ids)
	var got []string
	for deadline := time.Now().Add(waitLimit); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		got = got[:0]
		for _, x := range m.c.MemberList.Members().Members() {
			got = append(got, x.Id)
		}
		sort.Strings(got)
		if slices.Equal(got, ids) {
			return
		}
	}
	t.Fatalf("member %s sees %v, want %v (within %v)", m.id(), got, ids, waitLimit)
}

// owner asks identity's echo grain through m and returns the ID of the member that served it.
// Requests are retried until waitLimit: right after a topology change a request can still go to a
// member that just left.
func owner(t *testing.T, m *member, identity string) string {
	t.Helper()
	var err error
	for deadline := time.Now().Add(waitLimit); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var res any
		res, err = m.c.Request(identity, echoKind, wrapperspb.String("who"), protocluster.WithTimeout(2*time.Second))
		if err == nil {
			if s, ok := res.(*wrapperspb.StringValue); ok {
				return s.GetValue()
			}
			err = fmt.Errorf("unexpected response %T", res)
		}
	}
	t.Fatalf("request %s via %s: %v", identity, m.id(), err)
	return ""
}

// owners asks n grains through m and returns the set of members that served them, sorted. With
// rendezvous hashing each identity picks either of two members, so 32 identities all landing on one
// member has probability 2^-31.
func owners(t *testing.T, m *member, n int) []string {
	t.Helper()
	seen := map[string]bool{}
	for i := range n {
		seen[owner(t, m, fmt.Sprintf("grain-%d", i))] = true
	}
	out := make([]string, 0, len(seen))
	for id := range seen {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

func ids(ms ...*member) []string {
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.id())
	}
	sort.Strings(out)
	return out
}

func TestMembersSeeEachOtherAndServeEachOthersGrains(t *testing.T) {
	connect := startNATS(t)
	opts := Options{TTL: 2 * time.Second}
	a := startMember(t, connect("a"), opts, 0)
	b := startMember(t, connect("b"), opts, 0)
	waitMembers(t, a, a, b)
	waitMembers(t, b, a, b)

	// Grains requested through a are served by both members: some requests cross to b.
	if diff := cmp.Diff(ids(a, b), owners(t, a, 32)); diff != "" {
		t.Errorf("members serving grains requested via a (-want +got):\n%s", diff)
	}
	// Placement is the same from either side.
	for i := range 8 {
		identity := fmt.Sprintf("grain-%d", i)
		if via, viaB := owner(t, a, identity), owner(t, b, identity); via != viaB {
			t.Errorf("%s is served by %s via a but by %s via b", identity, via, viaB)
		}
	}
}

func TestGracefulShutdownRemovesMemberAtOnce(t *testing.T) {
	connect := startNATS(t)
	// A TTL far beyond waitLimit: if b disappears, it was its deletion, not expiry.
	opts := Options{TTL: time.Minute}
	jsA := connect("a")
	a := startMember(t, jsA, opts, 0)
	b := startMember(t, connect("b"), opts, 0)
	waitMembers(t, a, a, b)

	b.stop(true)
	waitMembers(t, a, a)
	kv, err := jsA.KeyValue(context.Background(), DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(context.Background(), "crispy."+b.id()); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("b's key after graceful shutdown: err = %v, want ErrKeyNotFound", err)
	}
	if diff := cmp.Diff(ids(a), owners(t, a, 8)); diff != "" {
		t.Errorf("members serving grains after b left (-want +got):\n%s", diff)
	}
}

func TestCrashedMemberDisappearsAfterTTL(t *testing.T) {
	connect := startNATS(t)
	opts := Options{TTL: time.Second, Heartbeat: 250 * time.Millisecond}
	a := startMember(t, connect("a"), opts, 0)
	b := startMember(t, connect("b"), opts, 0)
	waitMembers(t, a, a, b)

	b.stop(false) // no deregistration: only the TTL removes b
	waitMembers(t, a, a)
	if diff := cmp.Diff(ids(a), owners(t, a, 8)); diff != "" {
		t.Errorf("members serving grains after b crashed (-want +got):\n%s", diff)
	}
}

// protoactor blocks a departed member ID forever, so a node restarting on the same address must come
// back under a new member ID to be admitted again.
func TestRestartedMemberRejoinsWithNewID(t *testing.T) {
	connect := startNATS(t)
	opts := Options{TTL: time.Second, Heartbeat: 250 * time.Millisecond}
	a := startMember(t, connect("a"), opts, 0)
	b := startMember(t, connect("b"), opts, 0)
	waitMembers(t, a, a, b)
	port := b.port(t)

	b.stop(false)
	waitMembers(t, a, a)

	b2 := startMember(t, connect("b"), opts, port)
	if b2.id() == b.id() {
		t.Fatalf("restarted member reused member ID %s", b.id())
	}
	waitMembers(t, a, a, b2)
	waitMembers(t, b2, a, b2)
	if diff := cmp.Diff(ids(a, b2), owners(t, a, 32)); diff != "" {
		t.Errorf("members serving grains after b restarted (-want +got):\n%s", diff)
	}
}

// A client watches the members and sends grain requests, but never registers: members do not see it
// and it owns no grains.
func TestClientSeesMembersWithoutJoining(t *testing.T) {
	connect := startNATS(t)
	opts := Options{TTL: 2 * time.Second}
	jsA := connect("a")
	a := startMember(t, jsA, opts, 0)

	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}))
	p := New(connect("client"), opts)
	c := &member{p: p, c: protocluster.New(system, protocluster.Configure("crispy", p, lookup.New(),
		remote.Configure("127.0.0.1", 0)))}
	c.c.StartClient()
	t.Cleanup(func() {
		// cluster.Shutdown assumes a member (it writes gossip state a client never started).
		_ = p.Shutdown(true)
		c.c.ActorSystem.Shutdown()
		c.c.Remote.Shutdown(false)
	})

	waitMembers(t, c, a)
	waitMembers(t, a, a)
	if diff := cmp.Diff(ids(a), owners(t, c, 8)); diff != "" {
		t.Errorf("members serving grains requested via the client (-want +got):\n%s", diff)
	}
	kv, err := jsA.KeyValue(context.Background(), DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.Keys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"crispy." + a.id()}, keys); diff != "" {
		t.Errorf("keys in the members bucket (-want +got):\n%s", diff)
	}
}
