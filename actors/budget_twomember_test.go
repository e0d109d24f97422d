//go:build !race

// Two cluster members in one process race on grpclog's global logger under -race (see
// twomember_test.go); this test runs without -race.

package actors_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/crispy-enigma/crispy/actors"
	"github.com/crispy-enigma/crispy/cluster"
	"github.com/crispy-enigma/crispy/cluster/natsserver"
)

// TestBudgetAcrossTwoMembers: a tenant's Budget grain placed on member two, asked through member
// one's client (protobuf over protoactor remote), and asked through BOTH members at once: one
// activation cluster-wide, so 200 concurrent reservations split across the two members admit
// exactly the 50 the budget allows, not 50 per member (issue 4: "limits multiplied by the replica
// count").
func TestBudgetAcrossTwoMembers(t *testing.T) {
	srv, err := natsserver.Start(natsserver.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect("budget-two-members")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	agent := cluster.NewInMemoryAgent()
	var nodes []*cluster.Node
	var clients []*actors.Client
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
		clients = append(clients, actors.NewClient(n.Cluster(), 5*time.Second))
	}
	for _, n := range nodes {
		if err := n.WaitMembers(ctx, 2); err != nil {
			t.Fatal(err)
		}
	}
	tenant := ""
	for i := range 200 {
		id := fmt.Sprintf("remote-%d", i)
		if pid := nodes[0].Cluster().Get(id, actors.KindBudget); pid != nil && pid.Address == nodes[1].Address() {
			tenant = id
			break
		}
	}
	if tenant == "" {
		t.Fatal("no tenant's Budget placed on member two")
	}
	lim := actors.TokenBudget{Daily: 500}
	var admitted atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := clients[i%2]
			id := fmt.Sprintf("r%d", i)
			d, err := c.Reserve(ctx, tenant, id, 10, lim)
			if err != nil {
				errs <- err
				return
			}
			if d.Allowed {
				admitted.Add(1)
				errs <- c.Commit(ctx, tenant, id, 10)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := admitted.Load(); got != 50 {
		t.Fatalf("admitted %d across two members, want exactly 50", got)
	}
	st, err := clients[0].BudgetStatus(ctx, tenant)
	if err != nil {
		t.Fatal(err)
	}
	if st.DayUsed != 500 || st.Reservations != 0 {
		t.Fatalf("status = %+v, want 500 used and nothing held", st)
	}
}
