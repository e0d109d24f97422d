package api

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/crispy-enigma/crispy/cluster/natsserver"
	"github.com/crispy-enigma/crispy/rag"
	"github.com/crispy-enigma/crispy/store"
)

// A submitted job is queued under its tenant only, its payload (documents with raw bytes) survives
// the object store round trip, and the work queue holds one small message for it.
func TestIngestJobsSubmit(t *testing.T) {
	ns, err := natsserver.Start(natsserver.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	nc, err := ns.Connect("jobs-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	jobs, err := OpenIngestJobs(ctx, js, IngestJobsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	docs := []pendingDoc{
		{Doc: rag.Document{ID: "a", Text: "alpha", Title: "A", Meta: map[string]any{"lang": "en"}}},
		{Doc: rag.Document{ID: "b", Data: []byte{0x25, 0x50, 0x44, 0x46, 0x00, 0xff}, ContentType: rag.ContentTypePDF}},
		{Doc: rag.Document{ID: "../c"}, Err: &errorBody{Code: CodeInvalidRequest, Message: "bad docId"}},
	}
	id, err := jobs.Submit(ctx, "acme", "trace-1", docs)
	if err != nil {
		t.Fatal(err)
	}
	st, err := jobs.Status(ctx, "acme", id)
	if err != nil || st.Status != JobQueued || st.Total != 3 || st.JobID != id {
		t.Fatalf("status = %+v, %v", st, err)
	}
	if _, err := jobs.Status(ctx, "globex", id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("another tenant's job: err = %v, want not found", err)
	}
	got, err := jobs.loadPayload(ctx, "acme", id)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(docs, got); diff != "" {
		t.Fatalf("payload round trip (-want +got):\n%s", diff)
	}
	info, err := jobs.stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 || info.State.Bytes > 1024 {
		t.Fatalf("work queue holds %d messages, %d bytes; want one small message", info.State.Msgs, info.State.Bytes)
	}
}
