package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/google/uuid"
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

// Event is one ledger record, JSON-encoded on the stream. It carries counts, IDs and outcomes, never
// a raw prompt or answer: Detail is stored verbatim in the audit table, so callers put hashes and
// sizes there (e.g. the sha256 of tool params, as CONTRACT.md's tool audit asks), not content.
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
	return &Ledger{js: js}, nil
}

// Append records ev durably. An empty ID gets a fresh UUID (then a retry is a new event: callers
// that retry set the ID themselves); a zero Time becomes now.
func (l *Ledger) Append(ctx context.Context, ev Event) error {
	if err := ValidateTenantID(ev.TenantID); err != nil {
		return fmt.Errorf("store: append: %w: %w", ErrInvalidEvent, err)
	}
	if !kindRe.MatchString(ev.Kind) {
		return fmt.Errorf("store: append: %w: kind %q (want ^[a-z0-9_]{1,64}$)", ErrInvalidEvent, ev.Kind)
	}
	if ev.ID == "" {
		ev.ID = uuid.NewString()
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	ev.Time = ev.Time.UTC()
	data, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("store: append: %w: %w", ErrInvalidEvent, err)
	}
	subject := "ledger." + ev.TenantID + "." + ev.Kind
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
