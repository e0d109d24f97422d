// Package natskv is a protoactor cluster membership provider on a NATS JetStream key-value bucket.
//
// Every member owns one key, "<cluster name>.<member ID>", whose value describes how to reach it
// (host, port, grain kinds). The member rewrites the key every Heartbeat; the bucket's TTL removes the
// key of a member that stopped writing (a crash), and a graceful shutdown deletes it at once. Every
// member and client watches the keys of its cluster and hands the full member set to protoactor's
// MemberList on each change.
//
// Member IDs are protoactor's actor system IDs, which are random per actor system: a node that
// restarts under the same name joins as a new member. That matters because protoactor blocks a
// departed member ID forever.
package natskv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/cluster"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/crispy-enigma/crispy/store"
)

// Defaults of Options.
const (
	DefaultBucket = "members"
	DefaultTTL    = 6 * time.Second
)

// minMarkerTTL is how long the server keeps the delete marker of an expired key. Watchers that are
// connected see the marker at once; it only has to outlive a watcher's reconnect, and a watcher that
// misses it anyway is covered by the reconcile pass. The server requires at least one second.
const minMarkerTTL = time.Minute

// opTimeout bounds each NATS call made outside the heartbeat loop (the final delete, a watcher
// restart).
const opTimeout = 5 * time.Second

// setupTimeout bounds StartMember and StartClient. It is long enough for a NATS cluster whose servers
// start together to elect a JetStream leader: bucket creation is retried until then.
const setupTimeout = 20 * time.Second

// setupRetry is the pause between attempts to create the bucket.
const setupRetry = 250 * time.Millisecond

// Options configure a Provider. Zero values take the documented defaults.
type Options struct {
	// Bucket is the KV bucket holding one key per member (default "members"). Several clusters can
	// share it: keys are prefixed with the cluster name.
	Bucket string
	// TTL is how long a member's key lives without a heartbeat, so how long a crashed member stays in
	// the topology (default 6s; the server needs at least 1s).
	TTL time.Duration
	// Heartbeat is how often a member rewrites its key (default TTL/3: two heartbeats can be lost
	// before peers drop the member, which they then never take back under the same ID).
	Heartbeat time.Duration
	// Replicas of the bucket's stream in a NATS cluster (default 1; use min(3, servers)).
	Replicas int
	// Logger receives membership changes and NATS failures.
	Logger zerolog.Logger

	// noMarkers creates the bucket without subject delete markers, so expiry is found only by the
	// reconcile pass (what happens on servers older than 2.11). Tests use it to cover that path.
	noMarkers bool
}

// Provider is a cluster.ClusterProvider backed by a NATS KV bucket. A Provider serves one cluster
// instance: create a new one for every cluster.Cluster.
type Provider struct {
	js   jetstream.JetStream
	opts Options
	log  zerolog.Logger

	mu      sync.Mutex
	started bool
	stopped bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	kv      jetstream.KeyValue
	selfKey string // empty for a client
	// health tracks this member's own heartbeats; nil for a client (and in watch-only tests).
	health *heartbeatHealth
}

// heartbeatHealth records since when this member's heartbeat writes have been succeeding without a
// failure in between.
//
// Why it exists: when the NATS server leading the bucket's stream dies, JetStream elects a new leader
// after its raft election timeout: 4–9 s with nats-server's own timing (an external NATS), longer
// than the default member TTL; 0.5–1 s with the embedded server's default, but an election can fail
// and be repeated, and a loaded host stretches it. No member can heartbeat meanwhile, so when the
// bucket is writable again every key may be older than the TTL and expire at once, survivors
// included. Dropping a survivor would be permanent (protoactor blocks a departed member ID forever),
// so expiry is trusted only once this member's own heartbeats have been succeeding for a whole TTL:
// by then every live peer has rewritten its key too.
type heartbeatHealth struct {
	mu    sync.Mutex
	since time.Time // start of the current run of successful writes; zero after a failure
}

func (h *heartbeatHealth) record(now time.Time, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case err != nil:
		h.since = time.Time{}
	case h.since.IsZero():
		h.since = now
	}
}

// healthyFor is how long the heartbeats have been succeeding (0 while failing).
func (h *heartbeatHealth) healthyFor(now time.Time) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.since.IsZero() {
		return 0
	}
	return now.Sub(h.since)
}

// probeEvery is how often a member probes its peers' remote ports (watch.probe): twice per
// heartbeat, at most every 500 ms.
func (p *Provider) probeEvery() time.Duration {
	return min(p.opts.Heartbeat/2, 500*time.Millisecond)
}

// expiryTrusted reports whether a member key that expired means the member is gone, rather than that
// the bucket could not be written for a while (see heartbeatHealth). Clients do not heartbeat and
// trust expiry.
func (p *Provider) expiryTrusted(now time.Time) bool {
	return p.health == nil || p.health.healthyFor(now) >= p.opts.TTL
}

var _ cluster.ClusterProvider = (*Provider)(nil)

// New returns a provider that keeps membership in js, in the bucket opts.Bucket.
func New(js jetstream.JetStream, opts Options) *Provider {
	if opts.Bucket == "" {
		opts.Bucket = DefaultBucket
	}
	if opts.TTL <= 0 {
		opts.TTL = DefaultTTL
	}
	if opts.Heartbeat <= 0 || opts.Heartbeat >= opts.TTL {
		opts.Heartbeat = opts.TTL / 3
	}
	if opts.Replicas <= 0 {
		opts.Replicas = 1
	}
	return &Provider{
		js:   js,
		opts: opts,
		log:  opts.Logger.With().Str("component", "natskv").Str("bucket", opts.Bucket).Logger(),
	}
}

// record is the value of a member's key: what peers need to build a cluster.Member.
type record struct {
	ID    string   `json:"id"`
	Host  string   `json:"host"`
	Port  int      `json:"port"`
	Kinds []string `json:"kinds"`
}

func (r record) member() *cluster.Member {
	return &cluster.Member{Id: r.ID, Host: r.Host, Port: int32(r.Port), Kinds: append([]string(nil), r.Kinds...)}
}

// StartMember registers this member and starts the heartbeat and the watcher. It returns after the
// first topology (the bucket's current members plus this one) has been published.
func (p *Provider) StartMember(c *cluster.Cluster) error {
	host, port, err := c.ActorSystem.GetHostPort()
	if err != nil {
		return fmt.Errorf("natskv: member address: %w", err)
	}
	kinds := c.GetClusterKinds()
	sort.Strings(kinds)
	self := &record{ID: c.ActorSystem.ID, Host: host, Port: port, Kinds: kinds}
	return p.start(c, self)
}

// StartClient watches the members without registering.
func (p *Provider) StartClient(c *cluster.Cluster) error {
	return p.start(c, nil)
}

func (p *Provider) start(c *cluster.Cluster, self *record) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started {
		return errors.New("natskv: provider already started; create one per cluster instance")
	}
	prefix, err := keyPrefix(c.Config.Name)
	if err != nil {
		return err
	}
	selfKey := ""
	var value []byte
	if self != nil {
		if !validToken.MatchString(self.ID) {
			return fmt.Errorf("natskv: member ID %q is not a valid key token", self.ID)
		}
		selfKey = prefix + self.ID
		if value, err = json.Marshal(self); err != nil {
			return fmt.Errorf("natskv: encode member: %w", err)
		}
	}

	setupCtx, cancelSetup := context.WithTimeout(context.Background(), setupTimeout)
	defer cancelSetup()
	kv, err := p.openBucketRetry(setupCtx)
	if err != nil {
		return err
	}
	if self != nil {
		if _, err := kv.Put(setupCtx, selfKey, value); err != nil {
			return fmt.Errorf("natskv: register member %s: %w", self.ID, err)
		}
		p.health = &heartbeatHealth{}
		p.health.record(time.Now(), nil)
	}

	ctx, cancel := context.WithCancel(context.Background())
	w := &watch{
		p:       p,
		kv:      kv,
		ml:      c.MemberList,
		prefix:  prefix,
		self:    self,
		members: map[string]record{},
		log:     p.log.With().Str("cluster", c.Config.Name).Str("member", selfKeyID(self)).Logger(),
	}
	// The first snapshot is read here, so that protoactor starts with the members that are already
	// up instead of with itself alone.
	watcher, err := w.snapshot(setupCtx, ctx)
	if err != nil {
		cancel()
		return err
	}

	p.started, p.cancel, p.kv, p.selfKey = true, cancel, kv, selfKey
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		w.run(ctx, watcher)
	}()
	if self != nil {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.heartbeat(ctx, kv, selfKey, value, w.log)
		}()
	}
	w.log.Info().Dur("ttl", p.opts.TTL).Dur("heartbeat", p.opts.Heartbeat).Bool("client", self == nil).
		Msg("cluster membership started")
	return nil
}

// Shutdown stops the heartbeat and the watcher. graceful also deletes this member's key, so peers drop
// it at once; otherwise the key is left to expire after the TTL, as after a crash.
func (p *Provider) Shutdown(graceful bool) error {
	p.mu.Lock()
	if !p.started || p.stopped {
		p.mu.Unlock()
		return nil
	}
	p.stopped = true
	p.cancel()
	p.mu.Unlock()
	// Wait for the heartbeat to end before deleting, or a heartbeat in flight could re-create the key.
	p.wg.Wait()

	if !graceful || p.selfKey == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := p.kv.Delete(ctx, p.selfKey); err != nil {
		return fmt.Errorf("natskv: deregister %s: %w", p.selfKey, err)
	}
	p.log.Info().Str("key", p.selfKey).Msg("cluster member deregistered")
	return nil
}

// openBucketRetry calls openBucket until it succeeds or ctx ends: right after a NATS cluster starts,
// JetStream has no leader yet and refuses to create streams for a moment.
func (p *Provider) openBucketRetry(ctx context.Context) (jetstream.KeyValue, error) {
	return store.RetryValue(ctx, store.Retry{Pause: setupRetry, Always: true, OnRetry: func(_ int, err error) {
		p.log.Debug().Err(err).Msg("membership bucket not available yet; retrying")
	}}, p.openBucket)
}

// openBucket creates the bucket or brings an existing one to this configuration.
//
// Expiry uses the bucket TTL (the stream's MaxAge): every heartbeat Put is a new message with a fresh
// age and History 1 drops the previous one, so a key disappears TTL after its last heartbeat. Per-key
// TTLs (KeyTTL) would not help: they are set only by Create, not by the Put a heartbeat does. What the
// TTL alone does not give is a notification: the server removes the message silently. LimitMarkerTTL
// (subject delete markers, NATS server 2.11+) makes the server write a marker when MaxAge removes a
// key's last message, which watchers receive as a Purge, so peers drop a crashed member as soon as
// its key expires. On older servers the bucket is created without markers and the reconcile pass
// (watch.reconcile, every Heartbeat) finds expired keys instead.
func (p *Provider) openBucket(ctx context.Context) (jetstream.KeyValue, error) {
	cfg := jetstream.KeyValueConfig{
		Bucket:      p.opts.Bucket,
		Description: "protoactor cluster members: one key per running member, rewritten every heartbeat",
		History:     1,
		TTL:         p.opts.TTL,
		Replicas:    p.opts.Replicas,
	}
	if !p.opts.noMarkers {
		cfg.LimitMarkerTTL = max(minMarkerTTL, p.opts.TTL)
	}
	kv, err := p.js.CreateOrUpdateKeyValue(ctx, cfg)
	if errors.Is(err, jetstream.ErrLimitMarkerTTLNotSupported) {
		p.log.Warn().Msg("NATS server has no subject delete markers; expired members are found by polling")
		cfg.LimitMarkerTTL = 0
		kv, err = p.js.CreateOrUpdateKeyValue(ctx, cfg)
	}
	if err != nil {
		return nil, fmt.Errorf("natskv: open bucket %q: %w", p.opts.Bucket, err)
	}
	return kv, nil
}

// heartbeat rewrites the member's key every Heartbeat until ctx ends. A failed write is retried on the
// next tick; two in a row still leave the key alive with the default Heartbeat of TTL/3.
func (p *Provider) heartbeat(ctx context.Context, kv jetstream.KeyValue, key string, value []byte, log zerolog.Logger) {
	t := time.NewTicker(p.opts.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		putCtx, cancel := context.WithTimeout(ctx, p.opts.Heartbeat)
		_, err := kv.Put(putCtx, key, value)
		cancel()
		p.health.record(time.Now(), err)
		if err != nil && ctx.Err() == nil {
			log.Warn().Err(err).Msg("membership heartbeat failed")
		}
	}
}

// validToken is what a cluster name or member ID may contain: one NATS subject token of KV key
// characters, so that "<cluster>.<member>" is a valid key and "<cluster>.>" matches only its members.
var validToken = regexp.MustCompile(`^[-_=a-zA-Z0-9]+$`)

func keyPrefix(clusterName string) (string, error) {
	if !validToken.MatchString(clusterName) {
		return "", fmt.Errorf("natskv: cluster name %q must match %s", clusterName, validToken)
	}
	return clusterName + ".", nil
}

func selfKeyID(self *record) string {
	if self == nil {
		return "client"
	}
	return self.ID
}

// memberIDFromKey returns the member ID of a key under prefix.
func memberIDFromKey(prefix, key string) (string, bool) {
	id, ok := strings.CutPrefix(key, prefix)
	return id, ok && validToken.MatchString(id)
}
