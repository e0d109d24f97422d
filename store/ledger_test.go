package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

type ledgerFixture struct {
	js     jetstream.JetStream
	ledger *Ledger
	dbs    *TenantDBs
	dir    string // dbs's data dir

	mu     sync.Mutex
	errors []error
}

func newLedgerFixture(t *testing.T) *ledgerFixture {
	t.Helper()
	js, _ := startNATS(t, t.TempDir())
	l, err := OpenLedger(t.Context(), js, LedgerOptions{})
	if err != nil {
		t.Fatalf("OpenLedger: %v", err)
	}
	dir := t.TempDir()
	return &ledgerFixture{js: js, ledger: l, dbs: openDBs(t, dir), dir: dir}
}

func (f *ledgerFixture) startProjector(t *testing.T, durable string) *Projector {
	t.Helper()
	p := NewProjector(f.js, f.dbs, ProjectorOptions{
		Durable:    durable,
		RetryDelay: 100 * time.Millisecond,
		OnError: func(err error) {
			f.mu.Lock()
			f.errors = append(f.errors, err)
			f.mu.Unlock()
		},
	})
	if err := p.Start(t.Context()); err != nil {
		t.Fatalf("Projector.Start: %v", err)
	}
	t.Cleanup(p.Stop)
	return p
}

func (f *ledgerFixture) projectorErrors() []error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]error(nil), f.errors...)
}

func (f *ledgerFixture) append(t *testing.T, evs ...Event) {
	t.Helper()
	for _, ev := range evs {
		if err := f.ledger.Append(t.Context(), ev); err != nil {
			t.Fatalf("Append(%s %s): %v", ev.Kind, ev.ID, err)
		}
	}
}

func count(t *testing.T, f *ledgerFixture, tenant, query string, args ...any) int {
	t.Helper()
	db, err := f.dbs.DB(t.Context(), tenant)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.QueryRowContext(t.Context(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// waitProjected polls until the tenant's read model holds want events. The deadline bounds the
// test; nothing asserts how fast projection is.
func waitProjected(t *testing.T, f *ledgerFixture, tenant string, want int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		n := count(t, f, tenant, `SELECT count(*) FROM ledger_events`)
		if n == want {
			return
		}
		if n > want || time.Now().After(deadline) {
			t.Fatalf("tenant %s: %d events projected, want %d (projector errors: %v)", tenant, n, want, f.projectorErrors())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var (
	day1 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	day2 = time.Date(2026, 3, 2, 23, 30, 0, 0, time.UTC)
)

// acmeEvents is a tenant's history touching every table.
func acmeEvents() []Event {
	doc := func(id string, chunks int) Event {
		ev := DocumentIngestedEvent("acme", Document{DocID: id, Title: "Title " + id, Source: "upload",
			URL: "https://example.com/" + id, ContentType: "text/markdown", Chunks: chunks, Bytes: 1234, SHA256: "ab12",
			IngestedAt: day1})
		ev.ID = "doc-" + id
		return ev
	}
	return []Event{
		{ID: "m1", Kind: KindModelCall, TenantID: "acme", Time: day1, Model: "@cf/meta/llama", Provider: "workers-ai",
			TokensIn: 10, TokensOut: 20, LatencyMs: 100, Cost: 0.5, Outcome: "ok", SessionID: "s1"},
		{ID: "m2", Kind: KindModelCall, TenantID: "acme", Time: day1.Add(time.Hour), Model: "local/extractive",
			TokensIn: 5, TokensOut: 7, LatencyMs: 300, Cost: 0, Outcome: "ok", Cached: true, Estimated: true},
		{ID: "m3", Kind: KindModelCall, TenantID: "acme", Time: day2, Model: "@cf/meta/llama",
			TokensIn: 1, TokensOut: 2, LatencyMs: 200, Cost: 0.25, Outcome: "error", ErrorCode: "ai_error"},
		{ID: "s-created", Kind: KindSessionCreated, TenantID: "acme", Time: day1, SessionID: "s1"},
		{ID: "s-m1", Kind: KindSessionMessage, TenantID: "acme", Time: day1.Add(time.Minute), SessionID: "s1"},
		{ID: "s-m2", Kind: KindSessionMessage, TenantID: "acme", Time: day1.Add(2 * time.Minute), SessionID: "s1"},
		{ID: "s-cleared", Kind: KindSessionCleared, TenantID: "acme", Time: day1.Add(3 * time.Minute), SessionID: "s1"},
		{ID: "s-m3", Kind: KindSessionMessage, TenantID: "acme", Time: day1.Add(4 * time.Minute), SessionID: "s1"},
		{ID: "tool1", Kind: KindToolExecuted, TenantID: "acme", Time: day1, Subject: "calculate", UserID: "u1",
			LatencyMs: 3, ErrorCode: "EXECUTION_ERROR", Detail: map[string]any{"paramsSha256": "ff00"}},
		doc("d1", 3),
		doc("d2", 5),
		{ID: "doc-d2-del", Kind: KindDocumentDeleted, TenantID: "acme", Time: day2, Subject: "d2"},
	}
}

// checkAcme asserts the read model acmeEvents produces.
func checkAcme(t *testing.T, f *ledgerFixture) {
	t.Helper()
	ctx := t.Context()
	byDay, err := f.dbs.Usage(ctx, "acme", time.Time{}, time.Time{}, "day")
	if err != nil {
		t.Fatal(err)
	}
	wantDay := []UsageRow{
		{Key: "2026-03-01", Requests: 2, TokensIn: 15, TokensOut: 27, Cost: 0.5, AvgLatencyMs: 200, Cached: 1, Estimated: 1},
		{Key: "2026-03-02", Requests: 1, TokensIn: 1, TokensOut: 2, Cost: 0.25, AvgLatencyMs: 200},
	}
	if diff := cmp.Diff(wantDay, byDay); diff != "" {
		t.Errorf("Usage by day (-want +got):\n%s", diff)
	}
	byModel, err := f.dbs.Usage(ctx, "acme", day1, day2, "model") // day2's call is excluded: to is exclusive
	if err != nil {
		t.Fatal(err)
	}
	wantModel := []UsageRow{
		{Key: "@cf/meta/llama", Requests: 1, TokensIn: 10, TokensOut: 20, Cost: 0.5, AvgLatencyMs: 100},
		{Key: "local/extractive", Requests: 1, TokensIn: 5, TokensOut: 7, AvgLatencyMs: 300, Cached: 1, Estimated: 1},
	}
	if diff := cmp.Diff(wantModel, byModel); diff != "" {
		t.Errorf("Usage by model in [day1, day2) (-want +got):\n%s", diff)
	}

	s, err := f.dbs.Session(ctx, "acme", "s1")
	if err != nil {
		t.Fatal(err)
	}
	cleared := day1.Add(3 * time.Minute)
	wantSession := Session{SessionID: "s1", CreatedAt: day1, LastActiveAt: day1.Add(4 * time.Minute), Messages: 1, ClearedAt: &cleared}
	if diff := cmp.Diff(wantSession, s); diff != "" {
		t.Errorf("Session (-want +got):\n%s", diff)
	}

	docs, err := f.dbs.Documents(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	wantDocs := []Document{{DocID: "d1", Title: "Title d1", Source: "upload", URL: "https://example.com/d1",
		ContentType: "text/markdown", Chunks: 3, Bytes: 1234, SHA256: "ab12", IngestedAt: day1}}
	if diff := cmp.Diff(wantDocs, docs); diff != "" {
		t.Errorf("Documents (-want +got):\n%s", diff)
	}

	if n := count(t, f, "acme", `SELECT count(*) FROM audit WHERE kind = ? AND subject = 'calculate' AND success = 0
		AND error_code = 'EXECUTION_ERROR' AND duration_ms = 3 AND json_extract(detail, '$.paramsSha256') = 'ff00'`, KindToolExecuted); n != 1 {
		t.Errorf("tool audit rows = %d, want 1", n)
	}
	// Every non-model_call event is audited; model calls are in usage only.
	if n := count(t, f, "acme", `SELECT count(*) FROM audit`); n != 9 {
		t.Errorf("audit rows = %d, want 9", n)
	}
}

func TestLedgerProjectsIntoTenantReadModel(t *testing.T) {
	f := newLedgerFixture(t)
	f.startProjector(t, "projector-test")
	evs := acmeEvents()
	f.append(t, evs...)
	f.append(t, Event{ID: "other-m1", Kind: KindModelCall, TenantID: "globex", Time: day1, Model: "@cf/meta/llama", TokensIn: 99})
	waitProjected(t, f, "acme", len(evs))
	waitProjected(t, f, "globex", 1)
	checkAcme(t, f)

	// Tenant isolation: globex's read model has globex's call only.
	got, err := f.dbs.Usage(t.Context(), "globex", time.Time{}, time.Time{}, "model")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]UsageRow{{Key: "@cf/meta/llama", Requests: 1, TokensIn: 99}}, got); diff != "" {
		t.Errorf("globex usage (-want +got):\n%s", diff)
	}
	if _, err := f.dbs.Session(t.Context(), "globex", "s1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("globex sees acme's session: err = %v", err)
	}
	if errs := f.projectorErrors(); len(errs) != 0 {
		t.Errorf("projector errors: %v", errs)
	}
}

// Usage adds the tenant's speech syntheses (audit kind "speech") to its model calls: per day and
// per model, as syntheses and characters, without counting them as requests or tokens.
func TestUsageSumsSpeech(t *testing.T) {
	f := newLedgerFixture(t)
	f.startProjector(t, "projector-test")
	speech := func(id string, at time.Time, model string, chars int) Event {
		return Event{ID: id, Kind: KindSpeech, TenantID: "acme", Time: at, Subject: model, LatencyMs: 40,
			Detail: map[string]any{"characters": chars, "format": "mp3"}}
	}
	evs := []Event{
		{ID: "m1", Kind: KindModelCall, TenantID: "acme", Time: day1, Model: "local/extractive", TokensIn: 5, TokensOut: 7, LatencyMs: 300},
		speech("tts1", day1.Add(time.Minute), "local/espeak", 12),
		speech("tts2", day1.Add(2*time.Minute), "local/espeak", 30),
		speech("tts3", day2, "openai/tts-1", 100),
	}
	f.append(t, evs...)
	waitProjected(t, f, "acme", len(evs))

	byDay, err := f.dbs.Usage(t.Context(), "acme", time.Time{}, time.Time{}, "day")
	if err != nil {
		t.Fatal(err)
	}
	wantDay := []UsageRow{
		{Key: "2026-03-01", Requests: 1, TokensIn: 5, TokensOut: 7, AvgLatencyMs: 300, Syntheses: 2, Characters: 42},
		{Key: "2026-03-02", Syntheses: 1, Characters: 100},
	}
	if diff := cmp.Diff(wantDay, byDay); diff != "" {
		t.Errorf("Usage by day (-want +got):\n%s", diff)
	}
	byModel, err := f.dbs.Usage(t.Context(), "acme", day1, day2, "model") // to is exclusive
	if err != nil {
		t.Fatal(err)
	}
	wantModel := []UsageRow{
		{Key: "local/espeak", Syntheses: 2, Characters: 42},
		{Key: "local/extractive", Requests: 1, TokensIn: 5, TokensOut: 7, AvgLatencyMs: 300},
	}
	if diff := cmp.Diff(wantModel, byModel); diff != "" {
		t.Errorf("Usage by model in [day1, day2) (-want +got):\n%s", diff)
	}
}

func TestLedgerAppendDedupesByEventID(t *testing.T) {
	f := newLedgerFixture(t)
	ev := Event{ID: "same", Kind: KindModelCall, TenantID: "acme", Time: day1, Model: "m", TokensIn: 1}
	f.append(t, ev, ev, ev)
	s, err := f.js.Stream(t.Context(), LedgerStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Errorf("stream holds %d messages after 3 appends of one ID, want 1", info.State.Msgs)
	}
}

func streamMsgs(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	s, err := js.Stream(t.Context(), LedgerStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// AppendBatch records every valid event of the batch once, whatever IDs were recorded before, and
// reports the invalid ones alone.
func TestLedgerAppendBatch(t *testing.T) {
	f := newLedgerFixture(t)
	f.append(t, Event{ID: "before", Kind: KindModelCall, TenantID: "acme", Time: day1})
	batch := []Event{
		{ID: "before", Kind: KindModelCall, TenantID: "acme", Time: day1}, // appended already
		{ID: "b1", Kind: KindModelCall, TenantID: "acme", Time: day1},
		{ID: "b1", Kind: KindModelCall, TenantID: "acme", Time: day1}, // twice in the batch
		{ID: "s1", Kind: KindSpeech, TenantID: "globex"},              // time filled in
		{ID: "bad", Kind: "Not A Kind", TenantID: "acme"},
	}
	errs := f.ledger.AppendBatch(t.Context(), batch)
	for i, err := range errs {
		if wantErr := batch[i].ID == "bad"; (err != nil) != wantErr || (wantErr && !errors.Is(err, ErrInvalidEvent)) {
			t.Errorf("event %d (%s): err = %v, want an error: %v", i, batch[i].ID, err, wantErr)
		}
	}
	if got := streamMsgs(t, f.js); got != 3 {
		t.Errorf("stream holds %d messages, want 3 (before, b1, the speech event)", got)
	}
	if errs := f.ledger.AppendBatch(t.Context(), batch[:4]); errs != nil {
		t.Errorf("a valid batch: %v, want nil", errs)
	}
	if got := streamMsgs(t, f.js); got != 3 {
		t.Errorf("stream holds %d messages after the batch was re-sent, want still 3", got)
	}
}

// When the stream cannot take a batch (here it is gone, as while a stream has no leader),
// AppendBatch re-sends the events with their IDs until it can, and each is stored once.
func TestLedgerAppendBatchResends(t *testing.T) {
	f := newLedgerFixture(t)
	f.append(t, Event{ID: "e0", Kind: KindModelCall, TenantID: "acme", Time: day1})
	if err := f.js.DeleteStream(t.Context(), LedgerStream); err != nil {
		t.Fatal(err)
	}
	sends := make(chan *nats.Msg, 64)
	sub, err := f.js.Conn().ChanSubscribe("ledger.>", sends)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe() //nolint:errcheck // the test is over
	var batch []Event
	for i := range 5 {
		batch = append(batch, Event{ID: fmt.Sprintf("e%d", i), Kind: KindModelCall, TenantID: "acme", Time: day1})
	}
	done := make(chan []error, 1)
	go func() { done <- f.ledger.AppendBatch(t.Context(), batch) }()
	<-sends // a first send, which no stream takes
	if _, err := OpenLedger(t.Context(), f.js, LedgerOptions{}); err != nil {
		t.Fatal(err)
	}
	// e0 was recorded before the stream went: append it again to the new stream, so that the
	// batch's e0 is a duplicate there too.
	f.append(t, batch[0])
	if errs := <-done; errs != nil {
		t.Fatalf("AppendBatch: %v", errs)
	}
	if got := streamMsgs(t, f.js); got != 5 {
		t.Errorf("stream holds %d messages, want 5 (each event once)", got)
	}
	// Seen: the first send of the batch (one of it taken above), the test's own append of e0, and
	// the batch re-sent.
	if got, want := len(sends)+1, 2*len(batch)+1; got < want {
		t.Errorf("%d publishes seen, want the batch sent twice and e0 once more (at least %d)", got, want)
	}
}

// A second projector (another durable, as after losing a node's consumer) replays every event over
// the same SQLite files; nothing is counted twice, including the session message counter.
func TestProjectorReplayIsIdempotent(t *testing.T) {
	f := newLedgerFixture(t)
	p1 := f.startProjector(t, "first")
	evs := acmeEvents()
	f.append(t, evs...)
	waitProjected(t, f, "acme", len(evs))
	p1.Stop()

	f.startProjector(t, "second")
	// The marker event proves the second projector has consumed everything before it.
	f.append(t, Event{ID: "marker", Kind: "marker", TenantID: "acme", Time: day2})
	waitProjected(t, f, "acme", len(evs)+1)
	if n := count(t, f, "acme", `SELECT count(*) FROM audit WHERE kind = 'marker'`); n != 1 {
		t.Fatalf("marker not audited (%d)", n)
	}
	if n := count(t, f, "acme", `SELECT count(*) FROM audit`); n != 10 {
		t.Errorf("audit rows after replay = %d, want 10", n)
	}
	if n := count(t, f, "acme", `SELECT count(*) FROM usage`); n != 3 {
		t.Errorf("usage rows after replay = %d, want 3", n)
	}
	if n := count(t, f, "acme", `SELECT messages FROM sessions WHERE session_id = 's1'`); n != 1 {
		t.Errorf("session messages after replay = %d, want 1", n)
	}
}

// Stopping and starting the same durable resumes after the last acknowledged event.
func TestProjectorResumesDurable(t *testing.T) {
	f := newLedgerFixture(t)
	p := f.startProjector(t, "node-1")
	f.append(t, Event{ID: "a", Kind: KindModelCall, TenantID: "acme", Time: day1, Model: "m", TokensIn: 1})
	waitProjected(t, f, "acme", 1)
	p.Stop()
	p.Stop() // idempotent

	f.append(t, Event{ID: "b", Kind: KindModelCall, TenantID: "acme", Time: day1, Model: "m", TokensIn: 2})
	f.startProjector(t, "node-1")
	waitProjected(t, f, "acme", 2)
	cons, err := f.js.Consumer(t.Context(), LedgerStream, "node-1")
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.Delivered.Stream != 2 {
		t.Errorf("durable delivered up to stream seq %d, want 2", info.Delivered.Stream)
	}
}

func TestProjectorRebuild(t *testing.T) {
	f := newLedgerFixture(t)
	p := f.startProjector(t, "projector")
	evs := acmeEvents()
	f.append(t, evs...)
	f.append(t, Event{ID: "g1", Kind: KindModelCall, TenantID: "globex", Time: day1, Model: "m"})
	waitProjected(t, f, "acme", len(evs))
	waitProjected(t, f, "globex", 1)

	// Damage acme's read model: a bogus row, a lost row.
	db, err := f.dbs.DB(t.Context(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(t.Context(), `INSERT INTO usage (event_id, ts, model, tokens_in) VALUES ('bogus', ?, 'm', 1000)`, day1.UnixMilli()); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(t.Context(), `DELETE FROM documents`); err != nil {
		t.Fatal(err)
	}

	if err := p.Rebuild(t.Context(), "acme"); err != nil {
		t.Fatalf("Rebuild: %v", err)
	}
	if n := count(t, f, "acme", `SELECT count(*) FROM ledger_events`); n != len(evs) {
		t.Errorf("after Rebuild: %d events, want %d", n, len(evs))
	}
	checkAcme(t, f)
	if n := count(t, f, "globex", `SELECT count(*) FROM usage`); n != 1 {
		t.Errorf("Rebuild(acme) touched globex: %d usage rows", n)
	}

	// A tenant with no events rebuilds to empty.
	if err := p.Rebuild(t.Context(), "initech"); err != nil {
		t.Fatalf("Rebuild of a tenant without events: %v", err)
	}
	if err := p.Rebuild(t.Context(), "../acme"); !errors.Is(err, ErrInvalidTenant) {
		t.Errorf("Rebuild(../acme) err = %v, want ErrInvalidTenant", err)
	}
}

// A message that is not a valid event (or claims another tenant than its subject) is dropped and
// reported; the events after it are still projected.
func TestProjectorDropsMalformedEvents(t *testing.T) {
	f := newLedgerFixture(t)
	f.startProjector(t, "projector")
	ctx := t.Context()
	if _, err := f.js.Publish(ctx, "ledger.acme.model_call", []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.js.Publish(ctx, "ledger.acme.model_call", []byte(`{"id":"x","kind":"model_call","tenantId":"globex"}`)); err != nil {
		t.Fatal(err)
	}
	f.append(t, Event{ID: "good", Kind: KindModelCall, TenantID: "acme", Time: day1, Model: "m"})
	waitProjected(t, f, "acme", 1)
	if n := count(t, f, "globex", `SELECT count(*) FROM ledger_events`); n != 0 {
		t.Errorf("an event published on acme's subject landed in globex's read model")
	}
	errs := f.projectorErrors()
	if len(errs) != 2 {
		t.Fatalf("projector reported %d errors, want 2: %v", len(errs), errs)
	}
	for _, err := range errs {
		if !errors.Is(err, ErrInvalidEvent) {
			t.Errorf("reported error %v, want ErrInvalidEvent", err)
		}
	}
}

func TestLedgerAppendValidates(t *testing.T) {
	f := newLedgerFixture(t)
	tests := []struct {
		name string
		ev   Event
	}{
		{"no tenant", Event{Kind: KindModelCall}},
		{"dotted tenant", Event{Kind: KindModelCall, TenantID: "a.b"}},
		{"wildcard tenant", Event{Kind: KindModelCall, TenantID: "*"}},
		{"no kind", Event{TenantID: "acme"}},
		{"dotted kind", Event{Kind: "model.call", TenantID: "acme"}},
		{"wildcard kind", Event{Kind: ">", TenantID: "acme"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := f.ledger.Append(t.Context(), tt.ev); !errors.Is(err, ErrInvalidEvent) {
				t.Errorf("Append err = %v, want ErrInvalidEvent", err)
			}
		})
	}
}

func TestUsageRejectsUnknownGroupBy(t *testing.T) {
	dbs := openDBs(t, t.TempDir())
	if _, err := dbs.Usage(t.Context(), "acme", time.Time{}, time.Time{}, "week"); !errors.Is(err, ErrInvalidGroupBy) {
		t.Errorf("err = %v, want ErrInvalidGroupBy", err)
	}
}

func BenchmarkLedgerAppend(b *testing.B) {
	js, _ := startNATS(b, b.TempDir())
	l, err := OpenLedger(b.Context(), js, LedgerOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ev := Event{ID: fmt.Sprint("e", i), Kind: KindModelCall, TenantID: "acme", Time: day1, Model: "m", TokensIn: 10, TokensOut: 20}
		if err := l.Append(b.Context(), ev); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkProjectorApply applies one model_call event per transaction, as the projector does
// when events arrive one at a time.
func BenchmarkProjectorApply(b *testing.B) {
	dbs := OpenTenantDBs(b.TempDir())
	defer dbs.Close()
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ev := Event{ID: fmt.Sprint("e", i), Kind: KindModelCall, TenantID: "acme", Time: day1, Model: "m", TokensIn: 10, TokensOut: 20}
		db, err := dbs.DB(ctx, ev.TenantID)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := applyTx(ctx, db, []pendingEvent{{ev: ev, seq: uint64(i)}}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkProjectorApplyBatch applies model_call events in transactions of size events, as the
// projector does under load; an op is one event.
func BenchmarkProjectorApplyBatch(b *testing.B) {
	for _, size := range []int{16, 256} {
		b.Run(fmt.Sprintf("size-%d", size), func(b *testing.B) {
			dbs := OpenTenantDBs(b.TempDir())
			defer dbs.Close()
			ctx := context.Background()
			group := make([]pendingEvent, 0, size)
			flush := func() {
				db, err := dbs.DB(ctx, "acme")
				if err != nil {
					b.Fatal(err)
				}
				if _, err := applyTx(ctx, db, group); err != nil {
					b.Fatal(err)
				}
				group = group[:0]
			}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				ev := Event{ID: fmt.Sprint("e", i), Kind: KindModelCall, TenantID: "acme", Time: day1, Model: "m", TokensIn: 10, TokensOut: 20}
				group = append(group, pendingEvent{ev: ev, seq: uint64(i)})
				if len(group) == size {
					flush()
				}
			}
			if len(group) > 0 {
				flush()
			}
		})
	}
}

// TestRetry walks the one retry loop and its one definition of a transient failure.
func TestRetry(t *testing.T) {
	refused := &jetstream.APIError{Code: 400, ErrorCode: 10071, Description: "wrong last sequence"}
	noLeader := &jetstream.APIError{Code: 503, Description: "JetStream system temporarily unavailable"}
	tests := []struct {
		name      string
		errs      []error // what each attempt returns; past the end: success
		wantCalls int
		wantErr   error
	}{
		{"first attempt succeeds", nil, 1, nil},
		{"unanswered publish is re-sent", []error{context.DeadlineExceeded, nats.ErrNoResponders}, 3, nil},
		{"503 without a leader is re-sent", []error{noLeader}, 2, nil},
		{"4xx is an answer and final", []error{refused}, 1, refused},
		{"other errors are final", []error{jetstream.ErrStreamNotFound}, 1, jetstream.ErrStreamNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			err := Retry{Attempt: publishAttempt}.Do(t.Context(), func(ctx context.Context) error {
				if _, ok := ctx.Deadline(); !ok {
					t.Error("attempt has no deadline")
				}
				calls++
				if calls <= len(tt.errs) {
					return tt.errs[calls-1]
				}
				return nil
			})
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if calls != tt.wantCalls {
				t.Fatalf("calls = %d, want %d", calls, tt.wantCalls)
			}
		})
	}
	t.Run("stops when ctx ends", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		err := Retry{Attempt: publishAttempt}.Do(ctx, func(context.Context) error { return nats.ErrTimeout })
		if !errors.Is(err, nats.ErrTimeout) {
			t.Fatalf("err = %v, want the last attempt's error", err)
		}
	})
}
