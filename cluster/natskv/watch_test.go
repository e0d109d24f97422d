package natskv

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/nats-io/nats.go/jetstream"
)

func TestNewDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   Options
		want Options
		why  string
	}{
		{name: "zero", in: Options{}, want: Options{Bucket: "members", TTL: 6 * time.Second, Heartbeat: 2 * time.Second, Replicas: 1}},
		{name: "ttl only", in: Options{TTL: 3 * time.Second}, want: Options{Bucket: "members", TTL: 3 * time.Second, Heartbeat: time.Second, Replicas: 1}},
		{
			name: "heartbeat not below ttl", in: Options{TTL: time.Second, Heartbeat: 2 * time.Second},
			want: Options{Bucket: "members", TTL: time.Second, Heartbeat: time.Second / 3, Replicas: 1},
			why:  "a heartbeat as long as the TTL lets a live member's key expire between two writes",
		},
		{name: "explicit", in: Options{Bucket: "b", TTL: 2 * time.Second, Heartbeat: 500 * time.Millisecond, Replicas: 3},
			want: Options{Bucket: "b", TTL: 2 * time.Second, Heartbeat: 500 * time.Millisecond, Replicas: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := New(nil, tt.in).opts
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(Options{}), cmpopts.IgnoreFields(Options{}, "Logger")); diff != "" {
				t.Errorf("defaults (-want +got):\n%s\n%s", diff, tt.why)
			}
		})
	}
}

func TestMemberIDFromKey(t *testing.T) {
	tests := []struct {
		key    string
		wantID string
		wantOK bool
	}{
		{key: "c.abc-DEF_1", wantID: "abc-DEF_1", wantOK: true},
		{key: "other.abc", wantOK: false},
		{key: "c.a.b", wantOK: false},
		{key: "c.", wantOK: false},
	}
	for _, tt := range tests {
		id, ok := memberIDFromKey("c.", tt.key)
		if ok != tt.wantOK || (ok && id != tt.wantID) {
			t.Errorf("memberIDFromKey(%q) = %q, %v; want %q, %v", tt.key, id, ok, tt.wantID, tt.wantOK)
		}
	}
}

func TestKeyPrefixRejectsNamesThatAreNotOneToken(t *testing.T) {
	for _, name := range []string{"", "a.b", "a b", "a>", "a*"} {
		if _, err := keyPrefix(name); err == nil {
			t.Errorf("keyPrefix(%q) accepted a name that would break the key layout", name)
		}
	}
	if p, err := keyPrefix("crispy"); err != nil || p != "crispy." {
		t.Errorf(`keyPrefix("crispy") = %q, %v`, p, err)
	}
}

// The watcher publishes the full member set (self included) on every join and leave, and nothing on
// a heartbeat, a removal of its own key, or malformed entries.
func TestWatchPublishesJoinsAndLeaves(t *testing.T) {
	js := startNATS(t)("test")
	p := New(js, Options{TTL: time.Minute})
	kv, err := p.openBucket(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	put(t, kv, "a")
	rec := newRecorder()
	startWatch(t, p, &record{ID: "s"}, rec)

	want := func(ids ...string) {
		t.Helper()
		if diff := cmp.Diff(ids, rec.next(t)); diff != "" {
			t.Fatalf("topology (-want +got):\n%s", diff)
		}
	}
	want("a", "s") // the members already in the bucket, and self

	put(t, kv, "b")
	want("a", "b", "s")

	// Entries arrive in bucket order, so the next publish after a heartbeat of b and the deletion of a
	// is the deletion's: the heartbeat published nothing.
	put(t, kv, "b")
	if err := kv.Delete(context.Background(), "c.a"); err != nil {
		t.Fatal(err)
	}
	want("b", "s")

	// Losing its own key does not remove self from its own topology; junk is ignored.
	if err := kv.Delete(context.Background(), "c.s"); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(context.Background(), "c.e", []byte("not json")); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(context.Background(), "c.x.y", []byte(`{"id":"x.y"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(context.Background(), "c.f", []byte(`{"id":"not-f"}`)); err != nil {
		t.Fatal(err)
	}
	put(t, kv, "d")
	want("b", "d", "s")
}

// A member whose key is not refreshed leaves the topology once its TTL runs out: through the server's
// delete marker, or, on a bucket without markers (servers before 2.11), through the reconcile pass.
func TestWatchDropsExpiredMember(t *testing.T) {
	tests := []struct {
		name      string
		noMarkers bool
	}{
		{name: "delete marker"},
		{name: "reconcile without markers", noMarkers: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			js := startNATS(t)("test")
			p := New(js, Options{TTL: time.Second, noMarkers: tt.noMarkers})
			rec := newRecorder()
			w := startWatch(t, p, &record{ID: "s"}, rec)
			st, err := w.kv.Status(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if hasMarkers := st.LimitMarkerTTL() > 0; hasMarkers == tt.noMarkers {
				t.Fatalf("bucket LimitMarkerTTL = %v; this case needs markers = %v", st.LimitMarkerTTL(), !tt.noMarkers)
			}
			put(t, w.kv, "x")
			rec.until(t, "s", "x")
			rec.until(t, "s") // x never refreshes its key
		})
	}
}

// Pins the design choice in openBucket: with LimitMarkerTTL, the server tells watchers when MaxAge
// removes a key, so peers need not poll to notice a crashed member.
func TestBucketTellsWatchersAboutExpiry(t *testing.T) {
	js := startNATS(t)("test")
	p := New(js, Options{TTL: time.Second})
	kv, err := p.openBucket(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	w, err := kv.Watch(ctx, "c.>", jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	put(t, kv, "x")

	var ops []jetstream.KeyValueOp
	for len(ops) < 2 {
		select {
		case e := <-w.Updates():
			if e != nil && e.Key() == "c.x" {
				ops = append(ops, e.Operation())
			}
		case <-ctx.Done():
			t.Fatalf("watcher saw %v for c.x, no expiry marker within %v", ops, waitLimit)
		}
	}
	if diff := cmp.Diff([]jetstream.KeyValueOp{jetstream.KeyValuePut, jetstream.KeyValuePurge}, ops); diff != "" {
		t.Errorf("operations seen for an expiring key (-want +got):\n%s", diff)
	}
}
