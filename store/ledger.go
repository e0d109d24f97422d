package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// LedgerStream is the JetStream stream of ledger events; subjects are ledger.<tenant>.<kind>.
const LedgerStream = "LEDGER"

// Event kinds the projector gives a meaning to. Any other kind matching ^[a-z0-9_]{1,64}$ may be
// appended; the projector records it in the audit table only.
const (
	KindModelCall        = "model_call"        // a chat/embedding/TTS call: → usage
	KindRateLimited      = "rate_limited"      // → audit
	KindBudgetExceeded   = "budget_exceeded"   // → audit
	KindToolExecuted     = "tool_executed"     // Subject = tool name → audit
	KindSessionCreated   = "session_created"   // SessionID → sessions (+ audit)
	KindSessionMessage   = "session_message"   // SessionID; one per stored message → sessions.messages+1
	KindSessionCleared   = "session_cleared"   // SessionID → sessions.messages = 0, cleared_at (+ audit)
	KindSessionDeleted   = "session_deleted"   // SessionID → row removed (+ audit)
	KindDocumentIngested = "document_ingested" // Subject = doc ID, Detail from DocumentDetail → documents
	KindDocumentDeleted  = "document_deleted"  // Subject = doc ID → row removed (+ audit)
	KindSpeech           = "speech"            // a POST /tts synthesis: Subject = model, Detail.characters → audit, summed by Usage
)

// ErrInvalidEvent is returned (wrapped) by Append for an event that cannot be recorded.
var ErrInvalidEvent = errors.New("invalid ledger event")

var kindRe = regexp.MustCompile(`^[a-z0-9_]{1,64}$`)

// NewEventID returns a fresh event ID: a UUIDv7, whose leading timestamp makes IDs made close in
// time sort close together. The read model indexes events by ID (ledger_events, usage), so a
// projector batch of time-ordered IDs lands in a few index pages at the right edge of each index;
// random (v4) IDs put every event of a batch on its own page, and SQLite writes each dirtied page
// to the WAL in full: about 8 KB per event instead of a share of a few pages.
func NewEventID() string {
	return uuid.Must(uuid.NewV7()).String()
}

// Event is one ledger record, JSON-encoded on the stream. It carries counts, IDs and outcomes, never
// a raw prompt or answer: Detail is stored verbatim in the audit table, so callers put hashes and
// sizes there (e.g. the sha256 of tool params, as docs/api.md's tool audit asks), not content.
type Event struct {
	// ID identifies the event; Append sends it as Nats-Msg-Id so a retried Append within the
	// stream's duplicate window is stored once, and the projector applies each ID once.
	ID        string    `json:"id"`
	Kind      string    `json:"kind"`
	TenantID  string    `json:"tenantId"`
	TraceID   string    `json:"traceId,omitempty"`
	SessionID string    `json:"sessionId,omitempty"`
	UserID    string    `json:"userId,omitempty"`
	Time      time.Time `json:"time"`
	Model     string    `json:"model,omitempty"`
	Provider  string    `json:"provider,omitempty"`
	TokensIn  int       `json:"tokensIn,omitempty"`
	TokensOut int       `json:"tokensOut,omitempty"`
	// Estimated is true when token counts were estimated rather than reported by the provider.
	Estimated bool    `json:"estimated,omitempty"`
	LatencyMs int64   `json:"latencyMs,omitempty"`
	Cost      float64 `json:"cost,omitempty"`
	Outcome   string  `json:"outcome,omitempty"`
	ErrorCode string  `json:"errorCode,omitempty"`
	// Subject is what the event is about when that is not a session: a tool name, a document ID.
	Subject string `json:"subject,omitempty"`
	// Cached is true for a model_call answered from the response cache.
	Cached bool           `json:"cached,omitempty"`
	Detail map[string]any `json:"detail,omitempty"`
}

// Document is one entry of a tenant's document catalogue.
type Document struct {
	DocID       string    `json:"docId"`
	Title       string    `json:"title,omitempty"`
	Source      string    `json:"source,omitempty"`
	URL         string    `json:"url,omitempty"`
	ContentType string    `json:"contentType,omitempty"`
	Chunks      int       `json:"chunks"`
	Bytes       int64     `json:"bytes"`
	SHA256      string    `json:"sha256,omitempty"`
	IngestedAt  time.Time `json:"ingestedAt"`
}

// DocumentIngestedEvent builds the document_ingested event for d (d.IngestedAt is the event time;
// zero means now). The caller sets ID/TraceID/UserID as for any event.
func DocumentIngestedEvent(tenantID string, d Document) Event {
	return Event{
		Kind:     KindDocumentIngested,
		TenantID: tenantID,
		Time:     d.IngestedAt,
		Subject:  d.DocID,
		Detail: map[string]any{
			"title": d.Title, "source": d.Source, "url": d.URL, "contentType": d.ContentType,
			"chunks": d.Chunks, "bytes": d.Bytes, "sha256": d.SHA256,
		},
	}
}

// LedgerOptions configure the LEDGER stream.
type LedgerOptions struct {
	// Replicas is the JetStream replica count; the cluster passes min(3, servers). 0 means 1.
	Replicas int
	// MaxAge bounds how long events are kept (0: forever). Rebuild can only replay what is kept.
	MaxAge time.Duration
	// DuplicateWindow is how long an event ID is remembered for dedupe (0: 2 minutes).
	DuplicateWindow time.Duration
}

// Ledger appends events to the LEDGER stream.
type Ledger struct {
	js jetstream.JetStream
	// async publishes AppendBatch's events: a context of its own on js's connection, whose pending
	// acks time out after publishAttempt, so an ack that never comes (the leader left) is dropped
	// from its table instead of kept forever.
	async jetstream.JetStream
}

// OpenLedger creates the LEDGER stream, or updates its configuration to opts.
func OpenLedger(ctx context.Context, js jetstream.JetStream, opts LedgerOptions) (*Ledger, error) {
	if opts.Replicas <= 0 {
		opts.Replicas = 1
	}
	if opts.DuplicateWindow <= 0 {
		opts.DuplicateWindow = 2 * time.Minute
	}
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        LedgerStream,
		Description: "crispy ledger: usage, audit and session/document metadata events per tenant",
		Subjects:    []string{"ledger.*.*"},
		Storage:     jetstream.FileStorage,
		Replicas:    opts.Replicas,
		MaxAge:      opts.MaxAge,
		Duplicates:  opts.DuplicateWindow,
		DenyDelete:  true,
	})
	if err != nil {
		return nil, fmt.Errorf("store: open ledger stream: %w", err)
	}
	return newLedger(js)
}

// newLedger returns a Ledger on js, whose LEDGER stream exists.
func newLedger(js jetstream.JetStream) (*Ledger, error) {
	async, err := jetstream.New(js.Conn(), jetstream.WithPublishAsyncTimeout(publishAttempt))
	if err != nil {
		return nil, fmt.Errorf("store: ledger: async publisher: %w", err)
	}
	return &Ledger{js: js, async: async}, nil
}

// Append records ev durably. An empty ID gets a fresh UUID (then a retry is a new event: callers
// that retry set the ID themselves); a zero Time becomes now.
func (l *Ledger) Append(ctx context.Context, ev Event) error {
	ev, subject, data, err := encodeEvent(ev)
	if err != nil {
		return err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultAppendTimeout)
		defer cancel()
	}
	err = Retry{Attempt: publishAttempt}.Do(ctx, func(ctx context.Context) error {
		_, err := l.js.Publish(ctx, subject, data, jetstream.WithMsgID(ev.ID), jetstream.WithExpectStream(LedgerStream))
		return err
	})
	if err != nil {
		return fmt.Errorf("store: append %s event %s: %w", ev.Kind, ev.ID, err)
	}
	return nil
}

// encodeEvent validates ev, fills its ID and Time when unset, and returns it with its subject and
// JSON encoding.
func encodeEvent(ev Event) (Event, string, []byte, error) {
	if err := ValidateTenantID(ev.TenantID); err != nil {
		return ev, "", nil, fmt.Errorf("store: append: %w: %w", ErrInvalidEvent, err)
	}
	if !kindRe.MatchString(ev.Kind) {
		return ev, "", nil, fmt.Errorf("store: append: %w: kind %q (want ^[a-z0-9_]{1,64}$)", ErrInvalidEvent, ev.Kind)
	}
	if ev.ID == "" {
		ev.ID = NewEventID()
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	ev.Time = ev.Time.UTC()
	data, err := json.Marshal(ev)
	if err != nil {
		return ev, "", nil, fmt.Errorf("store: append: %w: %w", ErrInvalidEvent, err)
	}
	return ev, "ledger." + ev.TenantID + "." + ev.Kind, data, nil
}

// AppendBatch records evs durably, as Append would one by one, but publishes them all at once and
// then waits for their acks: one round trip for the batch instead of one per event. It returns nil
// when every event is recorded, else one error per event (nil for those recorded).
//
// It keeps Append's guarantees: each attempt is bounded by publishAttempt, and the events not
// acknowledged in it (the stream's leader left, the stream is between leaders) are re-sent, with
// the same message IDs, after the same pause Retry takes, until ctx ends; an event re-sent after
// its first send was in fact stored is recognised by JetStream's duplicate detection and stored
// once. A failure that is not Transient (an invalid event, a refusal) is final for its event.
func (l *Ledger) AppendBatch(ctx context.Context, evs []Event) []error {
	errs := make([]error, len(evs))
	msgs := make([]*nats.Msg, len(evs))
	ids := make([]string, len(evs))
	var pending []int
	for i, ev := range evs {
		ev, subject, data, err := encodeEvent(ev)
		if err != nil {
			errs[i] = err
			continue
		}
		msgs[i], ids[i] = &nats.Msg{Subject: subject, Data: data}, ev.ID
		pending = append(pending, i)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultAppendTimeout)
		defer cancel()
	}
	if len(pending) > 0 {
		// Always: publishBatch leaves only the events worth re-sending pending, so "some are
		// pending" is the one failure returned, and it is always retried (until ctx ends).
		_ = Retry{Attempt: publishAttempt, Always: true}.Do(ctx, func(actx context.Context) error {
			if pending = l.publishBatch(actx, msgs, ids, pending, errs); len(pending) > 0 {
				return errBatchPending
			}
			return nil
		})
	}
	failed := false
	for i, err := range errs {
		if err != nil {
			errs[i], failed = fmt.Errorf("store: append %s event %s: %w", evs[i].Kind, ids[i], err), true
		}
	}
	if !failed {
		return nil
	}
	return errs
}

// errBatchPending: an attempt of AppendBatch left events to re-send.
var errBatchPending = errors.New("store: ledger batch: events not yet acknowledged")

// publishBatch is one attempt of AppendBatch: it publishes the pending events asynchronously and
// waits until ctx (the attempt's, publishAttempt) ends for their acks. It records each event's outcome in errs and
// returns the events to re-send.
func (l *Ledger) publishBatch(ctx context.Context, msgs []*nats.Msg, ids []string, pending []int, errs []error) []int {
	futures := make([]jetstream.PubAckFuture, len(pending))
	for k, i := range pending {
		// A fresh message per send: the publisher sets headers on it.
		m := &nats.Msg{Subject: msgs[i].Subject, Data: msgs[i].Data}
		f, err := l.async.PublishMsgAsync(m, jetstream.WithMsgID(ids[i]), jetstream.WithExpectStream(LedgerStream))
		if err != nil {
			errs[i] = err
			continue
		}
		futures[k] = f
	}
	var retry []int
	for k, i := range pending {
		if f := futures[k]; f != nil {
			errs[i] = awaitAck(ctx, f)
		}
		if Transient(errs[i]) {
			retry = append(retry, i)
		}
	}
	return retry
}

// awaitAck waits for f's outcome until ctx ends. An outcome already known wins over an ended ctx,
// so an event acknowledged in time is not re-sent for nothing.
func awaitAck(ctx context.Context, f jetstream.PubAckFuture) error {
	select {
	case <-f.Ok():
		return nil
	case err := <-f.Err():
		return err
	default:
	}
	select {
	case <-f.Ok():
		return nil
	case err := <-f.Err():
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// defaultAppendTimeout bounds an Append whose ctx has no deadline: it retries until the stream
// answers, which must not be forever.
const defaultAppendTimeout = 10 * time.Second

// publishAttempt bounds one try of a ledger publish.
//
// Why retry: when the LEDGER stream's leader leaves (a node restarts), a publish already sent to it
// is never acknowledged, and nats.go waits for the ack until the caller's deadline even though a new
// leader is elected within a second or two (seen in the soak: events dropped with "context deadline
// exceeded" on the surviving nodes). A short attempt re-sends to the new leader instead. Re-sending
// is safe: the event ID is the Nats-Msg-Id, which JetStream deduplicates within the stream's
// duplicate window.
const publishAttempt = time.Second
