package rag

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/crispy-enigma/crispy/store"
	"github.com/crispy-enigma/crispy/wire"
)

// PendingDoc is a document ready to ingest, or the reason it cannot be (Err, decided when the
// request was read). It is what a job's payload holds.
type PendingDoc struct {
	Doc Document        `json:"doc"`
	Err *wire.ErrorBody `json:"err,omitempty"`
}

func (p PendingDoc) size() int64 { return int64(len(p.Doc.Data) + len(p.Doc.Text)) }

// Failure is an ingest or search error as a client sees it: a stable code and a message that
// names the document and holds no internals.
type Failure struct {
	Code    string
	Message string
}

// Classify maps an error of Ingest, Delete or Search to its code and client-safe message.
func Classify(err error, docID string) Failure {
	name := ""
	if docID != "" {
		name = fmt.Sprintf("document %q: ", docID)
	}
	switch {
	case errors.Is(err, ErrEmptyDocument):
		return Failure{wire.CodeInvalidRequest, name + "text must not be empty or whitespace only"}
	case errors.Is(err, ErrUnsupportedContentType), errors.Is(err, ErrCorruptDocument),
		errors.Is(err, ErrInvalidDocument), errors.Is(err, ErrInvalidChunking),
		errors.Is(err, ErrMetadataTooLarge):
		// These messages come from our parsers and validators and say what is wrong with the
		// document (its type, "corrupt PDF"), never internals.
		return Failure{wire.CodeInvalidRequest, name + clientMessage(err)}
	case errors.Is(err, ErrQuotaExceeded):
		return Failure{wire.CodeQuotaExceeded, name + clientMessage(err)}
	case errors.Is(err, ErrEmptyQuery):
		return Failure{wire.CodeInvalidRequest, "query: must contain at least one non-space character"}
	case errors.Is(err, ErrTopKTooLarge):
		return Failure{wire.CodeInvalidRequest, fmt.Sprintf("topK: must be between 1 and %d", MaxTopK)}
	case errors.Is(err, ErrDocumentNotFound):
		return Failure{wire.CodeNotFound, "no such document"}
	case errors.Is(err, ErrEmbedding):
		return Failure{wire.CodeAIError, name + "embedding model failed"}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return Failure{wire.CodeUnavailable, name + "request cancelled or timed out"}
	}
	return Failure{wire.CodeInternal, name + "internal error"}
}

// clientMessage strips the "ingest <docId>: " style prefixes the ingester adds, keeping its
// description.
func clientMessage(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "+ErrUnsupportedContentType.Error()); i >= 0 {
		return msg[i+2:]
	}
	for _, sentinel := range []error{ErrCorruptDocument, ErrInvalidDocument, ErrInvalidChunking, ErrMetadataTooLarge, ErrQuotaExceeded} {
		if i := strings.Index(msg, sentinel.Error()); i >= 0 {
			return msg[i:]
		}
	}
	return msg
}

// ErrJobNotFound is returned for a job ID the tenant does not have.
var ErrJobNotFound = errors.New("no such ingest job")

// submitJob stores the documents and queues the job; it returns the job ID.
func (s *Service) submitJob(ctx context.Context, tenant, trace string, docs []PendingDoc) (string, error) {
	id := uuid.NewString()
	payload, err := json.Marshal(docs)
	if err != nil {
		return "", fmt.Errorf("ingest job: encode: %w", err)
	}
	now := s.o.Now().UTC()
	status, err := json.Marshal(wire.JobStatus{JobID: id, Status: wire.JobQueued, Total: len(docs), CreatedAt: now, UpdatedAt: now})
	if err != nil {
		return "", fmt.Errorf("ingest job: encode status: %w", err)
	}
	if err := s.o.Jobs.Submit(ctx, tenant, id, trace, payload, status); err != nil {
		return "", fmt.Errorf("ingest job: %w", err)
	}
	return id, nil
}

// JobStatus returns the tenant's job, or ErrJobNotFound (also for another tenant's job ID: the
// key is scoped by tenant).
func (s *Service) JobStatus(ctx context.Context, tenant, jobID string) (wire.JobStatus, error) {
	if s.o.Jobs == nil || !store.ValidJobID(jobID) {
		return wire.JobStatus{}, ErrJobNotFound
	}
	b, err := s.o.Jobs.Status(ctx, tenant, jobID)
	if errors.Is(err, store.ErrNotFound) {
		return wire.JobStatus{}, ErrJobNotFound
	}
	if err != nil {
		return wire.JobStatus{}, err
	}
	var st wire.JobStatus
	if err := json.Unmarshal(b, &st); err != nil {
		return wire.JobStatus{}, fmt.Errorf("ingest job %s: decode status: %w", jobID, err)
	}
	if st.Status == wire.JobRunning && st.LeaseUntil != nil && s.o.Now().After(*st.LeaseUntil) {
		st.Status = wire.JobInterrupted // its worker stopped renewing the lease: it is gone
	}
	return st, nil
}

func (s *Service) putStatus(ctx context.Context, tenant string, st wire.JobStatus) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("ingest job: encode status: %w", err)
	}
	return s.o.Jobs.PutStatus(ctx, tenant, st.JobID, b)
}

// StartWorker runs this node's ingest worker until the returned stop is called; stop cancels the
// job in progress (it is redelivered to a worker later, and re-ingesting replaces, so a restarted
// job lands the same documents) and waits for the worker to exit. Without a job queue it does
// nothing.
func (s *Service) StartWorker(ctx context.Context) (stop func(), err error) {
	if s.o.Jobs == nil {
		return func() {}, nil
	}
	return s.o.Jobs.Consume(ctx, s.runJob)
}

// runJob processes one job: documents one by one, progress after each.
func (s *Service) runJob(ctx context.Context, j store.Job) {
	log := s.o.Logger.With().Str("tenantId", j.Tenant).Str("traceId", j.TraceID).Str("jobId", j.JobID).Logger()
	st, err := s.JobStatus(ctx, j.Tenant, j.JobID)
	if err != nil {
		log.Warn().Err(err).Msg("ingest worker: job status unreadable; will retry")
		j.Retry(time.Second)
		return
	}
	if st.Status == wire.JobDone || st.Status == wire.JobFailed {
		_ = j.Done(ctx) // a redelivery of a finished job (its ack was lost)
		return
	}
	if st.Kind == wire.JobKindReindex {
		s.runReindex(ctx, j, st, log) // reindex_job.go
		return
	}
	fail := func(reason string) {
		st.Status, st.Error, st.UpdatedAt = wire.JobFailed, reason, s.o.Now().UTC()
		if err := s.putStatus(ctx, j.Tenant, st); err != nil {
			log.Warn().Err(err).Msg("ingest worker: status")
		}
		j.Drop()
	}
	t, found := s.o.Tenants.ByID(j.Tenant)
	if !found {
		fail("tenant no longer configured")
		return
	}
	raw, err := s.o.Jobs.Payload(ctx, j.Tenant, j.JobID)
	if errors.Is(err, store.ErrNotFound) {
		fail("job payload expired or missing")
		return
	}
	var docs []PendingDoc
	if err == nil {
		if jerr := json.Unmarshal(raw, &docs); jerr != nil {
			err = fmt.Errorf("decode payload: %w", jerr)
		}
	}
	if err != nil {
		log.Warn().Err(err).Msg("ingest worker: payload unreadable; will retry")
		j.Retry(time.Second)
		return
	}
	// A redelivered job starts over: re-ingesting replaces, so the outcome is the same. From here
	// on the status carries a lease the heartbeat renews: if this process dies, a status read
	// says "interrupted" within JobLease instead of "running" until the queue's AckWait passes.
	st.Status, st.Total, st.Done, st.Succeeded, st.Failed, st.Results = wire.JobRunning, len(docs), 0, 0, 0, nil
	ls := &leasedStatus{s: s, tenant: j.Tenant, st: st}
	if err := ls.put(ctx, nil); err != nil {
		log.Warn().Err(err).Msg("ingest worker: status")
	}
	stopBeat := ls.heartbeat(ctx, j, log)
	defer stopBeat()
	lims, err := s.newBatchLimits(ctx, t)
	if err != nil {
		log.Warn().Err(err).Msg("ingest worker: quota; will retry")
		stopBeat()
		j.Retry(time.Second)
		return
	}
	results := make([]wire.IngestItemResult, 0, len(docs))
	for i, d := range docs {
		if ctx.Err() != nil {
			return // stopping: not acknowledged, the job is redelivered
		}
		d = lims.apply(d)
		r := s.IngestItem(ctx, t, d, j.TraceID)
		if ctx.Err() != nil {
			return
		}
		lims.landed(d, r)
		results = append(results, r)
		err := ls.put(ctx, func(st *wire.JobStatus) bool {
			st.Done++
			if r.Status == wire.DocIngested {
				st.Succeeded++
			} else {
				st.Failed++
			}
			return i+1 < len(docs) // the last document's progress is the final status
		})
		if err != nil {
			log.Warn().Err(err).Msg("ingest worker: progress")
		}
		j.Progress()
	}
	stopBeat()
	ls.mu.Lock()
	st = ls.st
	ls.mu.Unlock()
	st.Results, st.LeaseUntil = results, nil
	s.finishJob(ctx, j, st, log)
}

// finishJob records a job done, drops its payload and acknowledges it; when the status cannot be
// written the job is retried (a redelivery of a done job is acknowledged at once).
func (s *Service) finishJob(ctx context.Context, j store.Job, st wire.JobStatus, log zerolog.Logger) {
	st.Status, st.UpdatedAt = wire.JobDone, s.o.Now().UTC()
	if err := s.putStatus(ctx, j.Tenant, st); err != nil {
		log.Warn().Err(err).Msg("job worker: final status; will retry")
		j.Retry(time.Second)
		return
	}
	if err := s.o.Jobs.DeletePayload(ctx, j.Tenant, j.JobID); err != nil {
		log.Debug().Err(err).Msg("job worker: payload delete")
	}
	if err := j.Done(ctx); err != nil {
		log.Debug().Err(err).Msg("job worker: ack")
	}
}

// leasedStatus is a running job's status, written by the worker's loop and by its heartbeat.
type leasedStatus struct {
	s      *Service
	tenant string
	mu     sync.Mutex
	st     wire.JobStatus
}

// put applies change (nil: none) and, unless change says not to, writes the status; a running
// job's lease is renewed with every write.
func (l *leasedStatus) put(ctx context.Context, change func(st *wire.JobStatus) (write bool)) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if change != nil && !change(&l.st) {
		return nil
	}
	now := l.s.o.Now().UTC()
	l.st.UpdatedAt = now
	if l.st.Status == wire.JobRunning {
		until := now.Add(l.s.o.JobLease)
		l.st.LeaseUntil = &until
	}
	return l.s.putStatus(ctx, l.tenant, l.st)
}

// heartbeat renews the lease (and tells the queue the job is alive) every third of JobLease until
// the returned stop is called; stop waits for a renewal in flight, and may be called again.
func (l *leasedStatus) heartbeat(ctx context.Context, j store.Job, log zerolog.Logger) (stop func()) {
	hctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(l.s.o.JobLease / 3)
		defer tick.Stop()
		for {
			select {
			case <-hctx.Done():
				return
			case <-tick.C:
				if err := l.put(hctx, nil); err != nil && hctx.Err() == nil {
					log.Warn().Err(err).Msg("ingest worker: lease renewal")
				}
				j.Progress()
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}
