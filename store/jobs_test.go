package store_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/store"
	"github.com/crispy-enigma/crispy/test/fixture"
)

// A submitted job is queued under its tenant only, its payload (raw bytes, larger than a NATS
// message) survives the object store round trip, and the work queue holds one small message for it.
func TestJobQueueSubmit(t *testing.T) {
	js := fixture.JetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	jobs, err := store.OpenJobQueue(ctx, js, store.JobQueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const id = "0b7c6a4e-1f2d-4c3b-9a8e-7d6c5b4a3f21"
	payload := bytes.Repeat([]byte{0x25, 0x50, 0x44, 0x46, 0x00, 0xff}, 100<<10) // 600 KiB of raw bytes
	if err := jobs.Submit(ctx, "acme", id, "trace-1", payload, []byte(`{"status":"queued"}`)); err != nil {
		t.Fatal(err)
	}
	st, err := jobs.Status(ctx, "acme", id)
	if err != nil || string(st) != `{"status":"queued"}` {
		t.Fatalf("status = %s, %v", st, err)
	}
	if _, err := jobs.Status(ctx, "globex", id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("another tenant's job: err = %v, want not found", err)
	}
	got, err := jobs.Payload(ctx, "acme", id)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("payload round trip: %d bytes back, want %d", len(got), len(payload))
	}
	if _, err := jobs.Payload(ctx, "globex", id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("another tenant's payload: err = %v, want not found", err)
	}
	stream, err := js.Stream(ctx, store.JobsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 || info.State.Bytes > 1024 {
		t.Fatalf("work queue holds %d messages, %d bytes; want one small message", info.State.Msgs, info.State.Bytes)
	}
}
