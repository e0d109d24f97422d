package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/crispy-enigma/crispy/config"
)

// BucketTenants is the JetStream KV bucket of deployed tenant configs (docs/architecture.md):
// key = tenant ID, value = the config's canonical JSON (CanonicalTenantConfig), one revision per
// deploy, rollback or seed.
const BucketTenants = "tenants"

// DefaultTenantHistory is how many revisions of each tenant the bucket keeps (NATS KV's maximum),
// which is how far back a rollback can go.
const DefaultTenantHistory = 64

// Headers a write to the tenants bucket carries besides the KV protocol's own: who wrote it, from
// where and why. They live on the stream message, so History can show them.
const (
	hdrAction     = "Crispy-Deploy-Action"
	hdrBy         = "Crispy-Deploy-By"
	hdrFrom       = "Crispy-Deploy-From"
	hdrRollbackOf = "Crispy-Rollback-To"
	hdrKVOp       = "KV-Operation"
)

// Actions recorded on each revision.
const (
	ActionDeploy   = "deploy"
	ActionRollback = "rollback"
	ActionSeed     = "seed"   // written by a node from its --tenants-dir
	ActionDelete   = "delete" // a delete marker
)

var (
	// ErrRevisionConflict is returned (wrapped) when the tenant's deployed revision is not the one
	// the caller validated against: someone deployed in between, so the caller must re-validate.
	ErrRevisionConflict = errors.New("tenant was changed concurrently")
	// ErrNoTenantsBucket is returned by BindTenantStore when the NATS it talks to has no tenants
	// bucket: it is not a crispy node's NATS, or the node has not started yet.
	ErrNoTenantsBucket = errors.New("no tenants bucket (is this a crispy node's NATS, and has it started?)")
)

// TenantRevision is one revision of a tenant's deployed config.
type TenantRevision struct {
	TenantID string
	Revision uint64
	Time     time.Time
	// Digest is the hex SHA-256 of Value (ShortDigest for display).
	Digest  string
	Deleted bool
	Action  string // ActionDeploy, ActionRollback, ActionSeed, ActionDelete; "" for a plain KV put
	By      string // who wrote it (user name), when recorded
	From    string // where from (host or node name), when recorded
	// RollbackTo is the revision a rollback restored.
	RollbackTo uint64
	Value      []byte
}

// ShortDigest is the first 12 hex digits of Digest.
func (r TenantRevision) ShortDigest() string { return ShortDigest(r.Digest) }

// ShortDigest shortens a hex digest for display.
func ShortDigest(d string) string {
	if len(d) > 12 {
		return d[:12]
	}
	return d
}

// Config parses the revision's value strictly (config.ParseTenantConfig). A deployed value was
// validated before it was written, but it is parsed again: the schema may have tightened since.
func (r TenantRevision) Config() (*config.TenantConfig, error) {
	if r.Deleted {
		return nil, fmt.Errorf("store: tenant %q revision %d is a delete marker", r.TenantID, r.Revision)
	}
	cfg, _, err := config.ParseTenantConfig(fmt.Sprintf("%s/%s@%d", BucketTenants, r.TenantID, r.Revision), r.Value)
	if err != nil {
		return nil, err
	}
	if cfg.TenantID != r.TenantID {
		return nil, fmt.Errorf("store: %s/%s@%d holds tenantId %q", BucketTenants, r.TenantID, r.Revision, cfg.TenantID)
	}
	return cfg, nil
}

// CanonicalTenantConfig is the form a config is deployed in: the parsed config (defaults applied,
// hosts normalized, API keys as digests) as indented JSON with sorted map keys. Equal configs give
// equal bytes, so digests compare configs, and the form parses back to the same config.
func CanonicalTenantConfig(cfg *config.TenantConfig) ([]byte, error) {
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("store: encode tenant %q: %w", cfg.TenantID, err)
	}
	return append(b, '\n'), nil
}

// Digest is the hex SHA-256 of a deployed value.
func Digest(value []byte) string {
	sum := sha256.Sum256(value)
	return hex.EncodeToString(sum[:])
}

// WriteMeta says who writes a revision and from where; both are optional.
type WriteMeta struct {
	By   string
	From string
}

// TenantStoreOptions configure the tenants bucket.
type TenantStoreOptions struct {
	Replicas int // 0 means 1; a cluster passes min(3, servers)
	History  int // 0 means DefaultTenantHistory
}

// TenantStore is the tenants bucket: deployed tenant configs with their revision history.
type TenantStore struct {
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	stream jetstream.Stream
}

// OpenTenantStore creates the tenants bucket, or updates its configuration to opts. Nodes call it;
// the CLI uses BindTenantStore, so that it never changes the replica count a node chose.
func OpenTenantStore(ctx context.Context, js jetstream.JetStream, opts TenantStoreOptions) (*TenantStore, error) {
	if opts.Replicas <= 0 {
		opts.Replicas = 1
	}
	if opts.History <= 0 {
		opts.History = DefaultTenantHistory
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      BucketTenants,
		Description: "crispy deployed tenant configs, key = tenant ID, one revision per deploy",
		History:     uint8(min(opts.History, jetstream.KeyValueMaxHistory)),
		Storage:     jetstream.FileStorage,
		Replicas:    opts.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("store: open kv bucket %q: %w", BucketTenants, err)
	}
	return newTenantStore(ctx, js, kv)
}

// allowAtomicPublish turns on atomic batch publishing on the bucket's stream (the KV API has no
// option for it), so DeployBatch can write several tenants as one commit. Nodes and older CLIs
// write single revisions as before.
func allowAtomicPublish(ctx context.Context, js jetstream.JetStream, stream string) error {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("store: stream %s: %w", stream, err)
	}
	cfg := st.CachedInfo().Config
	if cfg.AllowAtomicPublish {
		return nil
	}
	cfg.AllowAtomicPublish = true
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("store: allow atomic publish on %s: %w", stream, err)
	}
	return nil
}

// BindTenantStore opens the existing tenants bucket, or fails with ErrNoTenantsBucket.
func BindTenantStore(ctx context.Context, js jetstream.JetStream) (*TenantStore, error) {
	kv, err := js.KeyValue(ctx, BucketTenants)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("store: %w", ErrNoTenantsBucket)
	}
	if err != nil {
		return nil, fmt.Errorf("store: bind kv bucket %q: %w", BucketTenants, err)
	}
	return newTenantStore(ctx, js, kv)
}

func newTenantStore(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue) (*TenantStore, error) {
	stream, err := BucketStream(ctx, js, BucketTenants)
	if err != nil {
		return nil, fmt.Errorf("store: kv bucket %q stream: %w", BucketTenants, err)
	}
	return &TenantStore{js: js, kv: kv, stream: stream}, nil
}

func tenantSubject(id string) string { return "$KV." + BucketTenants + "." + id }

// Current returns the tenant's latest revision, which may be a delete marker (Deleted), or an error
// wrapping ErrNotFound when the tenant was never written.
func (s *TenantStore) Current(ctx context.Context, tenantID string) (TenantRevision, error) {
	if err := ValidateTenantID(tenantID); err != nil {
		return TenantRevision{}, fmt.Errorf("store: %w", err)
	}
	m, err := s.stream.GetLastMsgForSubject(ctx, tenantSubject(tenantID))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return TenantRevision{}, fmt.Errorf("store: %s/%s: %w", BucketTenants, tenantID, ErrNotFound)
	}
	if err != nil {
		return TenantRevision{}, fmt.Errorf("store: get %s/%s: %w", BucketTenants, tenantID, err)
	}
	return revisionFromMsg(tenantID, m), nil
}

// Get returns the tenant's deployed (live) revision, or an error wrapping ErrNotFound when it was
// never deployed or was deleted.
func (s *TenantStore) Get(ctx context.Context, tenantID string) (TenantRevision, error) {
	r, err := s.Current(ctx, tenantID)
	if err == nil && r.Deleted {
		return TenantRevision{}, fmt.Errorf("store: %s/%s: deleted at revision %d: %w", BucketTenants, tenantID, r.Revision, ErrNotFound)
	}
	return r, err
}

// List returns every deployed (live) tenant's latest revision, sorted by tenant ID.
func (s *TenantStore) List(ctx context.Context) ([]TenantRevision, error) {
	lister, err := s.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: list %s: %w", BucketTenants, err)
	}
	var ids []string
	for k := range lister.Keys() {
		if !slices.Contains(ids, k) { // the lister may repeat a key while the bucket is written
			ids = append(ids, k)
		}
	}
	_ = lister.Stop()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store: list %s: %w", BucketTenants, err)
	}
	slices.Sort(ids)
	out := make([]TenantRevision, 0, len(ids))
	for _, id := range ids {
		r, err := s.Get(ctx, id)
		if errors.Is(err, ErrNotFound) { // deleted since the listing
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// History returns the tenant's kept revisions, oldest first, or an error wrapping ErrNotFound.
func (s *TenantStore) History(ctx context.Context, tenantID string) ([]TenantRevision, error) {
	if err := ValidateTenantID(tenantID); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	entries, err := s.kv.History(ctx, tenantID)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("store: %s/%s: %w", BucketTenants, tenantID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: history %s/%s: %w", BucketTenants, tenantID, err)
	}
	out := make([]TenantRevision, 0, len(entries))
	for _, e := range entries {
		// The KV entry has no headers; the stream message (sequence = revision) has them.
		m, err := s.stream.GetMsg(ctx, e.Revision())
		if err != nil {
			return nil, fmt.Errorf("store: history %s/%s revision %d: %w", BucketTenants, tenantID, e.Revision(), err)
		}
		out = append(out, revisionFromMsg(tenantID, m))
	}
	return out, nil
}

// Revision returns one kept revision of the tenant.
func (s *TenantStore) Revision(ctx context.Context, tenantID string, rev uint64) (TenantRevision, error) {
	hist, err := s.History(ctx, tenantID)
	if err != nil {
		return TenantRevision{}, err
	}
	for _, r := range hist {
		if r.Revision == rev {
			return r, nil
		}
	}
	return TenantRevision{}, fmt.Errorf("store: %s/%s has no revision %d (kept: %s): %w", BucketTenants, tenantID, rev, revisionList(hist), ErrNotFound)
}

func revisionList(hist []TenantRevision) string {
	parts := make([]string, len(hist))
	for i, r := range hist {
		parts[i] = strconv.FormatUint(r.Revision, 10)
	}
	return strings.Join(parts, ", ")
}

// Deploy writes cfg's canonical form as the tenant's new revision, provided the tenant's latest
// revision is still expectRevision (0: never written) — the revision the caller validated the
// whole index against; otherwise it fails with ErrRevisionConflict and writes nothing. The caller
// validates: Deploy only refuses what cannot be a config at all.
func (s *TenantStore) Deploy(ctx context.Context, cfg *config.TenantConfig, expectRevision uint64, meta WriteMeta) (TenantRevision, error) {
	if cfg == nil {
		return TenantRevision{}, errors.New("store: deploy: nil tenant config")
	}
	value, err := CanonicalTenantConfig(cfg)
	if err != nil {
		return TenantRevision{}, err
	}
	return s.write(ctx, cfg.TenantID, value, expectRevision, ActionDeploy, meta, 0)
}

// Rollback restores revision to of the tenant by writing its value again as a new revision (so
// the history keeps what happened), provided the latest revision is still expectRevision.
func (s *TenantStore) Rollback(ctx context.Context, tenantID string, to, expectRevision uint64, meta WriteMeta) (TenantRevision, error) {
	target, err := s.Revision(ctx, tenantID, to)
	if err != nil {
		return TenantRevision{}, err
	}
	if target.Deleted {
		return TenantRevision{}, fmt.Errorf("store: rollback %s to revision %d: it is a delete marker", tenantID, to)
	}
	return s.write(ctx, tenantID, target.Value, expectRevision, ActionRollback, meta, to)
}

// Delete writes a delete marker for the tenant (history is kept), provided the latest revision is
// still expectRevision.
func (s *TenantStore) Delete(ctx context.Context, tenantID string, expectRevision uint64, meta WriteMeta) (TenantRevision, error) {
	return s.write(ctx, tenantID, nil, expectRevision, ActionDelete, meta, 0)
}

func (s *TenantStore) write(ctx context.Context, tenantID string, value []byte, expect uint64, action string, meta WriteMeta, rollbackTo uint64) (TenantRevision, error) {
	m, err := revisionMsg(tenantID, value, action, meta, rollbackTo)
	if err != nil {
		return TenantRevision{}, err
	}
	ack, err := s.js.PublishMsg(ctx, m, jetstream.WithExpectLastSequencePerSubject(expect), jetstream.WithExpectStream("KV_"+BucketTenants))
	if err != nil {
		if IsWrongLastSequence(err) {
			return TenantRevision{}, fmt.Errorf("store: %s %s: expected revision %d: %w", action, tenantID, expect, ErrRevisionConflict)
		}
		return TenantRevision{}, fmt.Errorf("store: %s %s: %w", action, tenantID, err)
	}
	return writtenRevision(tenantID, value, ack.Sequence, action, meta, rollbackTo), nil
}

// MaxDeployBatch is the most tenants DeployBatch writes in one commit: JetStream's limit on an
// atomic batch.
const MaxDeployBatch = 1000

// DeployBatch writes every config as its tenant's new revision in one atomic commit, provided each
// tenant's latest revision is still expect[tenant ID] (0: never written): either all are written,
// or — a revision changed, the stream refused the batch, the connection failed before the commit —
// none is. The revisions are stored contiguously, in the order given.
//
// Why atomic: a deploy --all is validated as a whole (the index must load with every new config),
// so a deploy that stopped halfway left a state nobody validated. JetStream's atomic batch publish
// (ADR-50) checks every message's expected subject sequence at the commit and stores all or none.
func (s *TenantStore) DeployBatch(ctx context.Context, cfgs []*config.TenantConfig, expect map[string]uint64, meta WriteMeta) ([]TenantRevision, error) {
	switch {
	case len(cfgs) == 0:
		return nil, nil
	case len(cfgs) > MaxDeployBatch:
		return nil, fmt.Errorf("store: deploy of %d tenants: at most %d are written atomically", len(cfgs), MaxDeployBatch)
	}
	// A bucket made before DeployBatch existed does not allow it yet.
	if err := allowAtomicPublish(ctx, s.js, "KV_"+BucketTenants); err != nil {
		return nil, err
	}
	batchID := uuid.NewString()
	values := make([][]byte, len(cfgs))
	msgs := make([]*nats.Msg, len(cfgs))
	for i, cfg := range cfgs {
		if cfg == nil {
			return nil, errors.New("store: deploy: nil tenant config")
		}
		value, err := CanonicalTenantConfig(cfg)
		if err != nil {
			return nil, err
		}
		m, err := revisionMsg(cfg.TenantID, value, ActionDeploy, meta, 0)
		if err != nil {
			return nil, err
		}
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(expect[cfg.TenantID], 10))
		m.Header.Set(hdrBatchID, batchID)
		m.Header.Set(hdrBatchSeq, strconv.Itoa(i+1))
		values[i], msgs[i] = value, m
	}
	// Every message but the last is a plain publish; the last commits and is answered for the
	// batch. One connection keeps them in order.
	last := msgs[len(msgs)-1]
	last.Header.Set(hdrBatchCommit, "1")
	nc := s.js.Conn()
	for _, m := range msgs[:len(msgs)-1] {
		if err := nc.PublishMsg(m); err != nil {
			return nil, fmt.Errorf("store: deploy batch: %w", err)
		}
	}
	ack, err := s.js.PublishMsg(ctx, last, jetstream.WithExpectStream("KV_"+BucketTenants))
	if err != nil {
		if IsWrongLastSequence(err) {
			return nil, fmt.Errorf("store: deploy batch: a tenant changed since it was validated: %w", ErrRevisionConflict)
		}
		return nil, fmt.Errorf("store: deploy batch: %w", err)
	}
	// The batch is stored contiguously, ending at the commit's sequence.
	first := ack.Sequence - uint64(len(msgs)-1)
	revs := make([]TenantRevision, len(cfgs))
	for i, cfg := range cfgs {
		revs[i] = writtenRevision(cfg.TenantID, values[i], first+uint64(i), ActionDeploy, meta, 0)
	}
	return revs, nil
}

// Atomic batch publish headers (ADR-50).
const (
	hdrBatchID     = "Nats-Batch-Id"
	hdrBatchSeq    = "Nats-Batch-Sequence"
	hdrBatchCommit = "Nats-Batch-Commit"
)

// IsWrongLastSequence reports a publish refused by its expected last subject sequence: another
// writer wrote the subject since the revision the publisher read.
func IsWrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

func writtenRevision(tenantID string, value []byte, seq uint64, action string, meta WriteMeta, rollbackTo uint64) TenantRevision {
	return TenantRevision{
		TenantID: tenantID, Revision: seq, Time: time.Now().UTC(), Digest: Digest(value),
		Deleted: action == ActionDelete, Action: action, By: meta.By, From: meta.From,
		RollbackTo: rollbackTo, Value: value,
	}
}

// revisionMsg is the KV put (a publish to $KV.<bucket>.<key>, ADR-8) of one revision: publishing
// it directly lets the revision carry who/where headers, which KeyValue.Put cannot.
func revisionMsg(tenantID string, value []byte, action string, meta WriteMeta, rollbackTo uint64) (*nats.Msg, error) {
	if err := ValidateTenantID(tenantID); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	m := &nats.Msg{Subject: tenantSubject(tenantID), Header: nats.Header{}, Data: value}
	m.Header.Set(hdrAction, action)
	if meta.By != "" {
		m.Header.Set(hdrBy, meta.By)
	}
	if meta.From != "" {
		m.Header.Set(hdrFrom, meta.From)
	}
	if rollbackTo > 0 {
		m.Header.Set(hdrRollbackOf, strconv.FormatUint(rollbackTo, 10))
	}
	if action == ActionDelete {
		m.Header.Set(hdrKVOp, "DEL")
	}
	return m, nil
}

func revisionFromMsg(tenantID string, m *jetstream.RawStreamMsg) TenantRevision {
	r := TenantRevision{
		TenantID: tenantID, Revision: m.Sequence, Time: m.Time.UTC(), Digest: Digest(m.Data),
		Value: m.Data,
	}
	if m.Header != nil {
		op := m.Header.Get(hdrKVOp)
		r.Deleted = op == "DEL" || op == "PURGE"
		r.Action, r.By, r.From = m.Header.Get(hdrAction), m.Header.Get(hdrBy), m.Header.Get(hdrFrom)
		r.RollbackTo, _ = strconv.ParseUint(m.Header.Get(hdrRollbackOf), 10, 64)
	}
	if r.Deleted && r.Action == "" {
		r.Action = ActionDelete
	}
	return r
}

// SeedOptions configure Seed.
type SeedOptions struct {
	// Replace lets Seed rewrite a bucket in which every live revision was itself seeded (no deploy
	// or rollback ever made): a single node keeps following its --tenants-dir across restarts until
	// the first deploy. Without it (a cluster), Seed writes only into an empty bucket.
	Replace bool
	Meta    WriteMeta
}

// Seed writes cfgs into the bucket when it holds no deployed tenant (see SeedOptions.Replace), and
// reports how many revisions it wrote. Two nodes seeding at once do not duplicate: every write is
// conditional on the revision read, and a conflict means another node seeded that tenant.
func (s *TenantStore) Seed(ctx context.Context, cfgs []*config.TenantConfig, opts SeedOptions) (int, error) {
	live, err := s.List(ctx)
	if err != nil {
		return 0, err
	}
	if len(live) > 0 {
		if !opts.Replace {
			return 0, nil
		}
		for _, r := range live {
			if r.Action != ActionSeed {
				return 0, nil // deployed by an operator: the bucket is the source of truth
			}
		}
	}
	wrote := 0
	want := make(map[string]bool, len(cfgs))
	for _, c := range cfgs {
		want[c.TenantID] = true
		value, err := CanonicalTenantConfig(c)
		if err != nil {
			return wrote, err
		}
		var expect uint64
		cur, err := s.Current(ctx, c.TenantID)
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			return wrote, err
		default:
			if !cur.Deleted && cur.Digest == Digest(value) {
				continue
			}
			expect = cur.Revision
		}
		if _, err := s.write(ctx, c.TenantID, value, expect, ActionSeed, opts.Meta, 0); err != nil {
			if errors.Is(err, ErrRevisionConflict) {
				continue
			}
			return wrote, err
		}
		wrote++
	}
	if opts.Replace {
		for _, r := range live {
			if want[r.TenantID] {
				continue
			}
			if _, err := s.write(ctx, r.TenantID, nil, r.Revision, ActionDelete, opts.Meta, 0); err != nil && !errors.Is(err, ErrRevisionConflict) {
				return wrote, err
			}
			wrote++
		}
	}
	return wrote, nil
}

// BuildIndex parses every revision and indexes them (config.NewIndex): all or nothing, so one bad
// or conflicting config refuses the whole set.
func BuildIndex(revs []TenantRevision) (*config.Index, error) {
	cfgs := make([]*config.TenantConfig, 0, len(revs))
	var errs []error
	for _, r := range revs {
		c, err := r.Config()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cfgs = append(cfgs, c)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return config.NewIndex(cfgs)
}

// Index builds the index of every deployed tenant; nil (and no error) when none is deployed.
func (s *TenantStore) Index(ctx context.Context) (*config.Index, error) {
	revs, err := s.List(ctx)
	if err != nil || len(revs) == 0 {
		return nil, err
	}
	return BuildIndex(revs)
}

// IndexWatch delivers a new tenant index after every change of the bucket.
type IndexWatch struct {
	w    jetstream.KeyWatcher
	done chan struct{}
}

// WatchIndex watches the bucket and calls apply with an index built from every deployed config:
// once when the current state has been read, then after each change. Changes stored together (a
// deploy --all, DeployBatch) are applied as one index when they arrive together. A state that
// does not index (a config that no longer parses, a host claimed twice) is reported to onError and
// not applied, so the caller keeps its previous index; an empty bucket is not applied either (a node never drops every
// tenant because its bucket was emptied). apply and onError run on the watch's goroutine, one at
// a time. Stop ends the watch and waits for the goroutine.
func (s *TenantStore) WatchIndex(ctx context.Context, apply func(*config.Index, []TenantRevision), onError func(error)) (*IndexWatch, error) {
	w, err := s.kv.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: watch %s: %w", BucketTenants, err)
	}
	iw := &IndexWatch{w: w, done: make(chan struct{})}
	go func() {
		defer close(iw.done)
		state := map[string]jetstream.KeyValueEntry{}
		ready := false
		rebuild := func() {
			revs := make([]TenantRevision, 0, len(state))
			for _, e := range state {
				revs = append(revs, TenantRevision{TenantID: e.Key(), Revision: e.Revision(), Time: e.Created(), Digest: Digest(e.Value()), Value: e.Value()})
			}
			slices.SortFunc(revs, func(a, b TenantRevision) int { return strings.Compare(a.TenantID, b.TenantID) })
			if len(revs) == 0 {
				onError(errors.New("store: tenants bucket has no deployed tenant: keeping the current index"))
				return
			}
			ix, err := BuildIndex(revs)
			if err != nil {
				onError(fmt.Errorf("store: deployed tenants do not index, keeping the current index: %w", err))
				return
			}
			apply(ix, revs)
		}
		updates := w.Updates()
		for {
			e, ok := <-updates
			if !ok {
				return
			}
			if e == nil { // the current state has been delivered
				ready = true
				rebuild()
				continue
			}
			applyEntry(state, e)
			if !ready {
				continue
			}
			// Entries still pending in the stream (Delta) were stored with or before this one, and
			// entries already delivered arrived with it: take them all, so that a deploy --all (one
			// atomic batch of consecutive entries) becomes one index. In a NATS cluster the batch is
			// one raft entry and arrives whole; a standalone server may deliver its first entry
			// before it stored the rest, and then a part is seen first — applied if it indexes, else
			// reported and the previous index kept — until the rest follows.
			for e.Delta() > 0 {
				if e, ok = <-updates; !ok {
					return
				}
				if e == nil {
					break
				}
				applyEntry(state, e)
			}
		drain:
			for {
				select {
				case e, ok := <-updates:
					if !ok {
						return
					}
					if e != nil {
						applyEntry(state, e)
					}
				default:
					break drain
				}
			}
			rebuild()
		}
	}()
	return iw, nil
}

func applyEntry(state map[string]jetstream.KeyValueEntry, e jetstream.KeyValueEntry) {
	if e.Operation() == jetstream.KeyValuePut {
		state[e.Key()] = e
	} else {
		delete(state, e.Key())
	}
}

// Stop ends the watch and waits until apply will not be called again.
func (iw *IndexWatch) Stop() {
	_ = iw.w.Stop()
	<-iw.done
}

// BindLedger returns a Ledger on the existing LEDGER stream without changing its configuration
// (OpenLedger would set its replicas), for tools such as `crispy tenants deploy` that record audit
// events on a node's NATS.
func BindLedger(ctx context.Context, js jetstream.JetStream) (*Ledger, error) {
	if _, err := js.Stream(ctx, LedgerStream); err != nil {
		return nil, fmt.Errorf("store: bind ledger stream: %w", err)
	}
	return newLedger(js)
}

// Audit event kinds of tenant deployment (projected into the audit table).
const (
	KindTenantDeployed   = "tenant_deployed"
	KindTenantRolledBack = "tenant_rolled_back"
)

// TenantAuditEvent builds the ledger event for a deploy or rollback revision r; previous is the
// revision it replaced (0: none). The ID is derived from the revision, so a retried append is
// stored once.
func TenantAuditEvent(r TenantRevision, previous uint64) Event {
	kind := KindTenantDeployed
	if r.Action == ActionRollback {
		kind = KindTenantRolledBack
	}
	detail := map[string]any{
		"revision": r.Revision, "digest": r.ShortDigest(), "previousRevision": previous,
		"by": r.By, "from": r.From,
	}
	if r.RollbackTo > 0 {
		detail["rollbackTo"] = r.RollbackTo
	}
	return Event{
		ID:       fmt.Sprintf("%s-%s-%d", kind, r.TenantID, r.Revision),
		Kind:     kind,
		TenantID: r.TenantID,
		Time:     r.Time,
		Subject:  "revision " + strconv.FormatUint(r.Revision, 10),
		Outcome:  "ok",
		Detail:   detail,
	}
}
