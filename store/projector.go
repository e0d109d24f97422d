package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ProjectorOptions configure a Projector.
type ProjectorOptions struct {
	// Durable names the projector's JetStream consumer. Each node keeps its own SQLite files, so
	// each node needs its own durable (e.g. "projector-<node>"); two nodes sharing one would split
	// the events between them. Required.
	Durable string
	// OnError, when set, receives errors the projector handles itself (a malformed event it drops,
	// a write it will retry). It must not block.
	OnError func(error)
	// RetryDelay is how long a failed event waits before redelivery (0: 1s).
	RetryDelay time.Duration
	// BatchSize caps how many events are applied together (0: 256).
	BatchSize int
	// BatchWait is how long the projector waits for more events once one has arrived, so that
	// events arriving at a moderate rate still share a transaction (0: 25ms; negative: apply what
	// is queued without waiting). It delays the read model by as much. A SQLite commit (its WAL
	// frames and checkpoints) costs about as much as the writes of the dozen events a 5 ms batch
	// gathered under /chat load: 25 ms took about 7 % off the node's CPU per /chat.
	BatchWait time.Duration
}

const (
	defaultBatchSize = 256
	defaultBatchWait = 25 * time.Millisecond
)

// Projector writes LEDGER events into each tenant's SQLite read model. Applying an event is
// idempotent (each event ID is recorded with its effects in one transaction), so redelivery,
// a replay and a concurrent Rebuild never count an event twice.
//
// Events are applied in batches: what the consumer delivers while a batch is being gathered
// (up to BatchSize, waiting at most BatchWait) is grouped by tenant and each tenant's group is
// written in one transaction, then acknowledged. A commit costs about as much as the writes of
// a model call, so batching is most of the projector's CPU under load.
type Projector struct {
	js   jetstream.JetStream
	dbs  *TenantDBs
	opts ProjectorOptions

	mu       sync.Mutex
	cc       jetstream.ConsumeContext
	stopped  bool
	inflight sync.WaitGroup // messages handed to the worker and not yet acked, nacked or terminated
	queue    chan jetstream.Msg
	stopping chan struct{} // closed when Stop begins: a batch being gathered waits no longer
	quit     chan struct{} // closed by Stop once inflight is zero: the worker returns
	done     chan struct{} // closed when the worker has returned
	enqueued atomic.Uint64 // messages handed to the worker so far (tests wait on it)
}

// NewProjector returns a projector from the LEDGER stream into dbs. It does nothing until Start.
func NewProjector(js jetstream.JetStream, dbs *TenantDBs, opts ProjectorOptions) *Projector {
	if opts.RetryDelay <= 0 {
		opts.RetryDelay = time.Second
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = defaultBatchSize
	}
	if opts.BatchWait == 0 {
		opts.BatchWait = defaultBatchWait
	}
	return &Projector{js: js, dbs: dbs, opts: opts}
}

// Start creates (or resumes) the durable consumer and projects events in the background until
// Stop. The LEDGER stream must exist (OpenLedger). ctx bounds the setup only.
func (p *Projector) Start(ctx context.Context) error {
	if p.opts.Durable == "" {
		return errors.New("store: projector: durable consumer name required")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cc != nil || p.stopped {
		return errors.New("store: projector: already started")
	}
	// AckExplicit, not AckAll: acknowledging the last event of a batch would also acknowledge a
	// failed event before it, which must come back. Acks are sent without waiting for a reply.
	cons, err := p.js.CreateOrUpdateConsumer(ctx, LedgerStream, jetstream.ConsumerConfig{
		Durable:       p.opts.Durable,
		Description:   "crispy SQLite projector",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		FilterSubject: "ledger.>",
		MaxDeliver:    -1,
	})
	if err != nil {
		return fmt.Errorf("store: projector consumer: %w", err)
	}
	p.queue = make(chan jetstream.Msg, p.opts.BatchSize)
	p.stopping, p.quit, p.done = make(chan struct{}), make(chan struct{}), make(chan struct{})
	go p.work()
	cc, err := cons.Consume(p.enqueue,
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) { p.report(err) }))
	if err != nil {
		close(p.quit)
		<-p.done
		return fmt.Errorf("store: projector consume: %w", err)
	}
	p.cc = cc
	return nil
}

// Stop stops consuming and waits until the events already delivered are applied and
// acknowledged (or handed back). Events not yet acknowledged are redelivered to the durable
// consumer on the next Start (on this or a new process).
func (p *Projector) Stop() {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	p.stopped = true
	cc := p.cc
	p.mu.Unlock()
	if cc == nil {
		return
	}
	close(p.stopping)
	cc.Stop()
	// No enqueue adds to inflight any more (stopped is set), so the worker drains to zero.
	p.inflight.Wait()
	close(p.quit)
	<-p.done
	// Wait until the subscription is gone, so a restarted projector on the same durable is the only
	// one receiving (bounded: Closed depends on the connection still being up).
	select {
	case <-cc.Closed():
	case <-time.After(5 * time.Second):
	}
}

func (p *Projector) report(err error) {
	if p.opts.OnError != nil && err != nil {
		p.opts.OnError(err)
	}
}

// enqueue is the consumer's callback: it hands msg to the worker, blocking while the worker's
// queue is full (which holds the consumer back instead of buffering without bound).
func (p *Projector) enqueue(msg jetstream.Msg) {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		// Delivered between Stop and the unsubscribe: hand it back at once rather than leaving it
		// to the ack wait (30 s), so a restarted projector gets it without delay.
		_ = msg.Nak()
		return
	}
	p.inflight.Add(1)
	p.mu.Unlock()
	p.enqueued.Add(1)
	p.queue <- msg
}

// work gathers batches from the queue and applies them until quit.
func (p *Projector) work() {
	defer close(p.done)
	ctx := context.Background() // Stop waits for the queued events instead of cancelling them
	batch := make([]jetstream.Msg, 0, p.opts.BatchSize)
	var wait *time.Timer
	if p.opts.BatchWait > 0 {
		wait = time.NewTimer(p.opts.BatchWait)
		wait.Stop()
	}
	for {
		select {
		case msg := <-p.queue:
			batch = append(batch, msg)
		case <-p.quit:
			return
		}
		batch = p.gather(batch, wait)
		p.applyMsgs(ctx, batch)
		for range batch {
			p.inflight.Done()
		}
		clear(batch) // let the messages go
		batch = batch[:0]
	}
}

// gather adds to batch what is queued, then what arrives before the batch wait ends, up to the
// batch size.
func (p *Projector) gather(batch []jetstream.Msg, wait *time.Timer) []jetstream.Msg {
	for len(batch) < p.opts.BatchSize && len(p.queue) > 0 { // the worker is the only receiver
		batch = append(batch, <-p.queue)
	}
	if wait == nil || len(batch) >= p.opts.BatchSize {
		return batch
	}
	wait.Reset(p.opts.BatchWait)
	defer wait.Stop()
	for len(batch) < p.opts.BatchSize {
		select {
		case msg := <-p.queue:
			batch = append(batch, msg)
		case <-wait.C:
			return batch
		case <-p.stopping:
			return batch
		}
	}
	return batch
}

// pendingEvent is a decoded message waiting for its tenant's transaction.
type pendingEvent struct {
	msg jetstream.Msg
	ev  Event
	seq uint64
}

// applyMsgs applies a batch: malformed messages are dropped, the rest grouped by tenant (in
// stream order within a tenant) and each tenant's group applied on its own, so a failing tenant
// database delays no other tenant.
func (p *Projector) applyMsgs(ctx context.Context, msgs []jetstream.Msg) {
	var tenants []string
	groups := make(map[string][]pendingEvent, 4)
	for _, msg := range msgs {
		var seq uint64
		if md, err := msg.Metadata(); err == nil {
			seq = md.Sequence.Stream
		}
		ev, err := decodeEvent(msg.Subject(), msg.Data())
		if err != nil {
			// A malformed event will never apply; retrying it would block nothing but waste work.
			p.report(fmt.Errorf("store: projector: dropping ledger message %d: %w", seq, err))
			_ = msg.Term()
			continue
		}
		if _, ok := groups[ev.TenantID]; !ok {
			tenants = append(tenants, ev.TenantID)
		}
		groups[ev.TenantID] = append(groups[ev.TenantID], pendingEvent{msg: msg, ev: ev, seq: seq})
	}
	for _, tenant := range tenants {
		p.applyTenant(ctx, tenant, groups[tenant])
	}
}

// applyTenant applies one tenant's events in one transaction and acknowledges them. An event
// whose own write fails is handed back for a later retry and the others are applied without it;
// a failure of the database itself (open, begin, commit) hands the whole group back.
func (p *Projector) applyTenant(ctx context.Context, tenant string, group []pendingEvent) {
	db, err := p.dbs.DB(ctx, tenant)
	if err != nil {
		p.retry(group, err)
		return
	}
	for len(group) > 0 {
		bad, err := applyTx(ctx, db, group)
		if err == nil {
			for _, pe := range group {
				if err := pe.msg.Ack(); err != nil {
					// Not fatal: the event will be redelivered and skipped as already applied.
					p.report(fmt.Errorf("store: projector: ack event %s: %w", pe.ev.ID, err))
				}
			}
			return
		}
		if bad < 0 {
			p.retry(group, err)
			return
		}
		// The transaction was rolled back, so nothing of the group is applied: apply the others
		// again without the failing event.
		p.retry(group[bad:bad+1], err)
		group = slices.Delete(group, bad, bad+1)
	}
}

// retry reports err and hands group back for redelivery after the retry delay.
func (p *Projector) retry(group []pendingEvent, err error) {
	if len(group) == 1 {
		p.report(fmt.Errorf("store: projector: event %s (retrying): %w", group[0].ev.ID, err))
	} else {
		p.report(fmt.Errorf("store: projector: %d events of tenant %s from %s (retrying): %w",
			len(group), group[0].ev.TenantID, group[0].ev.ID, err))
	}
	for _, pe := range group {
		_ = pe.msg.NakWithDelay(p.opts.RetryDelay)
	}
}

// applyTx applies group in one transaction. When an event's own write fails it returns that
// event's index; -1 means the failure is not one event's.
func applyTx(ctx context.Context, db *sql.DB, group []pendingEvent) (bad int, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return -1, err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	w := &txWriter{tx: tx, prepare: len(group) > 1}
	for i, pe := range group {
		if err := w.apply(ctx, pe.ev, pe.seq); err != nil {
			return i, err
		}
	}
	return -1, tx.Commit()
}

// decodeEvent parses a ledger message and checks it against its subject, which is the authority
// for the tenant: an event claiming another tenant than the subject it was published on is refused.
func decodeEvent(subject string, data []byte) (Event, error) {
	var ev Event
	if err := json.Unmarshal(data, &ev); err != nil {
		return Event{}, fmt.Errorf("%w: %w", ErrInvalidEvent, err)
	}
	parts := strings.Split(subject, ".")
	if len(parts) != 3 || parts[0] != "ledger" || parts[1] != ev.TenantID || parts[2] != ev.Kind {
		return Event{}, fmt.Errorf("%w: subject %q does not match tenant %q kind %q", ErrInvalidEvent, subject, ev.TenantID, ev.Kind)
	}
	if err := ValidateTenantID(ev.TenantID); err != nil {
		return Event{}, fmt.Errorf("%w: %w", ErrInvalidEvent, err)
	}
	if ev.ID == "" {
		return Event{}, fmt.Errorf("%w: no id", ErrInvalidEvent)
	}
	return ev, nil
}

// txWriter applies events in one transaction. With prepare set, the two statements every model
// call runs are prepared once for the transaction rather than compiled again for each event (for
// a single event, preparing costs more than it saves).
type txWriter struct {
	tx      *sql.Tx
	prepare bool
	record  *sql.Stmt // closed with the transaction
	usage   *sql.Stmt
}

const (
	recordEventSQL = `INSERT OR IGNORE INTO ledger_events (event_id, kind, ts, stream_seq) VALUES (?, ?, ?, ?)`
	insertUsageSQL = `INSERT INTO usage (event_id, ts, trace_id, session_id, user_id, model, provider,
		tokens_in, tokens_out, estimated, latency_ms, cost, outcome, cached) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)`
)

// exec runs query, through *stmt (prepared on first use) when the writer prepares.
func (w *txWriter) exec(ctx context.Context, stmt **sql.Stmt, query string, args ...any) (sql.Result, error) {
	if !w.prepare {
		return w.tx.ExecContext(ctx, query, args...)
	}
	if *stmt == nil {
		st, err := w.tx.PrepareContext(ctx, query)
		if err != nil {
			return nil, err
		}
		*stmt = st
	}
	return (*stmt).ExecContext(ctx, args...)
}

// apply writes ev's effects in the transaction, unless ev.ID was applied before.
func (w *txWriter) apply(ctx context.Context, ev Event, seq uint64) error {
	tx := w.tx
	ts := ev.Time.UnixMilli()
	res, err := w.exec(ctx, &w.record, recordEventSQL, ev.ID, ev.Kind, ts, int64(seq))
	if err != nil {
		return fmt.Errorf("record event: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return err // n == 0: already applied
	}

	if ev.Kind == KindModelCall {
		_, err := w.exec(ctx, &w.usage, insertUsageSQL, ev.ID, ts, ev.TraceID, ev.SessionID, ev.UserID, ev.Model,
			ev.Provider, ev.TokensIn, ev.TokensOut, ev.Estimated, ev.LatencyMs, ev.Cost, ev.Outcome, ev.Cached)
		if err != nil {
			return fmt.Errorf("usage: %w", err)
		}
		return nil
	}

	detail := []byte("{}")
	if len(ev.Detail) > 0 {
		if detail, err = json.Marshal(ev.Detail); err != nil {
			return fmt.Errorf("audit detail: %w", err)
		}
	}
	subject := ev.Subject
	if subject == "" {
		subject = ev.SessionID
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO audit (event_id, ts, kind, trace_id, user_id, subject, detail, success,
		error_code, duration_ms) VALUES (?,?,?,?,?,?,?,?,?,?)`,
		ev.ID, ts, ev.Kind, ev.TraceID, ev.UserID, subject, string(detail), ev.ErrorCode == "", ev.ErrorCode, ev.LatencyMs); err != nil {
		return fmt.Errorf("audit: %w", err)
	}

	switch {
	case strings.HasPrefix(ev.Kind, "session_") && ev.SessionID == "",
		strings.HasPrefix(ev.Kind, "document_") && ev.Subject == "":
		return nil // audited; nothing to key a row on
	}
	switch ev.Kind {
	case KindSessionCreated:
		_, err = tx.ExecContext(ctx, `INSERT INTO sessions (session_id, created_at, last_active_at) VALUES (?, ?, ?)
			ON CONFLICT (session_id) DO UPDATE SET created_at = min(created_at, excluded.created_at)`, ev.SessionID, ts, ts)
	case KindSessionMessage:
		_, err = tx.ExecContext(ctx, `INSERT INTO sessions (session_id, created_at, last_active_at, messages) VALUES (?, ?, ?, 1)
			ON CONFLICT (session_id) DO UPDATE SET messages = messages + 1,
				last_active_at = max(last_active_at, excluded.last_active_at)`, ev.SessionID, ts, ts)
	case KindSessionCleared:
		_, err = tx.ExecContext(ctx, `INSERT INTO sessions (session_id, created_at, last_active_at, messages, cleared_at) VALUES (?, ?, ?, 0, ?)
			ON CONFLICT (session_id) DO UPDATE SET messages = 0, cleared_at = excluded.cleared_at,
				last_active_at = max(last_active_at, excluded.last_active_at)`, ev.SessionID, ts, ts, ts)
	case KindSessionDeleted:
		_, err = tx.ExecContext(ctx, `DELETE FROM sessions WHERE session_id = ?`, ev.SessionID)
	case KindDocumentIngested:
		err = putDocument(ctx, tx, documentOf(ev)) // catalog.go: the statement the retrieval service runs too
	case KindDocumentDeleted:
		err = dropDocument(ctx, tx, ev.Subject)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", ev.Kind, err)
	}
	return nil
}

func detailString(d map[string]any, k string) string {
	s, _ := d[k].(string)
	return s
}

// detailInt reads a number from a Detail decoded from JSON (float64) or built in Go (int, int64).
func detailInt(d map[string]any, k string) int64 {
	switch v := d[k].(type) {
	case float64:
		return int64(v)
	case int:
		return int64(v)
	case int64:
		return v
	}
	return 0
}

// Rebuild drops the tenant's read model and replays the tenant's events from the LEDGER stream
// into it. It can run while the projector runs: both apply events idempotently, so an event
// applied by either is counted once.
func (p *Projector) Rebuild(ctx context.Context, tenantID string) error {
	if err := ValidateTenantID(tenantID); err != nil {
		return fmt.Errorf("store: rebuild: %w", err)
	}
	db, err := p.dbs.DB(ctx, tenantID)
	if err != nil {
		return fmt.Errorf("store: rebuild %s: %w", tenantID, err)
	}
	if err := clearReadModel(ctx, db); err != nil {
		return fmt.Errorf("store: rebuild %s: %w", tenantID, err)
	}

	cons, err := p.js.OrderedConsumer(ctx, LedgerStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"ledger." + tenantID + ".>"},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("store: rebuild %s: consumer: %w", tenantID, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("store: rebuild %s: consumer info: %w", tenantID, err)
	}
	if info.NumPending == 0 {
		return nil
	}
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("store: rebuild %s: %w", tenantID, err)
		}
		batch, err := cons.Fetch(256, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return fmt.Errorf("store: rebuild %s: fetch: %w", tenantID, err)
		}
		done, err := p.applyBatch(ctx, db, batch)
		if err != nil {
			return fmt.Errorf("store: rebuild %s: %w", tenantID, err)
		}
		if done {
			return nil
		}
	}
}

// applyBatch applies a fetched batch in one transaction and reports whether the last message had
// nothing pending behind it (the replay reached the end of the stream as it was when it started
// or later).
func (p *Projector) applyBatch(ctx context.Context, db *sql.DB, batch jetstream.MessageBatch) (done bool, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	w := &txWriter{tx: tx, prepare: true}
	n := 0
	for msg := range batch.Messages() {
		n++
		md, err := msg.Metadata()
		if err != nil {
			return false, err
		}
		done = md.NumPending == 0
		ev, err := decodeEvent(msg.Subject(), msg.Data())
		if err != nil {
			p.report(fmt.Errorf("store: rebuild: skipping ledger message %d: %w", md.Sequence.Stream, err))
			continue
		}
		if err := w.apply(ctx, ev, md.Sequence.Stream); err != nil {
			return false, fmt.Errorf("event %s: %w", ev.ID, err)
		}
	}
	if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
		return false, err
	}
	if n == 0 {
		return false, errors.New("no messages before the fetch deadline although some were pending")
	}
	return done, tx.Commit()
}

func clearReadModel(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	for _, table := range []string{"usage", "audit", "sessions", "documents", "ledger_events"} {
		if _, err := tx.ExecContext(ctx, "DELETE FROM "+table); err != nil {
			return fmt.Errorf("clear %s: %w", table, err)
		}
	}
	return tx.Commit()
}
