package natsserver

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/internal/freeport"
)

// linkedAtInit is what the linked variables hold before any server of this test binary starts:
// nats-server's own values.
var linkedAtInit = currentRaftTiming()

// The linked variables are nats-server's raft timing: they start at the values server/raft.go
// documents. A nats-server upgrade that changes them (or their meaning) fails here.
func TestRaftTimingDefaults(t *testing.T) {
	if want := natsRaftTiming(); linkedAtInit != want {
		t.Fatalf("nats-server's raft timing is %v, this package expects %v: check server/raft.go of the new version", linkedAtInit, want)
	}
}

func TestScaledRaftTiming(t *testing.T) {
	tests := []struct {
		election time.Duration
		want     RaftTiming
	}{
		{0, natsRaftTiming()},
		{-time.Second, natsRaftTiming()},
		{time.Second, RaftTiming{ElectionMin: time.Second, ElectionMax: 2 * time.Second, Heartbeat: 125 * time.Millisecond,
			LostQuorum: 2500 * time.Millisecond, LostQuorumCheck: 2500 * time.Millisecond}},
		{DefaultElectionTimeout, RaftTiming{ElectionMin: 500 * time.Millisecond, ElectionMax: time.Second, Heartbeat: 62500 * time.Microsecond,
			LostQuorum: 1250 * time.Millisecond, LostQuorumCheck: 1250 * time.Millisecond}},
		{MinElectionTimeout, RaftTiming{ElectionMin: 400 * time.Millisecond, ElectionMax: 800 * time.Millisecond, Heartbeat: 50 * time.Millisecond,
			LostQuorum: time.Second, LostQuorumCheck: time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.election.String(), func(t *testing.T) {
			got := ScaledRaftTiming(tt.election)
			if got != tt.want {
				t.Fatalf("ScaledRaftTiming(%s) = %v, want %v", tt.election, got, tt.want)
			}
			if err := got.validate(); err != nil {
				t.Fatalf("scaled timing invalid: %v", err)
			}
		})
	}
}

func TestRaftTimingValidate(t *testing.T) {
	ok := ScaledRaftTiming(time.Second)
	tests := []struct {
		name   string
		change func(*RaftTiming)
		want   string
	}{
		{"election below the minimum", func(r *RaftTiming) { r.ElectionMin = 300 * time.Millisecond }, "below 400ms"},
		{"empty election range", func(r *RaftTiming) { r.ElectionMax = r.ElectionMin }, "range"},
		{"no heartbeat", func(r *RaftTiming) { r.Heartbeat = 0 }, "heartbeat"},
		{"heartbeat too slow for the election", func(r *RaftTiming) { r.Heartbeat = 600 * time.Millisecond }, "heartbeat"},
		{"lost quorum before an election", func(r *RaftTiming) { r.LostQuorum = r.ElectionMin }, "lost-quorum"},
		{"no lost-quorum check", func(r *RaftTiming) { r.LostQuorumCheck = 0 }, "lost-quorum"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ok
			tt.change(&r)
			err := r.validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("validate(%v) = %v, want an error about %q", r, err, tt.want)
			}
		})
	}
}

// config cannot import this package, so its flag's default and bound repeat these constants.
func TestConfigAgreesOnElectionTimeout(t *testing.T) {
	if config.DefaultNATSElectionTimeout != DefaultElectionTimeout {
		t.Errorf("config.DefaultNATSElectionTimeout = %s, natsserver.DefaultElectionTimeout = %s", config.DefaultNATSElectionTimeout, DefaultElectionTimeout)
	}
	if config.MinNATSElectionTimeout != MinElectionTimeout {
		t.Errorf("config.MinNATSElectionTimeout = %s, natsserver.MinElectionTimeout = %s", config.MinNATSElectionTimeout, MinElectionTimeout)
	}
}

// startClustered starts a one-server cluster (routes to nobody) with the given raft timing.
func startClustered(t *testing.T, raft RaftTiming) (*Server, error) {
	t.Helper()
	port := freeport.Port(t)
	return Start(Options{StoreDir: t.TempDir(), ServerName: "raft", ClusterName: "raft", ClusterPort: port,
		Routes: []string{fmt.Sprintf("nats://127.0.0.1:%d", port)}, Raft: raft})
}

// Start applies the asked raft timing to nats-server before the server runs, refuses a second
// timing while a clustered server of this process runs with the first, and takes a new one once
// that server has stopped. A zero timing is the package default; a standalone server changes
// nothing.
func TestStartAppliesRaftTiming(t *testing.T) {
	first := ScaledRaftTiming(700 * time.Millisecond)
	s, err := startClustered(t, first)
	if err != nil {
		t.Fatal(err)
	}
	if got := currentRaftTiming(); got != first {
		t.Fatalf("after Start: nats-server runs with %v, want %v", got, first)
	}
	if s.Raft() != first {
		t.Errorf("Raft() = %v, want %v", s.Raft(), first)
	}

	if other, err := startClustered(t, ScaledRaftTiming(2*time.Second)); err == nil {
		other.Shutdown()
		t.Fatal("a second clustered server with another raft timing started")
	}
	same, err := startClustered(t, first)
	if err != nil {
		t.Fatalf("a second clustered server with the same timing: %v", err)
	}
	same.Shutdown()

	standalone, err := Start(Options{StoreDir: t.TempDir(), Raft: ScaledRaftTiming(3 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	standalone.Shutdown()
	if got := currentRaftTiming(); got != first {
		t.Fatalf("a standalone server changed the raft timing to %v", got)
	}

	s.Shutdown()
	s.Shutdown() // a second Shutdown must not release the process's timing twice
	d, err := startClustered(t, RaftTiming{})
	if err != nil {
		t.Fatalf("after the first server stopped: %v", err)
	}
	defer d.Shutdown()
	if want := ScaledRaftTiming(DefaultElectionTimeout); currentRaftTiming() != want || d.Raft() != want {
		t.Fatalf("zero timing: nats-server runs with %v, want the default %v", currentRaftTiming(), want)
	}
}

// An invalid timing is refused before anything starts.
func TestStartRefusesInvalidRaftTiming(t *testing.T) {
	before := currentRaftTiming()
	bad := ScaledRaftTiming(time.Second)
	bad.ElectionMax = bad.ElectionMin
	if s, err := startClustered(t, bad); err == nil {
		s.Shutdown()
		t.Fatal("started with an empty election range")
	}
	if got := currentRaftTiming(); got != before {
		t.Fatalf("a refused timing changed nats-server's to %v", got)
	}
}
