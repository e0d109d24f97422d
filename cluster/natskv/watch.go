package natskv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"syscall"
	"time"

	"github.com/asynkron/protoactor-go/cluster"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// topology is the part of protoactor's MemberList the watcher drives.
type topology interface {
	UpdateClusterTopology(members cluster.Members)
}

// watch keeps the member set of one cluster from the bucket and publishes it to protoactor. Only the
// goroutine running run touches members, so the topology is published in the order the bucket
// changed.
type watch struct {
	p       *Provider
	kv      jetstream.KeyValue
	ml      topology
	prefix  string
	self    *record // nil for a client
	members map[string]record
	// gone are members found dead by probe; their key may outlive them by up to a TTL, and a
	// snapshot read meanwhile must not bring them back.
	gone map[string]bool
	log  zerolog.Logger
}

// probeTimeout bounds one connection attempt of probe. Only a refusal counts; a timeout (a host
// down, a partition) says nothing and leaves the member to its key's TTL.
const probeTimeout = 300 * time.Millisecond

// snapshot starts a watcher under ctx, reads the bucket's current members (until the watcher's
// end-of-initial-values marker or until initCtx ends), replaces the member set with them and
// publishes it. The watcher goes on delivering changes.
func (w *watch) snapshot(initCtx, ctx context.Context) (jetstream.KeyWatcher, error) {
	watcher, err := w.kv.Watch(ctx, w.prefix+">")
	if err != nil {
		return nil, fmt.Errorf("natskv: watch %s>: %w", w.prefix, err)
	}
	current := map[string]record{}
	for {
		select {
		case <-initCtx.Done():
			_ = watcher.Stop()
			return nil, fmt.Errorf("natskv: read members: %w", initCtx.Err())
		case e, ok := <-watcher.Updates():
			if !ok {
				return nil, errors.New("natskv: watcher closed while reading members")
			}
			if e == nil {
				// A fresh snapshot is authoritative: members missing from it are gone.
				for id := range w.gone {
					delete(current, id)
				}
				w.members = current
				w.publish()
				return watcher, nil
			}
			w.apply(current, e)
		}
	}
}

// run applies the watcher's changes and reconciles every Heartbeat until ctx ends. If the watcher
// closes underneath it, run starts a new one from a fresh snapshot.
func (w *watch) run(ctx context.Context, watcher jetstream.KeyWatcher) {
	reconcile := time.NewTicker(w.p.opts.Heartbeat)
	defer reconcile.Stop()
	probe := time.NewTicker(w.p.probeEvery())
	defer probe.Stop()
	defer func() {
		if watcher != nil {
			_ = watcher.Stop()
		}
	}()
	for {
		var updates <-chan jetstream.KeyValueEntry
		if watcher != nil {
			updates = watcher.Updates()
		}
		select {
		case <-ctx.Done():
			return
		case e, ok := <-updates:
			if !ok {
				w.log.Warn().Msg("membership watcher closed; restarting it")
				watcher = nil
				continue
			}
			if e != nil && w.apply(w.members, e) {
				w.publish()
			}
		case <-reconcile.C:
			if watcher == nil {
				initCtx, cancel := context.WithTimeout(ctx, opTimeout)
				nw, err := w.snapshot(initCtx, ctx)
				cancel()
				if err != nil {
					if ctx.Err() == nil {
						w.log.Warn().Err(err).Msg("restart membership watcher")
					}
					continue
				}
				watcher = nw
				continue
			}
			if w.reconcile(ctx) {
				w.publish()
			}
		case <-probe.C:
			if w.probe(ctx) {
				w.publish()
			}
		}
	}
}

// probe connects to every peer's actor remote (gRPC) port and removes the peers that refuse the
// connection: nothing listens there any more, so the member's process is gone.
//
// Why: the key's TTL alone makes a crashed member leave after the TTL, and much later when the
// crashed node's NATS server led the members bucket, because expiry is then not trusted until the
// bucket has been writable for a TTL after JetStream's leader election (see heartbeatHealth).
// Meanwhile every request to the dead member's grains fails. A refused connection is definite and
// independent of JetStream: a member's remote listens before it registers and until its process
// ends. A timeout is not definite (host down, partition) and is left to the TTL. A node restarted on
// the same port answers again; its old member then leaves by TTL, as before.
func (w *watch) probe(ctx context.Context) bool {
	if w.self == nil || len(w.members) == 0 {
		return false // clients leave membership to the members' keys
	}
	type result struct {
		id      string
		refused bool
	}
	results := make(chan result, len(w.members))
	for id, r := range w.members {
		go func() {
			d := net.Dialer{Timeout: probeTimeout}
			conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(r.Host, strconv.Itoa(r.Port)))
			if err == nil {
				conn.Close()
			}
			results <- result{id: id, refused: errors.Is(err, syscall.ECONNREFUSED)}
		}()
	}
	changed := false
	for range len(w.members) {
		res := <-results
		if !res.refused || ctx.Err() != nil {
			continue
		}
		if w.gone == nil {
			w.gone = map[string]bool{}
		}
		w.gone[res.id] = true
		delete(w.members, res.id)
		w.log.Info().Str("peer", res.id).Msg("cluster member left: its remote refuses connections")
		changed = true
	}
	return changed
}

// apply folds one bucket entry into members and reports whether the member set changed. This
// member's own entry is never stored: self is always part of the topology while it runs.
func (w *watch) apply(members map[string]record, e jetstream.KeyValueEntry) bool {
	id, ok := memberIDFromKey(w.prefix, e.Key())
	if !ok {
		w.log.Warn().Str("key", e.Key()).Msg("ignoring malformed membership key")
		return false
	}
	isSelf := w.self != nil && id == w.self.ID
	switch e.Operation() {
	case jetstream.KeyValuePut:
		if isSelf || w.gone[id] {
			return false
		}
		var r record
		if err := json.Unmarshal(e.Value(), &r); err != nil || r.ID != id {
			w.log.Warn().Err(err).Str("key", e.Key()).Msg("ignoring malformed membership entry")
			return false
		}
		old, known := members[id]
		if known && sameRecord(old, r) {
			return false // a heartbeat
		}
		members[id] = r
		if !known {
			w.log.Info().Str("peer", id).Str("host", r.Host).Int("port", r.Port).Msg("cluster member joined")
		}
		return true
	default: // KeyValueDelete (graceful leave) or KeyValuePurge (TTL expiry marker)
		if isSelf {
			// Our heartbeat lapsed for a whole TTL (or someone deleted the key): peers have dropped
			// and blocked this member ID for good. The heartbeat writes the key again, which helps
			// only peers that join later; the node needs a restart to get a new member ID.
			w.log.Error().Str("op", e.Operation().String()).
				Msg("this member's key was removed while it runs; peers consider it gone until it restarts")
			return false
		}
		if _, known := members[id]; !known {
			return false
		}
		if e.Operation() == jetstream.KeyValuePurge && !w.p.expiryTrusted(time.Now()) {
			// An expiry while our own heartbeats were failing says nothing about the peer: keep it
			// and let reconcile decide once the bucket has been writable for a TTL.
			w.log.Warn().Str("peer", id).Msg("member key expired while heartbeats were failing; keeping it until reconcile")
			return false
		}
		delete(members, id)
		w.log.Info().Str("peer", id).Str("op", e.Operation().String()).Msg("cluster member left")
		return true
	}
}

// reconcile removes members whose key no longer exists. Watchers normally learn of an expiry from
// the server's delete marker; this catches a marker that was missed (older servers write none, and
// a watcher can miss one while reconnecting), and removes the peers whose expiry apply deferred. It
// does nothing while expiry is not trusted (heartbeatHealth). Only a definite "not found" removes a member: protoactor
// never takes a removed member ID back, so a failed lookup keeps it.
func (w *watch) reconcile(ctx context.Context) bool {
	if !w.p.expiryTrusted(time.Now()) {
		return false
	}
	changed := false
	for id := range w.members {
		getCtx, cancel := context.WithTimeout(ctx, w.p.opts.Heartbeat)
		_, err := w.kv.Get(getCtx, w.prefix+id)
		cancel()
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			delete(w.members, id)
			w.log.Info().Str("peer", id).Msg("cluster member expired")
			changed = true
		}
	}
	return changed
}

// publish hands protoactor the full member set, self included.
func (w *watch) publish() {
	ms := make(cluster.Members, 0, len(w.members)+1)
	if w.self != nil {
		ms = append(ms, w.self.member())
	}
	for _, r := range w.members {
		ms = append(ms, r.member())
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Id < ms[j].Id })
	w.ml.UpdateClusterTopology(ms)
}

func sameRecord(a, b record) bool {
	return a.ID == b.ID && a.Host == b.Host && a.Port == b.Port && slices.Equal(a.Kinds, b.Kinds)
}
