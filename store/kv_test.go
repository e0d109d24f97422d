package store

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func openKV(t *testing.T, bucket string, opts KVOptions) *TenantKV {
	t.Helper()
	js, _ := startNATS(t, t.TempDir())
	kv, err := OpenTenantKV(t.Context(), js, bucket, opts)
	if err != nil {
		t.Fatalf("OpenTenantKV: %v", err)
	}
	return kv
}

func sortedKeys(t *testing.T, kv *TenantKV, tenant string) []string {
	t.Helper()
	keys, err := kv.Keys(t.Context(), tenant)
	if err != nil {
		t.Fatalf("Keys(%q): %v", tenant, err)
	}
	slices.Sort(keys)
	return keys
}

func TestTenantKVRoundTrip(t *testing.T) {
	ctx := t.Context()
	kv := openKV(t, BucketConfig, KVOptions{History: 5})

	if _, err := kv.Get(ctx, "acme", "greeting"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get before Put: err = %v, want ErrNotFound", err)
	}
	if err := kv.Put(ctx, "acme", "greeting", []byte("hello"), 0); err != nil {
		t.Fatal(err)
	}
	if err := kv.Put(ctx, "acme", "greeting", []byte("hello again"), 0); err != nil {
		t.Fatal(err)
	}
	got, err := kv.Get(ctx, "acme", "greeting")
	if err != nil || string(got) != "hello again" {
		t.Fatalf("Get = %q, %v; want the last Put", got, err)
	}
	if err := kv.Delete(ctx, "acme", "greeting"); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, "acme", "greeting"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete: err = %v, want ErrNotFound", err)
	}
	if err := kv.Delete(ctx, "acme", "never-written"); err != nil {
		t.Fatalf("Delete of a missing key: %v", err)
	}
	if keys := sortedKeys(t, kv, "acme"); len(keys) != 0 {
		t.Fatalf("Keys after Delete = %v, want none", keys)
	}
}

// Tenant IDs are ^[a-z0-9-]{1,63}$: no dot, so in "<tenant>.<key>" the first token is always the
// whole tenant ID. Tenant "a" with key "b.x" is stored as "a.b.x", which could only be confused with
// tenant "a.b" and key "x" — and "a.b" is refused as a tenant ID. Listing filters on the token
// ("a.>"), so tenant "a" never sees tenant "ab" although "ab" starts with "a".
func TestTenantKVIsolation(t *testing.T) {
	ctx := t.Context()
	kv := openKV(t, BucketCache, KVOptions{AllowTTL: true})

	writes := []struct{ tenant, key, value string }{
		{"a", "x", "a/x"},
		{"a", "b.x", "a/b.x"},
		{"ab", "x", "ab/x"},
		{"b", "x", "b/x"},
		{"a-b", "x", "a-b/x"},
	}
	for _, w := range writes {
		if err := kv.Put(ctx, w.tenant, w.key, []byte(w.value), 0); err != nil {
			t.Fatalf("Put(%q, %q): %v", w.tenant, w.key, err)
		}
	}
	for _, w := range writes {
		got, err := kv.Get(ctx, w.tenant, w.key)
		if err != nil || string(got) != w.value {
			t.Errorf("Get(%q, %q) = %q, %v; want %q", w.tenant, w.key, got, err, w.value)
		}
	}

	for tenant, want := range map[string][]string{
		"a":   {"b.x", "x"},
		"ab":  {"x"},
		"b":   {"x"},
		"a-b": {"x"},
		"c":   nil,
	} {
		if diff := cmp.Diff(want, sortedKeys(t, kv, tenant)); diff != "" {
			t.Errorf("Keys(%q) (-want +got):\n%s", tenant, diff)
		}
	}

	// The dotted tenant that would alias "a" + "b.x" cannot be named at all.
	if _, err := kv.Get(ctx, "a.b", "x"); !errors.Is(err, ErrInvalidTenant) {
		t.Errorf("Get(tenant %q): err = %v, want ErrInvalidTenant", "a.b", err)
	}
	if err := kv.Delete(ctx, "a.b", "x"); !errors.Is(err, ErrInvalidTenant) {
		t.Errorf("Delete(tenant %q): err = %v, want ErrInvalidTenant", "a.b", err)
	}
	// Tenant b reading tenant a's key name gets its own (or nothing), never a's.
	if _, err := kv.Get(ctx, "b", "b.x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(b, b.x): err = %v, want ErrNotFound (a's key must not be visible)", err)
	}

	// Deleting through b leaves a's key alone.
	if err := kv.Delete(ctx, "b", "x"); err != nil {
		t.Fatal(err)
	}
	if got, err := kv.Get(ctx, "a", "x"); err != nil || string(got) != "a/x" {
		t.Errorf("after Delete(b, x): Get(a, x) = %q, %v; want a/x", got, err)
	}

	// PurgeTenant(a) clears a's keys, not ab's or a-b's.
	if err := kv.PurgeTenant(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if keys := sortedKeys(t, kv, "a"); len(keys) != 0 {
		t.Errorf("Keys(a) after PurgeTenant(a) = %v, want none", keys)
	}
	for _, k := range []string{"x", "b.x"} {
		if _, err := kv.Get(ctx, "a", k); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(a, %q) after PurgeTenant: err = %v, want ErrNotFound", k, err)
		}
	}
	for _, tenant := range []string{"ab", "a-b"} {
		if got, err := kv.Get(ctx, tenant, "x"); err != nil || string(got) != tenant+"/x" {
			t.Errorf("Get(%q, x) after PurgeTenant(a) = %q, %v; want it kept", tenant, got, err)
		}
	}
}

func TestTenantKVInvalidKeys(t *testing.T) {
	ctx := t.Context()
	kv := openKV(t, BucketCache, KVOptions{AllowTTL: true})

	tests := []struct {
		name, key, why string
	}{
		{"empty", "", "nothing to address"},
		{"star", "a*", "NATS single-token wildcard"},
		{"gt", ">", "NATS multi-token wildcard"},
		{"gt suffix", "x.>", "wildcard tail would list other keys"},
		{"space", "a b", "whitespace ends a subject on the wire"},
		{"tab", "a\tb", "whitespace"},
		{"newline", "a\nb", "would inject a protocol line"},
		{"nul", "a\x00b", "control character"},
		{"colon", "search:abc", "not in NATS KV's key alphabet (why we use dots)"},
		{"leading dot", ".x", "empty first token"},
		{"trailing dot", "x.", "empty last token"},
		{"double dot", "x..y", "empty middle token"},
		{"unicode", "café", "outside the ASCII alphabet"},
		{"too long", strings.Repeat("k", maxKeyLen+1), "bounded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for op, err := range map[string]error{
				"Put":    kv.Put(ctx, "acme", tt.key, []byte("v"), 0),
				"Delete": kv.Delete(ctx, "acme", tt.key),
				"Get": func() error {
					_, err := kv.Get(ctx, "acme", tt.key)
					return err
				}(),
			} {
				if !errors.Is(err, ErrInvalidKey) {
					t.Errorf("%s(%q) err = %v, want ErrInvalidKey (%s)", op, tt.key, err, tt.why)
				} else if tt.key != "" && !strings.Contains(err.Error(), `"`) {
					t.Errorf("%s error %q does not quote the key", op, err)
				}
			}
		})
	}

	valid := []string{"x", "search.0123abcdef", "a-b_c=d/e", "A.B.C", strings.Repeat("k", maxKeyLen)}
	for _, k := range valid {
		if err := kv.Put(ctx, "acme", k, []byte("v"), 0); err != nil {
			t.Errorf("Put(valid key %q): %v", k, err)
		}
	}

	for _, tenant := range []string{"", "A", "a.b", "a*", "a>", "../x", "a b", strings.Repeat("a", 64)} {
		if err := kv.Put(ctx, tenant, "x", []byte("v"), 0); !errors.Is(err, ErrInvalidTenant) {
			t.Errorf("Put(tenant %q) err = %v, want ErrInvalidTenant", tenant, err)
		}
		if _, err := kv.Keys(ctx, tenant); !errors.Is(err, ErrInvalidTenant) {
			t.Errorf("Keys(tenant %q) err = %v, want ErrInvalidTenant", tenant, err)
		}
		if err := kv.PurgeTenant(ctx, tenant); !errors.Is(err, ErrInvalidTenant) {
			t.Errorf("PurgeTenant(tenant %q) err = %v, want ErrInvalidTenant", tenant, err)
		}
	}
}

// waitGone polls until the key reads as ErrNotFound or the deadline passes. The deadline bounds the
// test; it asserts that expiry happens, not how fast.
func waitGone(t *testing.T, kv *TenantKV, tenant, key string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for {
		_, err := kv.Get(ctx, tenant, key)
		if errors.Is(err, ErrNotFound) {
			return
		}
		if err != nil && ctx.Err() == nil {
			t.Fatalf("Get(%q, %q): %v", tenant, key, err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("Get(%q, %q) still returns a value at the deadline: the TTL never expired it", tenant, key)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func TestTenantKVTTLExpires(t *testing.T) {
	ctx := t.Context()
	kv := openKV(t, BucketCache, KVOptions{AllowTTL: true, MarkerTTL: time.Second})

	// A key that already exists without a TTL gets one by a later Put (the overwrite case that
	// jetstream's Create(KeyTTL) cannot do).
	if err := kv.Put(ctx, "acme", "search.q1", []byte("old"), 0); err != nil {
		t.Fatal(err)
	}
	if err := kv.Put(ctx, "acme", "search.q1", []byte("cached"), time.Second); err != nil {
		t.Fatal(err)
	}
	// A sub-second TTL is rounded up to the server's one-second unit, not refused.
	if err := kv.Put(ctx, "acme", "search.q2", []byte("cached"), 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := kv.Put(ctx, "acme", "keep", []byte("forever"), 0); err != nil {
		t.Fatal(err)
	}

	waitGone(t, kv, "acme", "search.q1")
	waitGone(t, kv, "acme", "search.q2")

	if got, err := kv.Get(ctx, "acme", "keep"); err != nil || string(got) != "forever" {
		t.Errorf("Get(keep) = %q, %v; the entry without TTL must stay", got, err)
	}
	if diff := cmp.Diff([]string{"keep"}, sortedKeys(t, kv, "acme")); diff != "" {
		t.Errorf("Keys after expiry (-want +got):\n%s", diff)
	}
	// An expired key can be written again.
	if err := kv.Put(ctx, "acme", "search.q1", []byte("again"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if got, err := kv.Get(ctx, "acme", "search.q1"); err != nil || string(got) != "again" {
		t.Errorf("Get after re-Put = %q, %v", got, err)
	}
}

func TestTenantKVTTLRefusedWithoutAllowTTL(t *testing.T) {
	kv := openKV(t, BucketConfig, KVOptions{})
	if err := kv.Put(t.Context(), "acme", "k", []byte("v"), time.Minute); !errors.Is(err, ErrTTLNotAllowed) {
		t.Fatalf("Put with ttl on a bucket without AllowTTL: err = %v, want ErrTTLNotAllowed", err)
	}
	if err := kv.Put(t.Context(), "acme", "k", []byte("v"), -time.Second); err == nil {
		t.Fatal("Put with a negative ttl: want an error")
	}
}

func TestTenantKVSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	js, stop := startNATS(t, dir)
	kv, err := OpenTenantKV(t.Context(), js, BucketConfig, KVOptions{History: 3})
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Put(t.Context(), "acme", "theme", []byte("dark"), 0); err != nil {
		t.Fatal(err)
	}
	stop()

	js2, _ := startNATS(t, dir)
	kv2, err := OpenTenantKV(t.Context(), js2, BucketConfig, KVOptions{History: 3})
	if err != nil {
		t.Fatalf("reopen after restart: %v", err)
	}
	got, err := kv2.Get(t.Context(), "acme", "theme")
	if err != nil || string(got) != "dark" {
		t.Fatalf("Get after restart = %q, %v; want dark", got, err)
	}
}

func BenchmarkTenantKVGet(b *testing.B) {
	js, _ := startNATS(b, b.TempDir())
	kv, err := OpenTenantKV(b.Context(), js, BucketCache, KVOptions{AllowTTL: true})
	if err != nil {
		b.Fatal(err)
	}
	if err := kv.Put(b.Context(), "acme", "search.abc", []byte("cached answer"), time.Hour); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := kv.Get(b.Context(), "acme", "search.abc"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTenantKVPutTTL(b *testing.B) {
	js, _ := startNATS(b, b.TempDir())
	kv, err := OpenTenantKV(b.Context(), js, BucketCache, KVOptions{AllowTTL: true})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := kv.Put(b.Context(), "acme", "search.abc", []byte("cached answer"), time.Hour); err != nil {
			b.Fatal(err)
		}
	}
}
