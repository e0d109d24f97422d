package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/crispy-enigma/crispy/store"
)

// Job states of GET /ingest/jobs/:id.
const (
	JobQueued  = "queued"
	JobRunning = "running"
	JobDone    = "done"
	JobFailed  = "failed"
)

// Names of the JetStream resources behind ingest jobs.
const (
	IngestJobsStream   = "INGEST_JOBS"    // work queue: one message per job, subject ingest.jobs.<tenant>
	IngestJobsBucket   = "jobs"           // KV: job status keyed <tenant>.<jobId>
	IngestPayloadStore = "INGEST_PAYLOAD" // object store: the job's documents, named <tenant>/<jobId>
)

// JobStatus is GET /ingest/jobs/:id's data. Done counts the documents processed so far (ingested
// or failed), Failed how many of those failed; Results is there once the job has finished.
type JobStatus struct {
	JobID     string             `json:"jobId"`
	Status    string             `json:"status"`
	Total     int                `json:"total"`
	Done      int                `json:"done"`
	Succeeded int                `json:"succeeded"`
	Failed    int                `json:"failed"`
	Error     string             `json:"error,omitempty"`
	Results   []IngestItemResult `json:"results,omitempty"`
	CreatedAt time.Time          `json:"createdAt"`
	UpdatedAt time.Time          `json:"updatedAt"`
}

// IngestJobsOptions configure OpenIngestJobs.
type IngestJobsOptions struct {
	// Replicas is the JetStream replica count (min(3, servers) in a cluster); 0 means 1.
	Replicas int
	// Retention bounds how long job statuses and unprocessed payloads are kept; 0 means 7 days.
	Retention time.Duration
	// AckWait is how long a worker may go without reporting progress before its job is handed to
	// another worker (it reports after every document); 0 means 5 minutes.
	AckWait time.Duration
}

// IngestJobs is the queue of large ingest batches. Why the payload goes to the object store and
// not into the work-queue message: a batch may be as large as the upload limit (32 MiB), far above
// NATS's 1 MiB default message size; the object store chunks it, and the queue message stays a
// few bytes ({tenant, jobId, traceId}), so the stream never hits a message-size limit.
type IngestJobs struct {
	js       jetstream.JetStream
	stream   jetstream.Stream
	payloads jetstream.ObjectStore
	status   *store.TenantKV
	ackWait  time.Duration
	now      func() time.Time
}

// jobMessage is the work-queue message.
type jobMessage struct {
	Tenant  string `json:"tenant"`
	JobID   string `json:"jobId"`
	TraceID string `json:"traceId,omitempty"`
}

// OpenIngestJobs creates (or updates) the INGEST_JOBS work-queue stream, the jobs KV bucket and the
// payload object store.
func OpenIngestJobs(ctx context.Context, js jetstream.JetStream, opts IngestJobsOptions) (*IngestJobs, error) {
	if opts.Replicas <= 0 {
		opts.Replicas = 1
	}
	if opts.Retention <= 0 {
		opts.Retention = 7 * 24 * time.Hour
	}
	if opts.AckWait <= 0 {
		opts.AckWait = 5 * time.Minute
	}
	st, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        IngestJobsStream,
		Description: "crispy ingest jobs (work queue; payloads in the " + IngestPayloadStore + " object store)",
		Subjects:    []string{"ingest.jobs.>"},
		Retention:   jetstream.WorkQueuePolicy,
		MaxAge:      opts.Retention,
		MaxMsgSize:  4096,
		Replicas:    opts.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("ingest jobs: stream: %w", err)
	}
	objs, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket: IngestPayloadStore, Description: "crispy ingest job payloads", TTL: opts.Retention, Replicas: opts.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("ingest jobs: payload store: %w", err)
	}
	kv, err := store.OpenTenantKV(ctx, js, IngestJobsBucket, store.KVOptions{Replicas: opts.Replicas, MaxAge: opts.Retention})
	if err != nil {
		return nil, fmt.Errorf("ingest jobs: status bucket: %w", err)
	}
	return &IngestJobs{js: js, stream: st, payloads: objs, status: kv, ackWait: opts.AckWait, now: time.Now}, nil
}

func payloadName(tenant, jobID string) string { return tenant + "/" + jobID }

// Submit stores the documents and queues the job; it returns the job ID.
func (j *IngestJobs) Submit(ctx context.Context, tenant, trace string, docs []pendingDoc) (string, error) {
	id := uuid.NewString()
	payload, err := json.Marshal(docs)
	if err != nil {
		return "", fmt.Errorf("ingest job: encode: %w", err)
	}
	if _, err := j.payloads.Put(ctx, jetstream.ObjectMeta{Name: payloadName(tenant, id)}, bytes.NewReader(payload)); err != nil {
		return "", fmt.Errorf("ingest job: store payload: %w", err)
	}
	now := j.now().UTC()
	if err := j.put(ctx, tenant, JobStatus{JobID: id, Status: JobQueued, Total: len(docs), CreatedAt: now, UpdatedAt: now}); err != nil {
		return "", err
	}
	msg, _ := json.Marshal(jobMessage{Tenant: tenant, JobID: id, TraceID: trace})
	if _, err := j.js.Publish(ctx, "ingest.jobs."+tenant, msg, jetstream.WithMsgID(id)); err != nil {
		return "", fmt.Errorf("ingest job: queue: %w", err)
	}
	return id, nil
}

// Status returns the tenant's job, or an error wrapping store.ErrNotFound (also for another
// tenant's job ID: the key is scoped by tenant).
func (j *IngestJobs) Status(ctx context.Context, tenant, jobID string) (JobStatus, error) {
	b, err := j.status.Get(ctx, tenant, jobID)
	if err != nil {
		return JobStatus{}, err
	}
	var st JobStatus
	if err := json.Unmarshal(b, &st); err != nil {
		return JobStatus{}, fmt.Errorf("ingest job %s: decode status: %w", jobID, err)
	}
	return st, nil
}

func (j *IngestJobs) put(ctx context.Context, tenant string, st JobStatus) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("ingest job: encode status: %w", err)
	}
	if err := j.status.Put(ctx, tenant, st.JobID, b, 0); err != nil {
		return fmt.Errorf("ingest job %s: status: %w", st.JobID, err)
	}
	return nil
}

func (j *IngestJobs) loadPayload(ctx context.Context, tenant, jobID string) ([]pendingDoc, error) {
	obj, err := j.payloads.Get(ctx, payloadName(tenant, jobID))
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		return nil, err
	}
	var docs []pendingDoc
	if err := json.Unmarshal(b, &docs); err != nil {
		return nil, fmt.Errorf("decode payload: %w", err)
	}
	return docs, nil
}

func (s *Server) getIngestJob(c echo.Context) error {
	id := c.Param("id")
	if s.rag.Jobs == nil || !jobKeyOK(id) {
		return NewError(http.StatusNotFound, CodeNotFound, "no such ingest job")
	}
	st, err := s.rag.Jobs.Status(c.Request().Context(), tenantOf(c).TenantID, id)
	if errors.Is(err, store.ErrNotFound) {
		return NewError(http.StatusNotFound, CodeNotFound, "no such ingest job")
	}
	if err != nil {
		return Wrap(http.StatusInternalServerError, CodeInternal, "internal error", err)
	}
	return ok(c, http.StatusOK, st)
}

// StartIngestWorker consumes INGEST_JOBS on this node, one job at a time, until the returned stop
// is called; stop cancels the job in progress (it is redelivered to a worker later, and re-ingesting
// replaces, so a restarted job lands the same documents) and waits for the worker to exit. Every
// node may run one: the work queue hands each job to exactly one of them.
func (s *Server) StartIngestWorker(ctx context.Context) (stop func(), err error) {
	if s.rag == nil || s.rag.Jobs == nil {
		return func() {}, nil
	}
	j := s.rag.Jobs
	cons, err := j.stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: "ingest-worker", AckPolicy: jetstream.AckExplicitPolicy, AckWait: j.ackWait, MaxDeliver: 5,
		MaxAckPending: 64,
	})
	if err != nil {
		return nil, fmt.Errorf("ingest worker: consumer: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(1))
	if err != nil {
		return nil, fmt.Errorf("ingest worker: subscribe: %w", err)
	}
	wctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			msg, err := it.Next()
			if err != nil {
				if errors.Is(err, jetstream.ErrMsgIteratorClosed) || wctx.Err() != nil {
					return
				}
				continue // a missed heartbeat or a reconnect: keep pulling
			}
			s.runIngestJob(wctx, msg)
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			it.Stop()
			wg.Wait()
		})
	}, nil
}

// runIngestJob processes one job message: documents one by one, progress after each.
func (s *Server) runIngestJob(ctx context.Context, msg jetstream.Msg) {
	j := s.rag.Jobs
	var m jobMessage
	if err := json.Unmarshal(msg.Data(), &m); err != nil || store.ValidateTenantID(m.Tenant) != nil || !jobKeyOK(m.JobID) {
		s.log.Warn().Msg("ingest worker: dropping a malformed job message")
		_ = msg.Term()
		return
	}
	log := s.log.With().Str("tenantId", m.Tenant).Str("traceId", m.TraceID).Str("jobId", m.JobID).Logger()
	st, err := j.Status(ctx, m.Tenant, m.JobID)
	if err != nil {
		log.Warn().Err(err).Msg("ingest worker: job status unreadable; will retry")
		_ = msg.NakWithDelay(time.Second)
		return
	}
	if st.Status == JobDone || st.Status == JobFailed {
		_ = msg.Ack() // a redelivery of a finished job (its ack was lost)
		return
	}
	fail := func(reason string) {
		st.Status, st.Error, st.UpdatedAt = JobFailed, reason, j.now().UTC()
		if err := j.put(ctx, m.Tenant, st); err != nil {
			log.Warn().Err(err).Msg("ingest worker: status")
		}
		_ = msg.Term()
	}
	t, found := s.tenants.Load().ByID(m.Tenant)
	if !found {
		fail("tenant no longer configured")
		return
	}
	docs, err := j.loadPayload(ctx, m.Tenant, m.JobID)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		fail("job payload expired or missing")
		return
	}
	if err != nil {
		log.Warn().Err(err).Msg("ingest worker: payload unreadable; will retry")
		_ = msg.NakWithDelay(time.Second)
		return
	}
	// A redelivered job starts over: re-ingesting replaces, so the outcome is the same.
	st.Status, st.Total, st.Done, st.Succeeded, st.Failed, st.Results = JobRunning, len(docs), 0, 0, 0, nil
	st.UpdatedAt = j.now().UTC()
	if err := j.put(ctx, m.Tenant, st); err != nil {
		log.Warn().Err(err).Msg("ingest worker: status")
	}
	results := make([]IngestItemResult, 0, len(docs))
	for _, d := range docs {
		if ctx.Err() != nil {
			return // stopping: no ack, the job is redelivered
		}
		r := s.ingestPending(ctx, t, d, m.TraceID)
		if ctx.Err() != nil {
			return
		}
		results = append(results, r)
		st.Done++
		if r.Status == "ingested" {
			st.Succeeded++
		} else {
			st.Failed++
		}
		st.UpdatedAt = j.now().UTC()
		if st.Done < len(docs) {
			if err := j.put(ctx, m.Tenant, st); err != nil {
				log.Warn().Err(err).Msg("ingest worker: progress")
			}
		}
		_ = msg.InProgress() // tell JetStream the job is alive, resetting AckWait
	}
	st.Status, st.Results, st.UpdatedAt = JobDone, results, j.now().UTC()
	if err := j.put(ctx, m.Tenant, st); err != nil {
		log.Warn().Err(err).Msg("ingest worker: final status; will retry")
		_ = msg.NakWithDelay(time.Second)
		return
	}
	if err := j.payloads.Delete(ctx, payloadName(m.Tenant, m.JobID)); err != nil {
		log.Debug().Err(err).Msg("ingest worker: payload delete")
	}
	if err := msg.DoubleAck(ctx); err != nil {
		log.Debug().Err(err).Msg("ingest worker: ack")
	}
}
