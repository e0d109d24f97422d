package rag

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/observe"
	"github.com/crispy-enigma/crispy/store"
	"github.com/crispy-enigma/crispy/wire"
)

// Re-embedding job timing.
const (
	// reindexRecheck is how often a search of a tenant whose model changed looks at the job again
	// (one KV read), rather than on every search.
	reindexRecheck = 5 * time.Second
	// reindexRetryAfter is how long a failed job is left failed before a search starts another;
	// an operator's POST /admin/reindex starts one at once.
	reindexRetryAfter = 10 * time.Minute
)

// reindexWatch is this node's note of a tenant's re-embedding: when it last looked.
type reindexWatch struct {
	mu      sync.Mutex
	model   string
	checked time.Time
}

// reindexPayload is a re-embedding job's payload: the model it was started for (informational;
// the worker re-embeds with the model the tenant wants when it runs).
type reindexPayload struct {
	Model string `json:"model"`
}

// ensureReindex makes sure a re-embedding job is queued or running for a tenant whose active index
// is not its model's. It never fails the request that noticed: a failure is logged and retried
// after reindexRecheck.
func (s *Service) ensureReindex(ctx context.Context, t *config.TenantConfig, ts TenantSpace) {
	if s.o.Jobs == nil {
		return
	}
	v, _ := s.reindex.LoadOrStore(t.TenantID, &reindexWatch{})
	w := v.(*reindexWatch)
	w.mu.Lock()
	defer w.mu.Unlock()
	now := s.o.Now()
	if w.model == ts.Want.ID() && now.Sub(w.checked) < reindexRecheck {
		return
	}
	w.model, w.checked = ts.Want.ID(), now
	if _, err := s.startReindex(ctx, t, ts, false); err != nil {
		s.o.Logger.Warn().Err(err).Str("tenantId", t.TenantID).Msg("re-embedding job not started")
	}
}

// StartReindex starts re-embedding the tenant's documents with its model, unless a job is already
// queued or running (its ID is returned) or the active index is already the model's (status
// "current"). It is the operator's POST /admin/reindex; searches start the job on their own.
func (s *Service) StartReindex(ctx context.Context, tenantID string) (wire.ReindexAccepted, error) {
	t, ok := s.o.Tenants.ByID(tenantID)
	if !ok {
		return wire.ReindexAccepted{}, fmt.Errorf("%w: %q", ErrInvalidTenant, tenantID)
	}
	if s.spaces == nil {
		// One index and model for every tenant: it is always the tenant's model's.
		return wire.ReindexAccepted{TenantID: tenantID, Status: "current"}, nil
	}
	if s.o.Jobs == nil {
		return wire.ReindexAccepted{}, errors.New("re-embedding needs the job queue, which this service has not")
	}
	ts, err := s.spaces.Resolve(ctx, t, "reindex")
	if ts.Active.Model == "" {
		return wire.ReindexAccepted{}, err
	}
	if ts.Current() {
		return wire.ReindexAccepted{TenantID: tenantID, Status: "current"}, nil
	}
	return s.startReindex(ctx, t, ts, true)
}

// startReindex queues a job unless the tenant's latest one, for the same model, is queued or
// running, or (unless force) failed less than reindexRetryAfter ago.
func (s *Service) startReindex(ctx context.Context, t *config.TenantConfig, ts TenantSpace, force bool) (wire.ReindexAccepted, error) {
	actives, want := s.spaces.o.Actives, ts.Want.ID()
	rec, ok, err := actives.Job(ctx, t.TenantID)
	if err != nil {
		return wire.ReindexAccepted{}, err
	}
	if ok && rec.Model == want {
		st, err := s.JobStatus(ctx, t.TenantID, rec.JobID)
		switch {
		case err != nil && !errors.Is(err, ErrJobNotFound):
			return wire.ReindexAccepted{}, err
		case err != nil: // expired: start another
		case st.Status == wire.JobQueued || st.Status == wire.JobRunning:
			return wire.ReindexAccepted{TenantID: t.TenantID, JobID: rec.JobID, Status: wire.JobRunning}, nil
		case st.Status == wire.JobFailed && !force && s.o.Now().Sub(st.UpdatedAt) < reindexRetryAfter:
			return wire.ReindexAccepted{TenantID: t.TenantID, JobID: rec.JobID, Status: wire.JobFailed}, nil
		}
	}
	id := uuid.NewString()
	payload, err := json.Marshal(reindexPayload{Model: want})
	if err != nil {
		return wire.ReindexAccepted{}, fmt.Errorf("re-embedding job: encode: %w", err)
	}
	now := s.o.Now().UTC()
	st := wire.JobStatus{JobID: id, Kind: wire.JobKindReindex, Status: wire.JobQueued, CreatedAt: now, UpdatedAt: now,
		Reindex: &wire.ReindexProgress{JobID: id, From: indexRef(ts.Active), To: wire.IndexRef{Model: want, Dimension: ts.Want.Dimension()}, Phase: wire.JobQueued}}
	b, err := json.Marshal(st)
	if err != nil {
		return wire.ReindexAccepted{}, fmt.Errorf("re-embedding job: encode status: %w", err)
	}
	if err := s.o.Jobs.Submit(ctx, t.TenantID, id, observe.TraceID(ctx), payload, b); err != nil {
		return wire.ReindexAccepted{}, fmt.Errorf("re-embedding job: %w", err)
	}
	if err := actives.SetJob(ctx, t.TenantID, ReindexJob{JobID: id, Model: want}); err != nil {
		return wire.ReindexAccepted{}, err
	}
	s.o.Logger.Info().Str("tenantId", t.TenantID).Str("jobId", id).Str("from", ts.Active.Model).Str("to", want).
		Msg("re-embedding the tenant's documents; the current index serves until the job switches")
	return wire.ReindexAccepted{TenantID: t.TenantID, JobID: id, Status: wire.JobQueued}, nil
}

func indexRef(ai ActiveIndex) wire.IndexRef {
	return wire.IndexRef{Model: ai.Model, Dimension: ai.Dimension}
}

// runReindex runs one re-embedding job: copy into the wanted model's index with progress, then,
// holding the tenant's writes, reconcile and switch, then invalidate its search cache. A failure
// switches nothing: the active index keeps serving.
func (s *Service) runReindex(ctx context.Context, j store.Job, st wire.JobStatus, log zerolog.Logger) {
	fail := func(reason string, err error) {
		log.Warn().Err(err).Msg("re-embedding job failed: " + reason)
		st.Status, st.Error, st.UpdatedAt = wire.JobFailed, reason, s.o.Now().UTC()
		if st.Reindex != nil {
			st.Reindex.Phase, st.Reindex.Error = wire.JobFailed, reason
		}
		if err := s.putStatus(ctx, j.Tenant, st); err != nil {
			log.Warn().Err(err).Msg("re-embedding job: status")
		}
		j.Drop()
	}
	t, found := s.o.Tenants.ByID(j.Tenant)
	if !found {
		fail("tenant no longer configured", nil)
		return
	}
	if s.spaces == nil {
		fail("this node keeps one index for every tenant", nil)
		return
	}
	ts, err := s.spaces.Resolve(ctx, t, "reindex")
	if ts.Store == nil {
		log.Warn().Err(err).Msg("re-embedding job: the tenant's index is unreadable; will retry")
		j.Retry(time.Second)
		return
	}
	if st.Reindex == nil {
		st.Reindex = &wire.ReindexProgress{JobID: st.JobID}
	}
	st.Reindex.From = indexRef(ts.Active)
	finish := func() {
		st.Reindex.Phase = wire.JobDone
		s.finishJob(ctx, j, st, log) // jobs.go
	}
	if ts.Current() {
		st.Reindex.To = st.Reindex.From
		finish() // another job (or node) switched already
		return
	}
	want := ts.Want
	indexes := s.spaces.o.Indexes
	dim, err := ModelDimension(ctx, want)
	if err != nil {
		fail(Classify(err, "").Message, err)
		return
	}
	to, err := indexes.Index(ctx, want.ID(), dim)
	if err != nil {
		fail("the new index cannot be opened", err)
		return
	}
	st.Reindex.To = wire.IndexRef{Model: want.ID(), Dimension: dim}
	st.Status, st.Reindex.Phase, st.UpdatedAt = wire.JobRunning, "copy", s.o.Now().UTC()
	if err := s.putStatus(ctx, j.Tenant, st); err != nil {
		log.Warn().Err(err).Msg("re-embedding job: status")
	}
	progress := func(p ReindexProgress) {
		st.Reindex.Copied, st.Reindex.Total, st.Reindex.Phase = p.Copied, p.Total, p.Phase
		st.Done, st.Total, st.UpdatedAt = p.Copied, p.Total, s.o.Now().UTC()
		if err := s.putStatus(ctx, j.Tenant, st); err != nil {
			log.Debug().Err(err).Msg("re-embedding job: progress")
		}
		j.Progress()
	}
	opts := ReindexOptions{Progress: progress}
	if _, err := Reindex(ctx, t.TenantID, ts.Store, to, want, opts); err != nil {
		if ctx.Err() != nil {
			return // stopping: redelivered later; the copy starts over and overwrites
		}
		fail("re-embedding failed: "+Classify(err, "").Message, err)
		return
	}
	// The final pass and the switch with the tenant's writes held: an ingest or delete that went to
	// the old index after Reindex's own pass is in the new one before searches move over.
	lock := s.writeLock(t.TenantID)
	lock.Lock()
	_, err = Reconcile(ctx, t.TenantID, ts.Store, to, want, ReindexOptions{})
	if err == nil {
		err = s.spaces.o.Actives.Switch(ctx, t.TenantID, ActiveIndex{Model: want.ID(), Dimension: dim})
	}
	lock.Unlock()
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		fail("re-embedding failed: "+Classify(err, "").Message, err)
		return
	}
	s.invalidateSearchCache(ctx, t.TenantID)
	log.Info().Str("from", ts.Active.Model).Str("to", want.ID()).Int("chunks", st.Reindex.Copied).
		Msg("re-embedding done: searches use the new index")
	finish()
}

// EmbeddingStatus is GET /health's embeddings of a tenant. It reads the records only: it never
// starts a job or records an active index.
func (s *Service) EmbeddingStatus(ctx context.Context, t *config.TenantConfig) wire.TenantEmbeddings {
	if s.spaces == nil {
		m := s.o.Embedder
		return wire.TenantEmbeddings{Configured: t.AIModels.Embeddings, EmbeddingModel: m.ID(),
			ActiveIndex: &wire.IndexRef{Model: m.ID(), Dimension: m.Dimension()}}
	}
	want, reason := s.spaces.Want(t)
	out := wire.TenantEmbeddings{Configured: t.AIModels.Embeddings, EmbeddingModel: want.ID(), FallbackReason: reason}
	actives := s.spaces.o.Actives
	if ai, ok, err := actives.Get(ctx, t.TenantID); err == nil && ok {
		ref := indexRef(ai)
		out.ActiveIndex = &ref
	}
	if rec, ok, err := actives.Job(ctx, t.TenantID); err == nil && ok {
		if st, err := s.JobStatus(ctx, t.TenantID, rec.JobID); err == nil && st.Reindex != nil && st.Status != wire.JobDone {
			out.Reindex = st.Reindex
		}
	}
	return out
}
