package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"
)

// fakeMsg is a delivered ledger message that records how the projector settled it.
type fakeMsg struct {
	jetstream.Msg // nil: a method the projector should not call panics
	subject       string
	data          []byte
	seq           uint64

	mu      sync.Mutex
	outcome string // "ack", "nak" or "term"
	delay   time.Duration
}

func (m *fakeMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{Sequence: jetstream.SequencePair{Stream: m.seq}}, nil
}
func (m *fakeMsg) Subject() string { return m.subject }
func (m *fakeMsg) Data() []byte    { return m.data }
func (m *fakeMsg) Ack() error      { return m.settle("ack", 0) }
func (m *fakeMsg) Nak() error      { return m.settle("nak", 0) }
func (m *fakeMsg) Term() error     { return m.settle("term", 0) }
func (m *fakeMsg) NakWithDelay(d time.Duration) error {
	return m.settle("nak", d)
}

func (m *fakeMsg) settle(outcome string, delay time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.outcome != "" {
		return jetstream.ErrMsgAlreadyAckd
	}
	m.outcome, m.delay = outcome, delay
	return nil
}

func (m *fakeMsg) settled() (string, time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.outcome, m.delay
}

// msgOf is ev as the consumer delivers it, on its own tenant's subject.
func msgOf(t *testing.T, seq uint64, ev Event) *fakeMsg {
	t.Helper()
	data, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeMsg{subject: "ledger." + ev.TenantID + "." + ev.Kind, data: data, seq: seq}
}

func modelCall(tenant, id string) Event {
	return Event{ID: id, Kind: KindModelCall, TenantID: tenant, Time: day1, Model: "m", TokensIn: 10, TokensOut: 1}
}

func sessionMessage(tenant, id, session string) Event {
	return Event{ID: id, Kind: KindSessionMessage, TenantID: tenant, Time: day1, SessionID: session}
}

// batchFixture is a projector over a TenantDBs in a temp dir, driven batch by batch without NATS.
type batchFixture struct {
	*ledgerFixture
	p *Projector
}

func newBatchFixture(t *testing.T) *batchFixture {
	t.Helper()
	dir := t.TempDir()
	f := &batchFixture{ledgerFixture: &ledgerFixture{dbs: openDBs(t, dir), dir: dir}}
	f.p = NewProjector(nil, f.dbs, ProjectorOptions{Durable: "unit", RetryDelay: 7 * time.Second, OnError: func(err error) {
		f.mu.Lock()
		f.errors = append(f.errors, err)
		f.mu.Unlock()
	}})
	return f
}

// apply hands msgs to the projector as one batch and returns how each was settled.
func (f *batchFixture) apply(t *testing.T, msgs ...*fakeMsg) []string {
	t.Helper()
	batch := make([]jetstream.Msg, len(msgs))
	for i, m := range msgs {
		batch[i] = m
	}
	f.p.applyMsgs(t.Context(), batch)
	out := make([]string, len(msgs))
	for i, m := range msgs {
		outcome, delay := m.settled()
		if outcome == "nak" && delay != f.p.opts.RetryDelay {
			t.Errorf("message %d nacked with delay %v, want the retry delay %v", i, delay, f.p.opts.RetryDelay)
		}
		out[i] = outcome
	}
	return out
}

// blockTenant makes the tenant's database impossible to open until the returned func runs.
func (f *ledgerFixture) blockTenant(t *testing.T, tenant string) (unblock func()) {
	t.Helper()
	path := filepath.Join(f.dir, "tenants", tenant)
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	}
}

// failModel makes every write of a model call to model fail in the tenant's database.
func (f *ledgerFixture) failModel(t *testing.T, tenant, model string) {
	t.Helper()
	db, err := f.dbs.DB(t.Context(), tenant)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(t.Context(), fmt.Sprintf(`CREATE TRIGGER fail_%[1]s BEFORE INSERT ON usage
		WHEN NEW.model = '%[1]s' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END`, model)); err != nil {
		t.Fatal(err)
	}
}

func TestProjectorBatch(t *testing.T) {
	type counts map[string]int // tenant → ledger_events rows
	tests := []struct {
		name string
		// batch builds the batch (after any setup it needs) and returns it with the check to run
		// after it was applied.
		batch        func(t *testing.T, f *batchFixture) []*fakeMsg
		wantOutcomes []string
		wantEvents   counts
		wantErrors   int
		check        func(t *testing.T, f *batchFixture)
	}{
		{
			name: "interleaved tenants each get their own events",
			batch: func(t *testing.T, f *batchFixture) []*fakeMsg {
				var msgs []*fakeMsg
				for i := range 12 {
					tenant := []string{"acme", "globex", "initech"}[i%3]
					ev := modelCall(tenant, fmt.Sprint("m", i))
					if i%2 == 1 {
						ev = sessionMessage(tenant, fmt.Sprint("s", i), "s1")
					}
					msgs = append(msgs, msgOf(t, uint64(i+1), ev))
				}
				return msgs
			},
			wantOutcomes: []string{"ack", "ack", "ack", "ack", "ack", "ack", "ack", "ack", "ack", "ack", "ack", "ack"},
			wantEvents:   counts{"acme": 4, "globex": 4, "initech": 4},
			check: func(t *testing.T, f *batchFixture) {
				for _, tenant := range []string{"acme", "globex", "initech"} {
					if n := count(t, f.ledgerFixture, tenant, `SELECT count(*) FROM usage`); n != 2 {
						t.Errorf("%s: %d usage rows, want 2", tenant, n)
					}
					if n := count(t, f.ledgerFixture, tenant, `SELECT messages FROM sessions WHERE session_id = 's1'`); n != 2 {
						t.Errorf("%s: session messages = %d, want 2", tenant, n)
					}
				}
			},
		},
		{
			name: "a malformed message in the middle is dropped, the others applied",
			batch: func(t *testing.T, f *batchFixture) []*fakeMsg {
				return []*fakeMsg{
					msgOf(t, 1, modelCall("acme", "a1")),
					{subject: "ledger.acme.model_call", data: []byte("{not json"), seq: 2},
					msgOf(t, 3, modelCall("globex", "g1")),
					{subject: "ledger.acme.model_call", data: []byte(`{"id":"x","kind":"model_call","tenantId":"globex"}`), seq: 4},
					msgOf(t, 5, modelCall("acme", "a2")),
				}
			},
			wantOutcomes: []string{"ack", "term", "ack", "term", "ack"},
			wantEvents:   counts{"acme": 2, "globex": 1},
			wantErrors:   2,
			check: func(t *testing.T, f *batchFixture) {
				for _, err := range f.projectorErrors() {
					if !errors.Is(err, ErrInvalidEvent) {
						t.Errorf("reported %v, want ErrInvalidEvent", err)
					}
				}
			},
		},
		{
			name: "an event whose write fails is retried, its tenant's others applied",
			batch: func(t *testing.T, f *batchFixture) []*fakeMsg {
				f.failModel(t, "acme", "poison")
				poison := modelCall("acme", "a2")
				poison.Model = "poison"
				return []*fakeMsg{
					msgOf(t, 1, modelCall("acme", "a1")),
					msgOf(t, 2, poison),
					msgOf(t, 3, modelCall("globex", "g1")),
					msgOf(t, 4, modelCall("acme", "a3")),
				}
			},
			wantOutcomes: []string{"ack", "nak", "ack", "ack"},
			wantEvents:   counts{"acme": 2, "globex": 1},
			wantErrors:   1,
			check: func(t *testing.T, f *batchFixture) {
				if n := count(t, f.ledgerFixture, "acme", `SELECT count(*) FROM ledger_events WHERE event_id = 'a2'`); n != 0 {
					t.Errorf("the failed event is recorded as applied")
				}
			},
		},
		{
			name: "a tenant database that cannot open holds back its events only",
			batch: func(t *testing.T, f *batchFixture) []*fakeMsg {
				f.blockTenant(t, "broken")
				return []*fakeMsg{
					msgOf(t, 1, modelCall("broken", "b1")),
					msgOf(t, 2, modelCall("acme", "a1")),
					msgOf(t, 3, modelCall("broken", "b2")),
					msgOf(t, 4, modelCall("globex", "g1")),
				}
			},
			wantOutcomes: []string{"nak", "ack", "nak", "ack"},
			wantEvents:   counts{"acme": 1, "globex": 1},
			wantErrors:   1, // one per tenant group
		},
		{
			name: "a redelivered batch counts once",
			batch: func(t *testing.T, f *batchFixture) []*fakeMsg {
				first := []Event{modelCall("acme", "a1"), sessionMessage("acme", "s-1", "s1"), modelCall("globex", "g1")}
				var msgs []*fakeMsg
				for i, ev := range first {
					msgs = append(msgs, msgOf(t, uint64(i+1), ev))
				}
				if diff := cmp.Diff([]string{"ack", "ack", "ack"}, f.apply(t, msgs...)); diff != "" {
					t.Fatalf("first delivery settled (-want +got):\n%s", diff)
				}
				// Redelivered (e.g. the acks were lost) together with a new event.
				var again []*fakeMsg
				for i, ev := range first {
					again = append(again, msgOf(t, uint64(i+1), ev))
				}
				return append(again, msgOf(t, 4, sessionMessage("acme", "s-2", "s1")))
			},
			wantOutcomes: []string{"ack", "ack", "ack", "ack"},
			wantEvents:   counts{"acme": 3, "globex": 1},
			check: func(t *testing.T, f *batchFixture) {
				if n := count(t, f.ledgerFixture, "acme", `SELECT count(*) FROM usage`); n != 1 {
					t.Errorf("acme usage rows = %d, want 1", n)
				}
				if n := count(t, f.ledgerFixture, "acme", `SELECT messages FROM sessions WHERE session_id = 's1'`); n != 2 {
					t.Errorf("session messages = %d, want 2", n)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newBatchFixture(t)
			msgs := tt.batch(t, f)
			got := f.apply(t, msgs...)
			if diff := cmp.Diff(tt.wantOutcomes, got); diff != "" {
				t.Errorf("settled (-want +got):\n%s", diff)
			}
			for tenant, want := range tt.wantEvents {
				if n := count(t, f.ledgerFixture, tenant, `SELECT count(*) FROM ledger_events`); n != want {
					t.Errorf("%s: %d events applied, want %d", tenant, n, want)
				}
			}
			if errs := f.projectorErrors(); len(errs) != tt.wantErrors {
				t.Errorf("reported %d errors, want %d: %v", len(errs), tt.wantErrors, errs)
			}
			if tt.check != nil {
				tt.check(t, f)
			}
		})
	}
}

// Events held back by a failure are applied when redelivered once the cause is gone, and a batch
// redelivered after a partial failure counts every event once.
func TestProjectorBatchRetryAfterFailureCountsOnce(t *testing.T) {
	f := newBatchFixture(t)
	unblock := f.blockTenant(t, "broken")
	f.failModel(t, "acme", "poison")
	poison := modelCall("acme", "a2")
	poison.Model = "poison"
	evs := []Event{
		modelCall("acme", "a1"), sessionMessage("acme", "s-1", "s1"), poison,
		modelCall("broken", "b1"), sessionMessage("broken", "s-1", "s1"),
	}
	deliver := func() []string {
		var msgs []*fakeMsg
		for i, ev := range evs {
			msgs = append(msgs, msgOf(t, uint64(i+1), ev))
		}
		return f.apply(t, msgs...)
	}
	if diff := cmp.Diff([]string{"ack", "ack", "nak", "nak", "nak"}, deliver()); diff != "" {
		t.Fatalf("first delivery settled (-want +got):\n%s", diff)
	}

	unblock()
	db, err := f.dbs.DB(t.Context(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(t.Context(), `DROP TRIGGER fail_poison`); err != nil {
		t.Fatal(err)
	}
	// The whole batch comes back, as after a crash between the commit and the acks.
	if diff := cmp.Diff([]string{"ack", "ack", "ack", "ack", "ack"}, deliver()); diff != "" {
		t.Fatalf("redelivery settled (-want +got):\n%s", diff)
	}
	for _, tenant := range []string{"acme", "broken"} {
		want := map[string]int{"acme": 2, "broken": 1}[tenant]
		if n := count(t, f.ledgerFixture, tenant, `SELECT count(*) FROM usage`); n != want {
			t.Errorf("%s: %d usage rows, want %d", tenant, n, want)
		}
		if n := count(t, f.ledgerFixture, tenant, `SELECT messages FROM sessions WHERE session_id = 's1'`); n != 1 {
			t.Errorf("%s: session messages = %d, want 1", tenant, n)
		}
	}
}

// Through JetStream: events of many tenants already on the stream arrive together and are
// projected into each tenant's read model, and everything is acknowledged.
func TestProjectorBatchesInterleavedTenants(t *testing.T) {
	f := newLedgerFixture(t)
	const tenants, perTenant = 5, 40
	for i := range tenants * perTenant {
		tenant := fmt.Sprintf("t%d", i%tenants)
		ev := modelCall(tenant, fmt.Sprint("e", i))
		ev.TokensIn = i
		f.append(t, ev)
	}
	f.startProjector(t, "batched")
	for i := range tenants {
		tenant := fmt.Sprintf("t%d", i)
		waitProjected(t, f, tenant, perTenant)
		want := 0
		for j := i; j < tenants*perTenant; j += tenants {
			want += j
		}
		if n := count(t, f, tenant, `SELECT sum(tokens_in) FROM usage`); n != want {
			t.Errorf("%s: tokens in = %d, want %d", tenant, n, want)
		}
	}
	waitAcked(t, f, "batched", tenants*perTenant)
	if errs := f.projectorErrors(); len(errs) != 0 {
		t.Errorf("projector errors: %v", errs)
	}
}

// A tenant whose database fails does not hold back the others, and its events are projected
// once it recovers.
func TestProjectorRetriesFailingTenant(t *testing.T) {
	f := newLedgerFixture(t)
	unblock := f.blockTenant(t, "broken")
	f.startProjector(t, "retrying")
	f.append(t, modelCall("broken", "b1"), modelCall("acme", "a1"), modelCall("broken", "b2"), modelCall("acme", "a2"))
	waitProjected(t, f, "acme", 2)
	if len(f.projectorErrors()) == 0 {
		t.Fatal("no error reported for the tenant that cannot open its database")
	}
	unblock()
	waitProjected(t, f, "broken", 2)
}

// Stop applies and acknowledges what was delivered before it, even a batch still gathering.
func TestProjectorStopDrains(t *testing.T) {
	f := newLedgerFixture(t)
	const n = 10
	for i := range n {
		f.append(t, modelCall("acme", fmt.Sprint("e", i)))
	}
	p := NewProjector(f.js, f.dbs, ProjectorOptions{Durable: "draining", BatchSize: 1000, BatchWait: time.Hour})
	if err := p.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	deadline := time.Now().Add(20 * time.Second)
	for p.enqueued.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events delivered to the projector", p.enqueued.Load(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The batch waits for more events (an hour, or 1000 events): nothing is applied yet.
	if got := count(t, f, "acme", `SELECT count(*) FROM ledger_events`); got != 0 {
		t.Fatalf("%d events applied before the batch was complete", got)
	}
	p.Stop()
	if got := count(t, f, "acme", `SELECT count(*) FROM ledger_events`); got != n {
		t.Errorf("after Stop: %d events applied, want %d", got, n)
	}
	waitAcked(t, f, "draining", n)
}

// waitAcked polls until the durable's ack floor reaches stream sequence seq with nothing pending.
func waitAcked(t *testing.T, f *ledgerFixture, durable string, seq uint64) {
	t.Helper()
	cons, err := f.js.Consumer(t.Context(), LedgerStream, durable)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, err := cons.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if info.AckFloor.Stream == seq && info.NumAckPending == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("durable %s: ack floor %d, %d pending acks; want floor %d and none pending",
				durable, info.AckFloor.Stream, info.NumAckPending, seq)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
