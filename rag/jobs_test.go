package rag_test

import (
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/rag"
	"github.com/crispy-enigma/crispy/store"
	"github.com/crispy-enigma/crispy/test/fixture"
	"github.com/crispy-enigma/crispy/wire"
)

// issue 16: after a kill -9 an ingest job read "running" for about 5 minutes (the queue's
// AckWait). The worker holds a lease it renews while it works; once its worker is gone the job
// reads "interrupted" as soon as the lease has run out.
func TestJobLease(t *testing.T) {
	js := fixture.JetStream(t)
	ctx := t.Context()
	jobs, err := store.OpenJobQueue(ctx, js, store.JobQueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, _, err := config.ParseTenantConfig("leased.json", []byte(`{
		"tenantId": "leased", "accountId": "acc", "aiGatewayId": "gw",
		"aiModels": {"chat": "local/extractive", "embeddings": "local/hash-embed"},
		"vectorizeNamespace": "leased", "rateLimit": {"perMinute": 100, "burst": 100},
		"featureFlags": {}, "allowedHosts": [], "apiKeys": []}`))
	if err != nil {
		t.Fatal(err)
	}
	var skew atomic.Int64 // the service's clock runs this far ahead of the wall clock
	svc := newService(t, rag.ServiceOptions{
		Jobs: jobs, JobMinDocs: 1, JobLease: 10 * time.Second,
		Now: func() time.Time { return time.Now().Add(time.Duration(skew.Load())) },
	}, cfg)
	status := func(id string) wire.JobStatus {
		t.Helper()
		st, err := svc.JobStatus(ctx, "leased", id)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}

	// The last status a worker wrote before a kill -9: running, with its lease.
	lease := time.Now().Add(10 * time.Second)
	b, _ := json.Marshal(wire.JobStatus{JobID: "0123abcd", Status: wire.JobRunning, Total: 2, Done: 1, LeaseUntil: &lease})
	if err := jobs.PutStatus(ctx, "leased", "0123abcd", b); err != nil {
		t.Fatal(err)
	}
	if st := status("0123abcd"); st.Status != wire.JobRunning {
		t.Errorf("status within the lease = %q, want running", st.Status)
	}
	skew.Store(int64(11 * time.Second)) // the worker never renewed it
	if st := status("0123abcd"); st.Status != wire.JobInterrupted || st.Done != 1 {
		t.Errorf("status once the lease ran out = %+v, want interrupted with its progress", st)
	}
	skew.Store(0)

	// A live worker writes the lease while running and drops it when done.
	stop, err := svc.StartWorker(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	docs := []rag.PendingDoc{{Doc: rag.Document{ID: "a", Text: "alpha"}}, {Doc: rag.Document{ID: "b", Text: "beta"}}}
	_, id, err := svc.IngestBatch(ctx, cfg, docs, "trace")
	if err != nil || id == "" {
		t.Fatalf("IngestBatch = %q, %v; want a job", id, err)
	}
	deadline := time.Now().Add(20 * time.Second) // only keeps a broken worker from hanging the test
	st := status(id)
	for ; st.Status != wire.JobDone && st.Status != wire.JobFailed; st = status(id) {
		if st.Status == wire.JobRunning && st.LeaseUntil == nil {
			t.Fatalf("running without a lease: %+v", st)
		}
		if time.Now().After(deadline) {
			t.Fatalf("job never finished: %+v", st)
		}
	}
	if st.Status != wire.JobDone || st.LeaseUntil != nil {
		t.Errorf("finished job = %+v, want done without a lease", st)
	}
}
