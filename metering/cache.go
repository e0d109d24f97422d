package metering

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"hash"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/store"
)

// The response cache answers identical whole (non-streamed) chat calls within the tenant's
// cache.ttlSeconds (off when absent). Identical means: same tenant, same model, the same messages
// sent to the model (the full list: system, tool result, history and the new message, each role
// plus its whitespace-normalized content) and the same maxTokens. The key is chat.<sha256> with
// the tenant ID inside the hashed material AND as the KV prefix (TenantKV), so a key can never
// match across tenants.
//
// Decisions: a hit still counts as a request (a model_call event with cached=true and 0 tokens), is
// not charged to the token budget and reports 0 tokens. Calls the caller did not mark AllowCached
// (streamed replies) and calls that offer the model tools are never cached (tool calls have side
// effects).

// cachedReply is the value stored under a cache key.
type cachedReply struct {
	Model   string `json:"model"`
	Message string `json:"message"`
}

// cacheTimeout bounds a cache read or write; the cache is an optimisation, never a reason to fail.
const cacheTimeout = 2 * time.Second

// CacheKey is chat.<hex sha256> over the tenant, model, maxTokens and normalized messages. Each
// field is length-prefixed so that no two different requests hash the same material.
func CacheKey(tenantID, model string, maxTokens int, msgs []gateway.Message) string {
	h := sha256.New()
	field := func(h hash.Hash, s string) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	field(h, "crispy.chat.v2")
	field(h, tenantID)
	field(h, model)
	field(h, strconv.Itoa(maxTokens))
	for _, m := range msgs {
		field(h, m.Role)
		field(h, normalizeSpace(m.Content))
	}
	return "chat." + hex.EncodeToString(h.Sum(nil))
}

// normalizeSpace collapses runs of whitespace into one space and trims the ends.
func normalizeSpace(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// cacheTTL is the tenant's response cache TTL for this call; 0 = not cached.
func (m *Meter) cacheTTL(c *call, req *gateway.ChatRequest) time.Duration {
	t := c.tenant
	if m.cache == nil || !req.Meta.AllowCached || len(req.Tools) > 0 || t.Cache == nil || t.Cache.TTLSeconds <= 0 {
		return 0
	}
	return time.Duration(t.Cache.TTLSeconds) * time.Second
}

// lookupCache answers a cacheable call from the cache. On a miss it sets c.cacheKey, so the reply
// is cached when the call ends well.
func (m *Meter) lookupCache(ctx context.Context, c *call, req *gateway.ChatRequest) (gateway.ChatStream, bool) {
	if m.cacheTTL(c, req) == 0 {
		return nil, false
	}
	t := c.tenant.TenantID
	key := CacheKey(t, req.Model, req.MaxTokens, keyMessages(req)) // cache_options.go
	ctx, cancel := context.WithTimeout(ctx, cacheTimeout)
	raw, err := m.cache.Get(ctx, t, key)
	cancel()
	var hit cachedReply
	if err == nil {
		err = json.Unmarshal(raw, &hit)
	}
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			m.log.Warn().Err(err).Str("tenantId", t).Str("traceId", c.meta.TraceID).Msg("response cache read failed; calling the model")
		}
		m.metrics.CacheLookups.WithLabelValues(t, "miss").Inc()
		c.cacheKey = key
		return nil, false
	}
	m.metrics.CacheLookups.WithLabelValues(t, "hit").Inc()
	return &replayStream{model: hit.Model, text: hit.Message}, true
}

// storeCache stores a complete reply under the call's key.
func (m *Meter) storeCache(ctx context.Context, c *call, model, reply string) {
	if c.cacheKey == "" || c.tenant.Cache == nil || c.tenant.Cache.TTLSeconds <= 0 {
		return
	}
	raw, err := json.Marshal(cachedReply{Model: model, Message: reply})
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cacheTimeout)
	defer cancel()
	ttl := time.Duration(c.tenant.Cache.TTLSeconds) * time.Second
	if err := m.cache.Put(ctx, c.tenant.TenantID, c.cacheKey, raw, ttl); err != nil {
		m.log.Warn().Err(err).Str("tenantId", c.tenant.TenantID).Str("traceId", c.meta.TraceID).Msg("response cache write failed")
	}
}

// replayStream is a cached reply, given as one token.
type replayStream struct {
	model string
	text  string
	done  bool
}

func (s *replayStream) Next(context.Context) (string, error) {
	if s.done || s.text == "" {
		return "", io.EOF
	}
	s.done = true
	return s.text, nil
}

func (s *replayStream) Usage() gateway.Usage { return gateway.Usage{} }
func (s *replayStream) Model() string        { return s.model }
func (s *replayStream) Close() error         { return nil }
