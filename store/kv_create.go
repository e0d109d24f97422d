package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrExists is returned (wrapped) by Create for a key that holds a value.
var ErrExists = errors.New("key exists")

// Create sets the tenant's key only if it holds no value: put-if-absent, decided by the server, so
// of two nodes creating one key exactly one succeeds (the claim of an Idempotency-Key). A positive
// ttl (rounded up to whole seconds) needs KVOptions.AllowTTL.
func (t *TenantKV) Create(ctx context.Context, tenantID, key string, value []byte, ttl time.Duration) error {
	k, err := fullKey(tenantID, key)
	if err != nil {
		return err
	}
	var opts []jetstream.KVCreateOpt
	switch {
	case ttl < 0:
		return fmt.Errorf("store: create %s/%s %q: negative ttl %s", t.bucket, tenantID, key, ttl)
	case ttl > 0 && !t.allowTTL:
		return fmt.Errorf("store: create %s/%s %q: %w", t.bucket, tenantID, key, ErrTTLNotAllowed)
	case ttl > 0:
		opts = append(opts, jetstream.KeyTTL(ceilSecond(ttl)))
	}
	if _, err := t.kv.Create(ctx, k, value, opts...); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("store: create %s/%s %q: %w", t.bucket, tenantID, key, ErrExists)
		}
		return fmt.Errorf("store: create %s/%s %q: %w", t.bucket, tenantID, key, err)
	}
	return nil
}
