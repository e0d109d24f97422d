package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/tenants"
)

// tenantConfig parses a minimal valid config for id with the given rate limit and hosts.
func tenantConfig(t *testing.T, id string, perMinute int, hosts ...string) *config.TenantConfig {
	t.Helper()
	hostJSON := "[]"
	if len(hosts) > 0 {
		hostJSON = fmt.Sprintf("[%q]", hosts[0])
	}
	data := fmt.Sprintf(`{"tenantId":%q,"accountId":"a","aiGatewayId":"g","aiModels":{"chat":"local/extractive","embeddings":"local/hash-embed"},
"vectorizeNamespace":%q,"rateLimit":{"perMinute":%d,"burst":5},"featureFlags":{},"allowedHosts":%s,"apiKeys":[],"public":true}`,
		id, id, perMinute, hostJSON)
	cfg, _, err := config.ParseTenantConfig(id, []byte(data))
	if err != nil {
		t.Fatalf("parse %s: %v", id, err)
	}
	return cfg
}

func openTenantStore(t *testing.T) *TenantStore {
	t.Helper()
	js, _ := startNATS(t, t.TempDir())
	s, err := OpenTenantStore(context.Background(), js, TenantStoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCanonicalTenantConfigRoundTrips(t *testing.T) {
	cfgs, _, err := config.LoadTenants(tenants.Defaults())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cfgs {
		t.Run(c.TenantID, func(t *testing.T) {
			b, err := CanonicalTenantConfig(c)
			if err != nil {
				t.Fatal(err)
			}
			back, warns, err := config.ParseTenantConfig("canonical", b)
			if err != nil {
				t.Fatalf("canonical form does not parse: %v\n%s", err, b)
			}
			if len(warns) > 0 {
				t.Errorf("canonical form warns: %v", warns)
			}
			if diff := cmp.Diff(c, back); diff != "" {
				t.Errorf("round trip changed the config (-want +got):\n%s", diff)
			}
			again, _ := CanonicalTenantConfig(back)
			if string(again) != string(b) {
				t.Errorf("canonical form is not stable")
			}
		})
	}
}

func TestTenantStoreDeployHistoryRollback(t *testing.T) {
	ctx := context.Background()
	s := openTenantStore(t)
	meta := WriteMeta{By: "alice", From: "laptop"}

	if _, err := s.Get(ctx, "acme"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get before deploy: %v, want ErrNotFound", err)
	}
	r1, err := s.Deploy(ctx, tenantConfig(t, "acme", 60), 0, meta)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := s.Deploy(ctx, tenantConfig(t, "acme", 10), r1.Revision, meta)
	if err != nil {
		t.Fatal(err)
	}
	// A deploy validated against revision 1 after revision 2 was written must not overwrite it.
	if _, err := s.Deploy(ctx, tenantConfig(t, "acme", 99), r1.Revision, meta); !errors.Is(err, ErrRevisionConflict) {
		t.Fatalf("stale deploy: %v, want ErrRevisionConflict", err)
	}
	if _, err := s.Deploy(ctx, tenantConfig(t, "acme", 99), 0, meta); !errors.Is(err, ErrRevisionConflict) {
		t.Fatalf("deploy expecting a new tenant: %v, want ErrRevisionConflict", err)
	}

	cur, err := s.Get(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := cur.Config()
	if err != nil {
		t.Fatal(err)
	}
	if cur.Revision != r2.Revision || cfg.RateLimit.PerMinute != 10 || cur.By != "alice" || cur.From != "laptop" || cur.Action != ActionDeploy {
		t.Fatalf("Get = rev %d perMinute %d by %q from %q action %q", cur.Revision, cfg.RateLimit.PerMinute, cur.By, cur.From, cur.Action)
	}

	// Rollback to the previous revision writes revision 1's value as a new revision.
	r3, err := s.Rollback(ctx, "acme", r1.Revision, r2.Revision, WriteMeta{By: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	if r3.Revision <= r2.Revision || r3.Digest != r1.Digest || r3.RollbackTo != r1.Revision {
		t.Fatalf("rollback revision = %+v", r3)
	}
	hist, err := s.History(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		Rev        uint64
		Digest     string
		Action, By string
		RollbackTo uint64
	}
	var got []row
	for _, h := range hist {
		got = append(got, row{h.Revision, h.Digest, h.Action, h.By, h.RollbackTo})
		if h.Time.IsZero() {
			t.Errorf("revision %d has no time", h.Revision)
		}
	}
	want := []row{
		{r1.Revision, r1.Digest, ActionDeploy, "alice", 0},
		{r2.Revision, r2.Digest, ActionDeploy, "alice", 0},
		{r3.Revision, r1.Digest, ActionRollback, "bob", r1.Revision},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("history (-want +got):\n%s", diff)
	}
	if _, err := s.Rollback(ctx, "acme", 12345, r3.Revision, meta); !errors.Is(err, ErrNotFound) {
		t.Errorf("rollback to a missing revision: %v, want ErrNotFound", err)
	}
	if _, err := s.History(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("history of an unknown tenant: %v, want ErrNotFound", err)
	}
	if _, err := s.History(ctx, "Bad.ID"); !errors.Is(err, ErrInvalidTenant) {
		t.Errorf("history of an invalid ID: %v, want ErrInvalidTenant", err)
	}

	// Delete, then deploy again: the new deploy expects the delete marker's revision.
	del, err := s.Delete(ctx, "acme", r3.Revision, meta)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "acme"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after delete: %v, want ErrNotFound", err)
	}
	if live, _ := s.List(ctx); len(live) != 0 {
		t.Errorf("List after delete = %d tenants", len(live))
	}
	if _, err := s.Deploy(ctx, tenantConfig(t, "acme", 7), del.Revision, meta); err != nil {
		t.Errorf("deploy after delete: %v", err)
	}
}

func TestTenantStoreSeed(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name      string
		replace   bool
		deployed  bool // an operator deployed before the second seed
		wantFirst int
		wantSecnd int
		wantIDs   []string
	}{
		{name: "cluster seeds only an empty bucket", replace: false, wantFirst: 2, wantSecnd: 0, wantIDs: []string{"a", "b"}},
		{name: "single node follows its dir until the first deploy", replace: true, wantFirst: 2, wantSecnd: 2, wantIDs: []string{"a", "c"}},
		{name: "a deploy makes the bucket the source of truth", replace: true, deployed: true, wantFirst: 2, wantSecnd: 0, wantIDs: []string{"a", "b", "d"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTenantStore(t)
			opts := SeedOptions{Replace: tt.replace, Meta: WriteMeta{From: "n0"}}
			n, err := s.Seed(ctx, []*config.TenantConfig{tenantConfig(t, "a", 1), tenantConfig(t, "b", 1)}, opts)
			if err != nil || n != tt.wantFirst {
				t.Fatalf("first seed = %d, %v; want %d", n, err, tt.wantFirst)
			}
			if tt.deployed {
				if _, err := s.Deploy(ctx, tenantConfig(t, "d", 1), 0, WriteMeta{}); err != nil {
					t.Fatal(err)
				}
			}
			// The dir changed: b removed, c added, a unchanged.
			n, err = s.Seed(ctx, []*config.TenantConfig{tenantConfig(t, "a", 1), tenantConfig(t, "c", 1)}, opts)
			if err != nil || n != tt.wantSecnd {
				t.Fatalf("second seed = %d, %v; want %d", n, err, tt.wantSecnd)
			}
			live, err := s.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, r := range live {
				ids = append(ids, r.TenantID)
			}
			if diff := cmp.Diff(tt.wantIDs, ids); diff != "" {
				t.Errorf("deployed tenants (-want +got):\n%s", diff)
			}
		})
	}
}

// TestTenantStoreWatchIndex: every change yields a whole new index; a conflicting state is
// reported and not applied.
func TestTenantStoreWatchIndex(t *testing.T) {
	ctx := context.Background()
	s := openTenantStore(t)
	if _, err := s.Deploy(ctx, tenantConfig(t, "a", 60, "a.example"), 0, WriteMeta{}); err != nil {
		t.Fatal(err)
	}
	type change struct {
		ix  *config.Index
		err error
	}
	changes := make(chan change, 16)
	w, err := s.WatchIndex(ctx,
		func(ix *config.Index, _ []TenantRevision) { changes <- change{ix: ix} },
		func(err error) { changes <- change{err: err} })
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	next := func() change {
		t.Helper()
		select {
		case c := <-changes:
			return c
		case <-time.After(10 * time.Second): // a hang guard, not a timing assertion
			t.Fatal("no index change delivered")
			return change{}
		}
	}
	perMinute := func(ix *config.Index, id string) int {
		c, ok := ix.ByID(id)
		if !ok {
			return -1
		}
		return c.RateLimit.PerMinute
	}

	c := next()
	if c.err != nil || c.ix.Len() != 1 || perMinute(c.ix, "a") != 60 {
		t.Fatalf("initial index: %+v", c)
	}
	cur, _ := s.Get(ctx, "a")
	if _, err := s.Deploy(ctx, tenantConfig(t, "a", 5, "a.example"), cur.Revision, WriteMeta{}); err != nil {
		t.Fatal(err)
	}
	if c = next(); c.err != nil || perMinute(c.ix, "a") != 5 {
		t.Fatalf("after deploy: %+v", c)
	}
	// b claims a's host: the state does not index, the watcher reports it and applies nothing.
	if _, err := s.Deploy(ctx, tenantConfig(t, "b", 1, "a.example"), 0, WriteMeta{}); err != nil {
		t.Fatal(err)
	}
	if c = next(); c.err == nil {
		t.Fatalf("conflicting hosts were applied: %d tenants", c.ix.Len())
	}
	// Fixing b makes the whole state index again.
	cur, _ = s.Get(ctx, "b")
	if _, err := s.Deploy(ctx, tenantConfig(t, "b", 1, "b.example"), cur.Revision, WriteMeta{}); err != nil {
		t.Fatal(err)
	}
	if c = next(); c.err != nil || c.ix.Len() != 2 || perMinute(c.ix, "b") != 1 {
		t.Fatalf("after fix: %+v", c)
	}
	w.Stop()
	select {
	case c := <-changes:
		t.Fatalf("change after Stop: %+v", c)
	default:
	}
}

// DeployBatch writes all of its configs or none, and a watching node ends on the batch's index:
// here a host moves from a to b in one deploy. A node never applies a state that does not index
// (b's revision seen before a's), whatever order the entries arrive in.
func TestTenantStoreDeployBatchIsAtomic(t *testing.T) {
	ctx := context.Background()
	s := openTenantStore(t)
	revs, err := s.DeployBatch(ctx, []*config.TenantConfig{tenantConfig(t, "a", 60, "shared.example"), tenantConfig(t, "c", 7)}, nil, WriteMeta{By: "ci"})
	if err != nil {
		t.Fatal(err)
	}
	if len(revs) != 2 || revs[1].Revision != revs[0].Revision+1 || revs[0].By != "ci" {
		t.Fatalf("revisions %+v", revs)
	}
	for _, r := range revs {
		got, err := s.Get(ctx, r.TenantID)
		if err != nil || got.Revision != r.Revision || got.Digest != r.Digest || got.Action != ActionDeploy || got.By != "ci" {
			t.Fatalf("stored %s: %+v, %v; want revision %d", r.TenantID, got, err, r.Revision)
		}
	}

	applied := make(chan *config.Index, 16)
	w, err := s.WatchIndex(ctx, func(ix *config.Index, _ []TenantRevision) { applied <- ix },
		func(error) {}) // a part of the batch seen first may not index: reported, not applied
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	<-applied // the current state

	expect := map[string]uint64{"a": revs[0].Revision} // b: 0, never written
	move := []*config.TenantConfig{tenantConfig(t, "b", 1, "shared.example"), tenantConfig(t, "a", 60, "a.example")}
	// A stale expectation for one tenant refuses the whole batch.
	stale := map[string]uint64{"a": revs[0].Revision - 1}
	if _, err := s.DeployBatch(ctx, move, stale, WriteMeta{}); !errors.Is(err, ErrRevisionConflict) {
		t.Fatalf("stale batch: %v, want ErrRevisionConflict", err)
	}
	if _, err := s.Get(ctx, "b"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("refused batch wrote b: %v", err)
	}
	if _, err := s.DeployBatch(ctx, move, expect, WriteMeta{}); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case ix := <-applied:
			b, ok := ix.ByID("b")
			a, _ := ix.ByID("a")
			if !ok {
				continue // a's revision alone (it indexes): the rest follows
			}
			if ix.Len() != 3 || b.AllowedHosts[0] != "shared.example" || a.AllowedHosts[0] != "a.example" {
				t.Fatalf("index after the batch: %d tenants, a %+v, b %+v", ix.Len(), a, b)
			}
			return
		case <-time.After(10 * time.Second): // a hang guard, not a timing assertion
			t.Fatal("the batch was not applied")
		}
	}
}

func TestTenantAuditEventIsRecorded(t *testing.T) {
	ctx := context.Background()
	js, _ := startNATS(t, t.TempDir())
	if _, err := BindLedger(ctx, js); err == nil {
		t.Fatal("BindLedger without a LEDGER stream succeeded")
	}
	if _, err := OpenLedger(ctx, js, LedgerOptions{}); err != nil {
		t.Fatal(err)
	}
	l, err := BindLedger(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	ev := TenantAuditEvent(TenantRevision{TenantID: "acme", Revision: 4, Action: ActionRollback, RollbackTo: 2, Digest: "abcdef0123456789"}, 3)
	if ev.Kind != KindTenantRolledBack || ev.Detail["rollbackTo"] != uint64(2) || ev.Detail["digest"] != "abcdef012345" {
		t.Fatalf("event = %+v", ev)
	}
	if err := l.Append(ctx, ev); err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, LedgerStream)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetLastMsgForSubject(ctx, "ledger.acme."+KindTenantRolledBack); err != nil {
		t.Errorf("audit event not on the ledger: %v", err)
	}
}
