package console

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Member is one cluster member as this node sees it.
type Member struct {
	ID      string   `json:"id"`
	Address string   `json:"address"`
	Kinds   []string `json:"kinds"`
	State   string   `json:"state"` // up | blocked
	Self    bool     `json:"self"`
}

// MemberLister lists the cluster members this node sees (ProtoMembers adapts a protoactor cluster).
type MemberLister interface {
	Members() []Member
}

// MemberGrains is one member's grain activations by kind.
type MemberGrains struct {
	Member string         `json:"member"`
	Node   string         `json:"node"`
	Kinds  map[string]int `json:"kinds"`
}

// GrainReporter reports every member's grain activations (GrainStats asks them over NATS).
type GrainReporter interface {
	Grains(ctx context.Context) ([]MemberGrains, error)
}

// OperatorDeps are the operator view's data sources; each may be nil, and its panel then says so.
type OperatorDeps struct {
	Node      string
	Token     string // when set, /operator/api/ requires "Authorization: Bearer <token>"
	Members   MemberLister
	Grains    GrainReporter
	JetStream jetstream.JetStream // streams with leaders and replicas; ledger projector lag
	Gatherer  prometheus.Gatherer // the node's Prometheus registry: per-tenant HTTP series
	Now       func() time.Time
}

// OperatorHandler serves the operator view under /operator/ (on the admin listener only). The page
// and its scripts carry no data and load without a token, because a browser cannot send a header
// when it navigates; the data under /operator/api/ needs the admin token when one is set.
func OperatorHandler(d OperatorDeps) http.Handler {
	if d.Now == nil {
		d.Now = time.Now
	}
	op := &operator{d: d}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /operator/api/overview", op.overview)
	var api http.Handler = mux
	if d.Token != "" {
		want := []byte("Bearer " + d.Token)
		api = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
				w.Header().Set("WWW-Authenticate", "Bearer")
				writeJSONError(w, http.StatusUnauthorized, "unauthorized", "the admin token is missing or wrong")
				return
			}
			mux.ServeHTTP(w, r)
		})
	}
	s, err := newSite("/operator/", "operator", api)
	if err != nil {
		panic(err) // embedded at build time
	}
	return s
}

type operator struct{ d OperatorDeps }

// overview is everything the page shows, in one answer: the page polls it.
type overview struct {
	Node      string         `json:"node"`
	Time      time.Time      `json:"time"`
	Members   []Member       `json:"members"`
	Grains    []MemberGrains `json:"grains"`
	Streams   []StreamInfo   `json:"streams"`
	Projector []ProjectorLag `json:"projectors"`
	Tenants   []TenantSeries `json:"tenants"`
	Errors    []string       `json:"errors,omitempty"` // panels that could not be filled, and why
}

// panelTimeout bounds each data source, so one stuck source cannot hang the page.
const panelTimeout = 3 * time.Second

func (op *operator) overview(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), panelTimeout)
	defer cancel()
	out := overview{Node: op.d.Node, Time: op.d.Now().UTC(), Members: []Member{}, Grains: []MemberGrains{},
		Streams: []StreamInfo{}, Projector: []ProjectorLag{}, Tenants: []TenantSeries{}}
	fail := func(panel string, err error) { out.Errors = append(out.Errors, panel+": "+err.Error()) }
	if op.d.Members != nil {
		out.Members = op.d.Members.Members()
	}
	if op.d.Grains != nil {
		if g, err := op.d.Grains.Grains(ctx); err != nil {
			fail("grains", err)
		} else {
			out.Grains = g
		}
	}
	if op.d.JetStream != nil {
		if st, err := Streams(ctx, op.d.JetStream); err != nil {
			fail("streams", err)
		} else {
			out.Streams = st
		}
		if pl, err := ProjectorLags(ctx, op.d.JetStream); err != nil {
			fail("projectors", err)
		} else {
			out.Projector = pl
		}
	}
	if op.d.Gatherer != nil {
		if ts, err := TenantHTTPSeries(op.d.Gatherer); err != nil {
			fail("tenants", err)
		} else {
			out.Tenants = ts
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeJSONError answers in the API's envelope shape, so the page shows errors one way.
func writeJSONError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"ok": false, "error": map[string]string{"code": code, "message": msg}})
}

// StreamInfo is one JetStream stream with its placement.
type StreamInfo struct {
	Name     string        `json:"name"`
	Replicas int           `json:"replicas"`
	Leader   string        `json:"leader"`
	Peers    []StreamPeer  `json:"peers"`
	Messages uint64        `json:"messages"`
	Bytes    uint64        `json:"bytes"`
	Subjects []string      `json:"subjects"`
	Created  time.Time     `json:"created"`
	MaxAge   time.Duration `json:"maxAgeNs"`
}

// StreamPeer is a replica of a stream other than its leader.
type StreamPeer struct {
	Name    string `json:"name"`
	Current bool   `json:"current"`
	Lag     uint64 `json:"lag"`
	Offline bool   `json:"offline"`
}

// maxStreams bounds the listing (KV buckets and object stores are streams too).
const maxStreams = 200

// Streams lists the JetStream streams with their leader and replicas, by name.
func Streams(ctx context.Context, js jetstream.JetStream) ([]StreamInfo, error) {
	lister := js.ListStreams(ctx)
	out := []StreamInfo{}
	for si := range lister.Info() {
		if len(out) >= maxStreams {
			break
		}
		s := StreamInfo{
			Name: si.Config.Name, Replicas: si.Config.Replicas, Messages: si.State.Msgs, Bytes: si.State.Bytes,
			Subjects: si.Config.Subjects, Created: si.Created, MaxAge: si.Config.MaxAge, Peers: []StreamPeer{},
		}
		if si.Cluster != nil {
			s.Leader = si.Cluster.Leader
			for _, p := range si.Cluster.Replicas {
				s.Peers = append(s.Peers, StreamPeer{Name: p.Name, Current: p.Current, Lag: p.Lag, Offline: p.Offline})
			}
		}
		out = append(out, s)
	}
	if err := lister.Err(); err != nil && !errors.Is(err, jetstream.ErrEndOfData) {
		return out, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ProjectorLag is one node's ledger projector: how far its SQLite read model is behind LEDGER.
type ProjectorLag struct {
	Consumer    string    `json:"consumer"`
	Pending     uint64    `json:"pending"`    // events not yet delivered to it
	AckPending  int       `json:"ackPending"` // delivered, not yet applied
	Lag         uint64    `json:"lag"`        // pending + ackPending
	Delivered   uint64    `json:"delivered"`  // last stream sequence delivered
	LastSeq     uint64    `json:"lastSeq"`    // the stream's last sequence
	LastActive  time.Time `json:"lastActive,omitempty"`
	Redelivered int       `json:"redelivered"`
}

// ledgerStream and projectorPrefix name what cmd/crispy creates: the LEDGER stream and one durable
// consumer per node, "projector-<node>".
const (
	ledgerStream    = "LEDGER"
	projectorPrefix = "projector-"
)

// ProjectorLags reports every node's projector consumer on LEDGER.
func ProjectorLags(ctx context.Context, js jetstream.JetStream) ([]ProjectorLag, error) {
	st, err := js.Stream(ctx, ledgerStream)
	if err != nil {
		return nil, err
	}
	last := st.CachedInfo().State.LastSeq
	lister := st.ListConsumers(ctx)
	out := []ProjectorLag{}
	for ci := range lister.Info() {
		if !strings.HasPrefix(ci.Name, projectorPrefix) || len(out) >= maxStreams {
			continue
		}
		p := ProjectorLag{
			Consumer: ci.Name, Pending: ci.NumPending, AckPending: ci.NumAckPending,
			Lag: ci.NumPending + uint64(max(ci.NumAckPending, 0)), Delivered: ci.Delivered.Stream, LastSeq: last,
			Redelivered: ci.NumRedelivered,
		}
		if ci.Delivered.Last != nil {
			p.LastActive = *ci.Delivered.Last
		}
		out = append(out, p)
	}
	if err := lister.Err(); err != nil && !errors.Is(err, jetstream.ErrEndOfData) {
		return out, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Consumer < out[j].Consumer })
	return out, nil
}
