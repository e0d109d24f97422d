// Package wire holds the request and response types that clients and the server share: the CLI
// (crispy ingest, crispy bench) decodes the server's answers with them, and the server encodes
// them. It imports nothing of the project, so a client never links the server.
package wire

import (
	"path/filepath"
	"strings"
	"time"
)

// Envelope is the JSON shape of every JSON response: ok, data or error, and the trace ID.
type Envelope struct {
	OK      bool       `json:"ok"`
	Data    any        `json:"data,omitempty"`
	Error   *ErrorBody `json:"error,omitempty"`
	TraceID string     `json:"traceId"`
}

// ErrorBody is an error's stable code and client-safe message.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Document outcomes of IngestItemResult.Status, and of a whole batch (IngestBatch.Status).
const (
	DocIngested = "ingested"
	DocFailed   = "failed"
	DocPartial  = "partial" // a batch only: some documents landed, some failed
)

// IngestItemResult is one document's outcome in a batch (and in a job's results): Status is
// "ingested" with Chunks/EmbeddingModelID/ContentType, or "failed" with Error naming the problem.
type IngestItemResult struct {
	DocID            string     `json:"docId"`
	Status           string     `json:"status"`
	Chunks           int        `json:"chunks,omitempty"`
	EmbeddingModelID string     `json:"embeddingModelId,omitempty"`
	ContentType      string     `json:"contentType,omitempty"`
	Error            *ErrorBody `json:"error,omitempty"`
}

// IngestBatch is the batch (and multipart) answer of POST /ingest: status "ingested" when every
// document landed, "partial" when some failed, "failed" when none landed.
type IngestBatch struct {
	Status    string             `json:"status"`
	Results   []IngestItemResult `json:"results"`
	Succeeded int                `json:"succeeded"`
	Failed    int                `json:"failed"`
}

// Summarize is the batch answer over results.
func Summarize(results []IngestItemResult) IngestBatch {
	out := IngestBatch{Results: results}
	for _, r := range results {
		if r.Status == DocIngested {
			out.Succeeded++
		} else {
			out.Failed++
		}
	}
	switch {
	case out.Failed == 0:
		out.Status = DocIngested
	case out.Succeeded == 0:
		out.Status = DocFailed
	default:
		out.Status = DocPartial
	}
	return out
}

// IngestJobAccepted is the 202 answer of POST /ingest for a batch large enough to be a job.
type IngestJobAccepted struct {
	JobID  string `json:"jobId"`
	Status string `json:"status"`
	Total  int    `json:"total"`
}

// Job states of GET /ingest/jobs/:id.
const (
	JobQueued  = "queued"
	JobRunning = "running"
	// JobInterrupted is a running job whose worker stopped renewing its lease (the node died or
	// stopped): the queue hands the job to a worker again, which starts it over.
	JobInterrupted = "interrupted"
	JobDone        = "done"
	JobFailed      = "failed"
)

// Job kinds of JobStatus.Kind.
const (
	JobKindIngest  = "ingest"
	JobKindReindex = "reindex"
)

// JobStatus is GET /ingest/jobs/:id's data. Done counts the documents processed so far (ingested
// or failed), Failed how many of those failed; Results is there once the job has finished. A
// re-embedding job (Kind "reindex") counts chunks instead, and reports its phase in Reindex.
type JobStatus struct {
	JobID     string             `json:"jobId"`
	Kind      string             `json:"kind,omitempty"` // "" is an ingest job
	Status    string             `json:"status"`
	Total     int                `json:"total"`
	Done      int                `json:"done"`
	Succeeded int                `json:"succeeded"`
	Failed    int                `json:"failed"`
	Error     string             `json:"error,omitempty"`
	Results   []IngestItemResult `json:"results,omitempty"`
	Reindex   *ReindexProgress   `json:"reindex,omitempty"`
	CreatedAt time.Time          `json:"createdAt"`
	UpdatedAt time.Time          `json:"updatedAt"`
	// LeaseUntil is how long the worker running the job holds it: it renews the lease every few
	// seconds, so a lease in the past means the worker is gone (the status reads "interrupted").
	LeaseUntil *time.Time `json:"leaseUntil,omitempty"`
}

// IndexRef names a vector index: the embedding model and the vectors' dimension.
type IndexRef struct {
	Model     string `json:"model"`
	Dimension int    `json:"dimension"`
}

// ReindexProgress is a re-embedding job's progress: chunks copied into the new index so far, the
// old index's total, and the phase ("queued", "copy", "reconcile", "done" or "failed").
type ReindexProgress struct {
	JobID  string   `json:"jobId"`
	From   IndexRef `json:"from"`
	To     IndexRef `json:"to"`
	Copied int      `json:"copied"`
	Total  int      `json:"total"`
	Phase  string   `json:"phase"`
	Error  string   `json:"error,omitempty"`
}

// TenantEmbeddings is GET /health's embeddings: the model the tenant configures, the model this
// node embeds it with (and why, when they differ), the index its searches read, and the
// re-embedding in progress, if any.
type TenantEmbeddings struct {
	Configured     string           `json:"configured"`
	EmbeddingModel string           `json:"embeddingModel"`
	FallbackReason string           `json:"fallbackReason,omitempty"`
	ActiveIndex    *IndexRef        `json:"activeIndex,omitempty"`
	Reindex        *ReindexProgress `json:"reindex,omitempty"`
}

// ReindexAccepted is the answer of the operator's POST /admin/reindex.
type ReindexAccepted struct {
	TenantID string `json:"tenantId"`
	JobID    string `json:"jobId"`
	// Status is "queued" for a new job, "running" when one was already under way (its ID), or
	// "current" when the tenant's active index is already its model's (JobID empty).
	Status string `json:"status"`
}

// DocIDFromFilename makes a docId from a file name (or a relative path): path separators become
// ".", any other character outside [A-Za-z0-9._:-] becomes "_", runs of dots collapse, and the
// result is cut to 128 characters. The server names multipart uploads with it and the CLI names
// the files it sends with it, so a file gets the same docId either way.
func DocIDFromFilename(name string) string {
	name = filepath.ToSlash(name)
	var b strings.Builder
	for _, r := range name {
		switch {
		case r == '/' || r == '\\':
			b.WriteByte('.')
		case r < 128 && (r == '.' || r == '_' || r == ':' || r == '-' ||
			(r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')):
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	id := b.String()
	for strings.Contains(id, "..") {
		id = strings.ReplaceAll(id, "..", ".")
	}
	id = strings.TrimLeft(id, ".:-_")
	if len(id) > 128 {
		id = id[len(id)-128:]
		id = strings.TrimLeft(id, ".:-_")
	}
	if id == "" {
		id = "document"
	}
	return id
}
