-- The per-tenant read model of the LEDGER stream (docs/architecture.md).
-- Times are Unix milliseconds (UTC), so range scans on the ts indexes are integer comparisons.
-- No column holds a raw prompt or a model's answer: usage and audit carry counts, ids and outcomes.

-- Every projected ledger event, by ID: the projector inserts here first in the same transaction as
-- its effects, so a redelivered event changes nothing (counters such as sessions.messages included).
CREATE TABLE ledger_events (
	event_id   TEXT    PRIMARY KEY,
	kind       TEXT    NOT NULL,
	ts         INTEGER NOT NULL,
	stream_seq INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE usage (
	event_id   TEXT    NOT NULL UNIQUE,
	ts         INTEGER NOT NULL,
	trace_id   TEXT    NOT NULL DEFAULT '',
	session_id TEXT    NOT NULL DEFAULT '',
	user_id    TEXT    NOT NULL DEFAULT '',
	model      TEXT    NOT NULL DEFAULT '',
	provider   TEXT    NOT NULL DEFAULT '',
	tokens_in  INTEGER NOT NULL DEFAULT 0,
	tokens_out INTEGER NOT NULL DEFAULT 0,
	estimated  INTEGER NOT NULL DEFAULT 0,
	latency_ms INTEGER NOT NULL DEFAULT 0,
	cost       REAL    NOT NULL DEFAULT 0,
	outcome    TEXT    NOT NULL DEFAULT '',
	cached     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX usage_ts ON usage (ts);
CREATE INDEX usage_model_ts ON usage (model, ts);

CREATE TABLE audit (
	event_id    TEXT    NOT NULL UNIQUE,
	ts          INTEGER NOT NULL,
	kind        TEXT    NOT NULL,
	trace_id    TEXT    NOT NULL DEFAULT '',
	user_id     TEXT    NOT NULL DEFAULT '',
	subject     TEXT    NOT NULL DEFAULT '',
	detail      TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(detail)),
	success     INTEGER NOT NULL DEFAULT 1,
	error_code  TEXT    NOT NULL DEFAULT '',
	duration_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX audit_ts ON audit (ts);
CREATE INDEX audit_kind_ts ON audit (kind, ts);

CREATE TABLE sessions (
	session_id     TEXT    PRIMARY KEY,
	created_at     INTEGER NOT NULL,
	last_active_at INTEGER NOT NULL,
	messages       INTEGER NOT NULL DEFAULT 0,
	cleared_at     INTEGER
);
CREATE INDEX sessions_last_active_at ON sessions (last_active_at);

CREATE TABLE documents (
	doc_id       TEXT    PRIMARY KEY,
	title        TEXT    NOT NULL DEFAULT '',
	source       TEXT    NOT NULL DEFAULT '',
	url          TEXT    NOT NULL DEFAULT '',
	content_type TEXT    NOT NULL DEFAULT '',
	chunks       INTEGER NOT NULL DEFAULT 0,
	bytes        INTEGER NOT NULL DEFAULT 0,
	sha256       TEXT    NOT NULL DEFAULT '',
	ingested_at  INTEGER NOT NULL
);
CREATE INDEX documents_ingested_at ON documents (ingested_at);
