package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
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
}

// Projector writes LEDGER events into each tenant's SQLite read model. Applying an event is
// idempotent (each event ID is recorded with its effects in one transaction), so redelivery,
// a replay and a concurrent Rebuild never count an event twice.
type Projector struct {
	js   jetstream.JetStream
	dbs  *TenantDBs
	opts ProjectorOptions

	mu       sync.Mutex
	cc       jetstream.ConsumeContext
	cancel   context.CancelFunc
	stopped  bool
	inflight sync.WaitGroup
}

// NewProjector returns a projector from the LEDGER stream into dbs. It does nothing until Start.
func NewProjector(js jetstream.JetStream, dbs *TenantDBs, opts ProjectorOptions) *Projector {
	if opts.RetryDelay <= 0 {
		opts.RetryDelay = time.Second
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
	runCtx, cancel := context.WithCancel(context.Background())
	cc, err := cons.Consume(func(msg jetstream.Msg) { p.handle(runCtx, msg) },
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) { p.report(err) }))
	if err != nil {
		cancel()
		return fmt.Errorf("store: projector consume: %w", err)
	}
	p.cc, p.cancel = cc, cancel
	return nil
}

// Stop stops consuming and waits for the event being applied, if any. Events not yet acknowledged
// are redelivered to the durable consumer on the next Start (on this or a new process).
func (p *Projector) Stop() {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	p.stopped = true
	cc, cancel := p.cc, p.cancel
	p.mu.Unlock()
	if cc == nil {
		return
	}
	cc.Stop()
	cancel()
	p.inflight.Wait()
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

func (p *Projector) handle(ctx context.Context, msg jetstream.Msg) {
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
	defer p.inflight.Done()

	var seq uint64
	if md, err := msg.Metadata(); err == nil {
		seq = md.Sequence.Stream
	}
	ev, err := decodeEvent(msg.Subject(), msg.Data())
	if err != nil {
		// A malformed event will never apply; retrying it would block nothing but waste work.
		p.report(fmt.Errorf("store: projector: dropping ledger message %d: %w", seq, err))
		_ = msg.Term()
		return
	}
	if err := p.apply(ctx, ev, seq); err != nil {
		p.report(fmt.Errorf("store: projector: event %s (retrying): %w", ev.ID, err))
		_ = msg.NakWithDelay(p.opts.RetryDelay)
		return
	}
	if err := msg.Ack(); err != nil {
		// Not fatal: the event will be redelivered and skipped as already applied.
		p.report(fmt.Errorf("store: projector: ack event %s: %w", ev.ID, err))
	}
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

func (p *Projector) apply(ctx context.Context, ev Event, seq uint64) error {
	db, err := p.dbs.DB(ctx, ev.TenantID)
	if err != nil {
		return err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if err := applyEvent(ctx, tx, ev, seq); err != nil {
		return err
	}
	return tx.Commit()
}

// applyEvent writes ev's effects in tx, unless ev.ID was applied before.
func applyEvent(ctx context.Context, tx *sql.Tx, ev Event, seq uint64) error {
	ts := ev.Time.UnixMilli()
	res, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO ledger_events (event_id, kind, ts, stream_seq) VALUES (?, ?, ?, ?)`,
		ev.ID, ev.Kind, ts, int64(seq))
	if err != nil {
		return fmt.Errorf("record event: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return err // n == 0: already applied
	}

	if ev.Kind == KindModelCall {
		_, err := tx.ExecContext(ctx, `INSERT INTO usage (event_id, ts, trace_id, session_id, user_id, model, provider,
			tokens_in, tokens_out, estimated, latency_ms, cost, outcome, cached) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
			ev.ID, ts, ev.TraceID, ev.SessionID, ev.UserID, ev.Model, ev.Provider, ev.TokensIn, ev.TokensOut,
			ev.Estimated, ev.LatencyMs, ev.Cost, ev.Outcome, ev.Cached)
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
		if err := applyEvent(ctx, tx, ev, md.Sequence.Stream); err != nil {
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
