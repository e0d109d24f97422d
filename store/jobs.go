package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/crispy-enigma/crispy/config"
)

// Names of the JetStream resources behind background jobs (ingest batches).
const (
	JobsStream   = "INGEST_JOBS"    // work queue: one message per job, subject ingest.jobs.<tenant>
	JobsBucket   = "jobs"           // KV: job status keyed <tenant>.<jobId>
	PayloadStore = "INGEST_PAYLOAD" // object store: the job's input, named <tenant>/<jobId>
)

// JobQueueOptions configure OpenJobQueue.
type JobQueueOptions struct {
	// Replicas is the JetStream replica count (min(3, servers) in a cluster); 0 means 1.
	Replicas int
	// Retention bounds how long job statuses and unprocessed payloads are kept; 0 means 7 days.
	Retention time.Duration
	// AckWait is how long a worker may go without reporting progress before its job is handed to
	// another worker; 0 means 5 minutes.
	AckWait time.Duration
}

// JobQueue is the JetStream side of background jobs: a work queue that hands each job to exactly
// one worker cluster-wide, the jobs' payloads, and their status. Why the payload goes to the object
// store and not into the work-queue message: a payload may be as large as the upload limit (32 MiB),
// far above NATS's 1 MiB default message size; the object store chunks it, and the queue message
// stays a few bytes ({tenant, jobId, traceId}).
type JobQueue struct {
	js       jetstream.JetStream
	stream   jetstream.Stream
	payloads jetstream.ObjectStore
	status   *TenantKV
	ackWait  time.Duration
}

// jobMessage is the work-queue message.
type jobMessage struct {
	Tenant  string `json:"tenant"`
	JobID   string `json:"jobId"`
	TraceID string `json:"traceId,omitempty"`
}

// OpenJobQueue creates (or updates) the work-queue stream, the status bucket and the payload
// object store.
func OpenJobQueue(ctx context.Context, js jetstream.JetStream, opts JobQueueOptions) (*JobQueue, error) {
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
		Name:        JobsStream,
		Description: "crispy ingest jobs (work queue; payloads in the " + PayloadStore + " object store)",
		Subjects:    []string{"ingest.jobs.>"},
		Retention:   jetstream.WorkQueuePolicy,
		MaxAge:      opts.Retention,
		MaxMsgSize:  4096,
		Replicas:    opts.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("store: job queue: stream: %w", err)
	}
	objs, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket: PayloadStore, Description: "crispy ingest job payloads", TTL: opts.Retention, Replicas: opts.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("store: job queue: payload store: %w", err)
	}
	kv, err := OpenTenantKV(ctx, js, JobsBucket, KVOptions{Replicas: opts.Replicas, MaxAge: opts.Retention})
	if err != nil {
		return nil, fmt.Errorf("store: job queue: status bucket: %w", err)
	}
	return &JobQueue{js: js, stream: st, payloads: objs, status: kv, ackWait: opts.AckWait}, nil
}

func payloadName(tenant, jobID string) string { return tenant + "/" + jobID }

// Submit stores the job's payload and first status, then queues it.
func (q *JobQueue) Submit(ctx context.Context, tenant, jobID, trace string, payload, status []byte) error {
	if _, err := q.payloads.Put(ctx, jetstream.ObjectMeta{Name: payloadName(tenant, jobID)}, bytes.NewReader(payload)); err != nil {
		return fmt.Errorf("store: job %s: payload: %w", jobID, err)
	}
	if err := q.PutStatus(ctx, tenant, jobID, status); err != nil {
		return err
	}
	msg, _ := json.Marshal(jobMessage{Tenant: tenant, JobID: jobID, TraceID: trace})
	if _, err := q.js.Publish(ctx, "ingest.jobs."+tenant, msg, jetstream.WithMsgID(jobID)); err != nil {
		return fmt.Errorf("store: job %s: queue: %w", jobID, err)
	}
	return nil
}

// PutStatus writes the job's status.
func (q *JobQueue) PutStatus(ctx context.Context, tenant, jobID string, status []byte) error {
	if err := q.status.Put(ctx, tenant, jobID, status, 0); err != nil {
		return fmt.Errorf("store: job %s: status: %w", jobID, err)
	}
	return nil
}

// Status reads the tenant's job status, or an error wrapping ErrNotFound (also for another
// tenant's job ID: the key is scoped by tenant).
func (q *JobQueue) Status(ctx context.Context, tenant, jobID string) ([]byte, error) {
	return q.status.Get(ctx, tenant, jobID)
}

// Payload reads the job's payload, or an error wrapping ErrNotFound when it expired or is gone.
func (q *JobQueue) Payload(ctx context.Context, tenant, jobID string) ([]byte, error) {
	obj, err := q.payloads.Get(ctx, payloadName(tenant, jobID))
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, fmt.Errorf("store: job %s payload: %w", jobID, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	return io.ReadAll(obj)
}

// DeletePayload removes the payload of a finished job.
func (q *JobQueue) DeletePayload(ctx context.Context, tenant, jobID string) error {
	return q.payloads.Delete(ctx, payloadName(tenant, jobID))
}

// Job is one delivery of a queued job to a worker. Exactly one of Done, Drop and Retry ends it;
// a delivery that none ends (the worker stopped) is handed to a worker again after AckWait.
type Job struct {
	Tenant  string
	JobID   string
	TraceID string
	msg     jetstream.Msg
}

// Done acknowledges the job: it is never delivered again.
func (j Job) Done(ctx context.Context) error { return j.msg.DoubleAck(ctx) }

// Drop ends the job for good without success (it cannot succeed on any worker).
func (j Job) Drop() { _ = j.msg.Term() }

// Retry hands the job back, to be delivered again after delay.
func (j Job) Retry(delay time.Duration) { _ = j.msg.NakWithDelay(delay) }

// Progress tells the queue the job is alive, resetting AckWait.
func (j Job) Progress() { _ = j.msg.InProgress() }

// Consume hands this node's share of the queued jobs to handle, one at a time, until the returned
// stop is called; stop cancels the job in progress and waits for handle to return. Every node may
// consume: the work queue hands each job to exactly one of them. Malformed messages are dropped.
func (q *JobQueue) Consume(ctx context.Context, handle func(ctx context.Context, j Job)) (stop func(), err error) {
	cons, err := q.stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: "ingest-worker", AckPolicy: jetstream.AckExplicitPolicy, AckWait: q.ackWait, MaxDeliver: 5,
		MaxAckPending: 64,
	})
	if err != nil {
		return nil, fmt.Errorf("store: job queue: consumer: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(1))
	if err != nil {
		return nil, fmt.Errorf("store: job queue: subscribe: %w", err)
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
			var m jobMessage
			if err := json.Unmarshal(msg.Data(), &m); err != nil || !config.ValidTenantID(m.Tenant) || !ValidJobID(m.JobID) {
				_ = msg.Term()
				continue
			}
			handle(wctx, Job{Tenant: m.Tenant, JobID: m.JobID, TraceID: m.TraceID, msg: msg})
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

// ValidJobID reports whether a job ID can be a KV key and an object name (UUIDs are).
func ValidJobID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r == '-' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'f')) {
			return false
		}
	}
	return true
}
