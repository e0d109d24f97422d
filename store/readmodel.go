package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"
)

// ErrInvalidGroupBy is returned by Usage for a groupBy other than "day" or "model".
var ErrInvalidGroupBy = errors.New(`invalid groupBy (want "day" or "model")`)

// UsageRow is one group of a tenant's model calls.
type UsageRow struct {
	// Key is the group: a UTC day "2006-01-02" or a model ID.
	Key          string  `json:"key"`
	Requests     int64   `json:"requests"`
	TokensIn     int64   `json:"tokensIn"`
	TokensOut    int64   `json:"tokensOut"`
	Cost         float64 `json:"cost"`
	AvgLatencyMs float64 `json:"avgLatencyMs"`
	Cached       int64   `json:"cached"`
	Estimated    int64   `json:"estimated"`
	// Syntheses and Characters are the POST /tts calls and the characters they spoke (speech is
	// metered in characters, not tokens; Requests counts model calls only).
	Syntheses  int64 `json:"syntheses"`
	Characters int64 `json:"characters"`
}

// Usage sums the tenant's model calls and speech syntheses with from <= time < to, grouped by UTC
// day or by model, in ascending key order. A zero from or to leaves that side open. Backs GET /usage.
func (t *TenantDBs) Usage(ctx context.Context, tenantID string, from, to time.Time, groupBy string) ([]UsageRow, error) {
	day := `strftime('%Y-%m-%d', ts / 1000, 'unixepoch')`
	var key, speechKey string
	switch groupBy {
	case "day":
		key, speechKey = day, day
	case "model":
		key, speechKey = `model`, `subject` // a speech event's subject is its model
	default:
		return nil, fmt.Errorf("store: usage: %w: %q", ErrInvalidGroupBy, groupBy)
	}
	lo, hi := int64(math.MinInt64), int64(math.MaxInt64)
	if !from.IsZero() {
		lo = from.UnixMilli()
	}
	if !to.IsZero() {
		hi = to.UnixMilli()
	}
	db, err := t.DB(ctx, tenantID)
	if err != nil {
		return nil, fmt.Errorf("store: usage: %w", err)
	}
	// Speech events live in the audit table (kind "speech", characters in the detail): they carry
	// no tokens, and kept out of usage they do not skew the chat SLIs computed from it.
	rows, err := db.QueryContext(ctx, `SELECT k, sum(n), sum(tin), sum(tout), sum(cost),
		coalesce(CAST(sum(lat) AS REAL) / nullif(sum(n), 0), 0), sum(cached), sum(est), sum(syn), sum(chars)
		FROM (
			SELECT `+key+` AS k, count(*) AS n, sum(tokens_in) AS tin, sum(tokens_out) AS tout, sum(cost) AS cost,
				sum(latency_ms) AS lat, sum(cached) AS cached, sum(estimated) AS est, 0 AS syn, 0 AS chars
			FROM usage WHERE ts >= ? AND ts < ? GROUP BY k
			UNION ALL
			SELECT `+speechKey+` AS k, 0, 0, 0, 0, 0, 0, 0, count(*),
				coalesce(sum(json_extract(detail, '$.characters')), 0)
			FROM audit WHERE kind = ? AND ts >= ? AND ts < ? GROUP BY k
		) GROUP BY k ORDER BY k`, lo, hi, KindSpeech, lo, hi)
	if err != nil {
		return nil, fmt.Errorf("store: usage %s: %w", tenantID, err)
	}
	defer rows.Close()
	var out []UsageRow
	for rows.Next() {
		var r UsageRow
		if err := rows.Scan(&r.Key, &r.Requests, &r.TokensIn, &r.TokensOut, &r.Cost, &r.AvgLatencyMs, &r.Cached, &r.Estimated,
			&r.Syntheses, &r.Characters); err != nil {
			return nil, fmt.Errorf("store: usage %s: %w", tenantID, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: usage %s: %w", tenantID, err)
	}
	return out, nil
}

// Documents lists the tenant's document catalogue, newest first. Backs GET /documents.
func (t *TenantDBs) Documents(ctx context.Context, tenantID string) ([]Document, error) {
	db, err := t.DB(ctx, tenantID)
	if err != nil {
		return nil, fmt.Errorf("store: documents: %w", err)
	}
	rows, err := db.QueryContext(ctx, `SELECT doc_id, title, source, url, content_type, chunks, bytes, sha256, ingested_at
		FROM documents ORDER BY ingested_at DESC, doc_id`)
	if err != nil {
		return nil, fmt.Errorf("store: documents %s: %w", tenantID, err)
	}
	defer rows.Close()
	var out []Document
	for rows.Next() {
		var d Document
		var at int64
		if err := rows.Scan(&d.DocID, &d.Title, &d.Source, &d.URL, &d.ContentType, &d.Chunks, &d.Bytes, &d.SHA256, &at); err != nil {
			return nil, fmt.Errorf("store: documents %s: %w", tenantID, err)
		}
		d.IngestedAt = time.UnixMilli(at).UTC()
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: documents %s: %w", tenantID, err)
	}
	return out, nil
}

// Session is one row of a tenant's session metadata.
type Session struct {
	SessionID    string     `json:"sessionId"`
	CreatedAt    time.Time  `json:"createdAt"`
	LastActiveAt time.Time  `json:"lastActiveAt"`
	Messages     int        `json:"messages"`
	ClearedAt    *time.Time `json:"clearedAt,omitempty"`
}

// Session returns the tenant's metadata for one session, or an error wrapping ErrNotFound.
func (t *TenantDBs) Session(ctx context.Context, tenantID, sessionID string) (Session, error) {
	db, err := t.DB(ctx, tenantID)
	if err != nil {
		return Session{}, fmt.Errorf("store: session: %w", err)
	}
	var s Session
	var created, active int64
	var cleared *int64
	err = db.QueryRowContext(ctx, `SELECT session_id, created_at, last_active_at, messages, cleared_at FROM sessions
		WHERE session_id = ?`, sessionID).Scan(&s.SessionID, &created, &active, &s.Messages, &cleared)
	if errors.Is(err, sql.ErrNoRows) {
		return Session{}, fmt.Errorf("store: session %s/%q: %w", tenantID, sessionID, ErrNotFound)
	}
	if err != nil {
		return Session{}, fmt.Errorf("store: session %s/%q: %w", tenantID, sessionID, err)
	}
	s.CreatedAt = time.UnixMilli(created).UTC()
	s.LastActiveAt = time.UnixMilli(active).UTC()
	if cleared != nil {
		c := time.UnixMilli(*cleared).UTC()
		s.ClearedAt = &c
	}
	return s, nil
}
