package store

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Bucket names docs/architecture.md gives the tenant-scoped KV stores.
const (
	BucketConfig   = "config"
	BucketCache    = "cache"
	BucketRAGIndex = "ragindex" // the active vector index of each tenant (rag.ActiveIndexes)
)

var (
	// ErrNotFound is returned by TenantKV.Get when the tenant has no live value for the key (never
	// written, deleted, purged or expired).
	ErrNotFound = errors.New("key not found")
	// ErrInvalidKey is returned (wrapped, with the key quoted) for a key outside the allowed alphabet.
	ErrInvalidKey = errors.New("invalid key")
	// ErrTTLNotAllowed is returned by Put with a TTL on a bucket opened without KVOptions.AllowTTL.
	ErrTTLNotAllowed = errors.New("per-key ttl not enabled on this bucket")
)

// maxKeyLen bounds a tenant's key; NATS subjects have no hard limit but a cache key is a hash or a
// short name, and a bound keeps a hostile key from becoming a huge subject.
const maxKeyLen = 512

// keyRe is NATS KV's own key alphabet (nats.go jetstream validKeyRe) — minus nothing and plus
// nothing: '*', '>', ':', whitespace and control characters are all outside it. The dot rules are
// checked separately in ValidateKey, as nats.go does.
var keyRe = regexp.MustCompile(`^[-/_=.a-zA-Z0-9]+$`)

// ValidateKey reports whether key is usable as a tenant's key: non-empty, at most 512 bytes, only
// [-/_=.a-zA-Z0-9], and no leading, trailing or doubled dot (an empty subject token).
func ValidateKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: %q: empty", ErrInvalidKey, key)
	case len(key) > maxKeyLen:
		return fmt.Errorf("%w: %q: longer than %d bytes", ErrInvalidKey, key, maxKeyLen)
	case !keyRe.MatchString(key):
		return fmt.Errorf("%w: %q: only letters, digits and - / _ = . are allowed", ErrInvalidKey, key)
	case key[0] == '.' || key[len(key)-1] == '.' || strings.Contains(key, ".."):
		return fmt.Errorf("%w: %q: empty dot-separated token", ErrInvalidKey, key)
	}
	return nil
}

// KVOptions configure a tenant KV bucket.
type KVOptions struct {
	// Replicas is the JetStream replica count; the cluster passes min(3, servers). 0 means 1.
	Replicas int
	// History is how many revisions are kept per key (1..64). 0 means 1.
	History int
	// AllowTTL enables per-key TTLs on Put (the cache bucket). It turns on the stream's per-message
	// TTL and limit markers, so it needs a server with JetStream API level ≥ 1 (nats-server 2.11+).
	AllowTTL bool
	// MarkerTTL is how long the marker left by an expired key stays (watchers see expiries through
	// it). Only used with AllowTTL; 0 means 5 minutes.
	MarkerTTL time.Duration
	// MaxAge bounds every entry's age regardless of its own TTL (0: no bound).
	MaxAge time.Duration
	// MaxValueSize bounds one value in bytes (0: no bound).
	MaxValueSize int32
	// MaxBytes bounds the bucket's size in bytes (0: no bound).
	MaxBytes int64
}

// TenantKV is a JetStream KV bucket shared by all tenants in which every key is stored as
// "<tenantID>.<key>". A tenant ID matches ^[a-z0-9-]{1,63}$ and so never contains a '.', which makes
// the first subject token exactly the tenant ID: "a" + "b.x" is "a.b.x", and no tenant "a.b" can
// exist to claim it; listing uses the token filter "a.>", which matches tokens, not string prefixes,
// so tenant "a" never sees tenant "ab".
type TenantKV struct {
	bucket   string
	kv       jetstream.KeyValue
	stream   jetstream.Stream
	js       jetstream.JetStream
	allowTTL bool
}

// OpenTenantKV creates the bucket, or updates its configuration to opts, and returns it.
func OpenTenantKV(ctx context.Context, js jetstream.JetStream, bucket string, opts KVOptions) (*TenantKV, error) {
	if opts.Replicas <= 0 {
		opts.Replicas = 1
	}
	if opts.History <= 0 {
		opts.History = 1
	}
	cfg := jetstream.KeyValueConfig{
		Bucket:       bucket,
		Description:  "crispy tenant-scoped KV (" + bucket + "), keys <tenant>.<key>",
		History:      uint8(min(opts.History, jetstream.KeyValueMaxHistory)),
		TTL:          opts.MaxAge,
		MaxValueSize: opts.MaxValueSize,
		MaxBytes:     opts.MaxBytes,
		Storage:      jetstream.FileStorage,
		Replicas:     opts.Replicas,
	}
	if opts.AllowTTL {
		cfg.LimitMarkerTTL = opts.MarkerTTL
		if cfg.LimitMarkerTTL <= 0 {
			cfg.LimitMarkerTTL = 5 * time.Minute
		}
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: open kv bucket %q: %w", bucket, err)
	}
	stream, err := BucketStream(ctx, js, bucket)
	if err != nil {
		return nil, fmt.Errorf("store: kv bucket %q stream: %w", bucket, err)
	}
	return &TenantKV{bucket: bucket, kv: kv, stream: stream, js: js, allowTTL: opts.AllowTTL}, nil
}

// BucketStream returns the stream behind a bucket that exists. Right after a bucket is created, a
// server whose view of the JetStream meta layer lags the create answers "stream not found" for a
// moment (seen with three nodes starting at once): here that is not an answer, so it is retried
// until ctx ends.
func BucketStream(ctx context.Context, js jetstream.JetStream, bucket string) (jetstream.Stream, error) {
	return RetryValue(ctx, Retry{Always: true, Pause: 100 * time.Millisecond}, func(ctx context.Context) (jetstream.Stream, error) {
		return js.Stream(ctx, "KV_"+bucket)
	})
}

// Bucket returns the bucket's name.
func (t *TenantKV) Bucket() string { return t.bucket }

func fullKey(tenantID, key string) (string, error) {
	if err := ValidateTenantID(tenantID); err != nil {
		return "", fmt.Errorf("store: %w", err)
	}
	if err := ValidateKey(key); err != nil {
		return "", fmt.Errorf("store: %w", err)
	}
	return tenantID + "." + key, nil
}

// Get returns the tenant's value for key, or an error wrapping ErrNotFound.
func (t *TenantKV) Get(ctx context.Context, tenantID, key string) ([]byte, error) {
	k, err := fullKey(tenantID, key)
	if err != nil {
		return nil, err
	}
	e, err := t.kv.Get(ctx, k)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("store: %s/%s %q: %w", t.bucket, tenantID, key, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: get %s/%s %q: %w", t.bucket, tenantID, key, err)
	}
	return e.Value(), nil
}

// Put sets the tenant's value for key. ttl 0 keeps it until deleted (or the bucket's MaxAge); a
// positive ttl, rounded up to whole seconds (the server's TTL unit, and rounding down would expire
// an entry early), makes the server remove it after that time. A TTL needs KVOptions.AllowTTL.
//
// Why Put publishes itself when there is a TTL: nats.go v1.55's KeyValue.Put takes no options, and
// the only per-key TTL it offers is jetstream.KeyTTL on Create, which fails when the key exists
// (a cache overwrite). Delete-then-Create would open a window where readers miss and two writers
// race into ErrKeyExists. A KV put is, by the KV protocol (ADR-8), a publish to
// "$KV.<bucket>.<key>", and Create(KeyTTL) itself is that publish with a Nats-TTL header; so a put
// with a TTL is exactly that publish without Create's expected-last-sequence check: one atomic
// write that replaces any previous value and carries its own expiry. Get, Keys and watchers treat
// the server's expiry marker as a deletion.
func (t *TenantKV) Put(ctx context.Context, tenantID, key string, value []byte, ttl time.Duration) error {
	k, err := fullKey(tenantID, key)
	if err != nil {
		return err
	}
	switch {
	case ttl < 0:
		return fmt.Errorf("store: put %s/%s %q: negative ttl %s", t.bucket, tenantID, key, ttl)
	case ttl == 0:
		if _, err := t.kv.Put(ctx, k, value); err != nil {
			return fmt.Errorf("store: put %s/%s %q: %w", t.bucket, tenantID, key, err)
		}
		return nil
	case !t.allowTTL:
		return fmt.Errorf("store: put %s/%s %q: %w", t.bucket, tenantID, key, ErrTTLNotAllowed)
	}
	ttl = ceilSecond(ttl)
	if _, err := t.js.Publish(ctx, "$KV."+t.bucket+"."+k, value, jetstream.WithMsgTTL(ttl)); err != nil {
		return fmt.Errorf("store: put %s/%s %q with ttl %s: %w", t.bucket, tenantID, key, ttl, err)
	}
	return nil
}

// Delete removes the tenant's key. Deleting a missing key is not an error.
func (t *TenantKV) Delete(ctx context.Context, tenantID, key string) error {
	k, err := fullKey(tenantID, key)
	if err != nil {
		return err
	}
	if err := t.kv.Delete(ctx, k); err != nil {
		return fmt.Errorf("store: delete %s/%s %q: %w", t.bucket, tenantID, key, err)
	}
	return nil
}

// Keys returns the tenant's live keys, without the tenant prefix, in no particular order.
func (t *TenantKV) Keys(ctx context.Context, tenantID string) ([]string, error) {
	if err := ValidateTenantID(tenantID); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	prefix := tenantID + "."
	lister, err := t.kv.ListKeysFiltered(ctx, prefix+">")
	if err != nil {
		return nil, fmt.Errorf("store: list %s/%s: %w", t.bucket, tenantID, err)
	}
	defer lister.Stop()
	// The lister may report a key twice while the bucket is being written (nats.go documents it).
	var keys []string
	seen := map[string]bool{}
	for k := range lister.Keys() {
		if !seen[k] {
			seen[k] = true
			keys = append(keys, strings.TrimPrefix(k, prefix))
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store: list %s/%s: %w", t.bucket, tenantID, err)
	}
	return keys, nil
}

// PurgeTenant removes every key of the tenant and its history in one server-side stream purge
// filtered on "$KV.<bucket>.<tenant>.>" — atomic and one round trip however many keys there are,
// which is what clearing a tenant's search cache after its documents change needs. It leaves no
// delete markers, so a watcher does not see the individual keys go.
func (t *TenantKV) PurgeTenant(ctx context.Context, tenantID string) error {
	if err := ValidateTenantID(tenantID); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if err := t.stream.Purge(ctx, jetstream.WithPurgeSubject("$KV."+t.bucket+"."+tenantID+".>")); err != nil {
		return fmt.Errorf("store: purge %s/%s: %w", t.bucket, tenantID, err)
	}
	return nil
}

// ceilSecond rounds d up to a whole number of seconds.
func ceilSecond(d time.Duration) time.Duration {
	s := d.Truncate(time.Second)
	if s < d {
		s += time.Second
	}
	return s
}
