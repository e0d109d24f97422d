package natsserver

import (
	"errors"
	"fmt"
	"sync"
	"time"
	_ "unsafe" // go:linkname to nats-server's raft timing
)

// nats-server keeps its raft timing in unexported package variables (server/raft.go) that no
// option sets; its own tests shorten them the same way. These names reach them. They are
// checked against the pinned nats-server version by TestRaftTimingDefaults: a rename there fails
// the build (missing symbol), a changed default fails that test.
//
//go:linkname raftMinElection github.com/nats-io/nats-server/v2/server.minElectionTimeout
var raftMinElection time.Duration

//go:linkname raftMaxElection github.com/nats-io/nats-server/v2/server.maxElectionTimeout
var raftMaxElection time.Duration

//go:linkname raftHeartbeat github.com/nats-io/nats-server/v2/server.hbInterval
var raftHeartbeat time.Duration

//go:linkname raftLostQuorum github.com/nats-io/nats-server/v2/server.lostQuorumInterval
var raftLostQuorum time.Duration

//go:linkname raftLostQuorumCheck github.com/nats-io/nats-server/v2/server.lostQuorumCheck
var raftLostQuorumCheck time.Duration

// DefaultElectionTimeout is the ElectionTimeout crispy runs its embedded cluster with. With
// nats-server's own (4 s) a stream whose leader's server died refused writes for 4–9 s, and the
// first request of a chat session of a SIGKILLed node succeeded after 6–7 s; with 500 ms it succeeds
// after 1.1–1.9 s. With 1 s it took 1.2–4.2 s: a grain's store call that went out before the new
// leader was up is retried only after its 1 s attempt (docs/architecture.md, Failover).
const DefaultElectionTimeout = 500 * time.Millisecond

// MinElectionTimeout is the shortest ElectionMin Start accepts: below it, a stalled process (GC, a
// starved CPU) deposes healthy leaders too easily.
const MinElectionTimeout = 400 * time.Millisecond

// RaftTiming is the timing of every raft group (JetStream's meta group, each replicated stream and
// consumer) of the servers in this process.
type RaftTiming struct {
	// ElectionMin and ElectionMax bound the random time a follower waits without hearing from its
	// leader before it calls an election. A dead leader is replaced after about that long.
	ElectionMin, ElectionMax time.Duration
	// Heartbeat is how often an idle leader tells its followers it is alive.
	Heartbeat time.Duration
	// LostQuorum is how long a leader that hears from no quorum of followers keeps leading;
	// LostQuorumCheck is how often it checks.
	LostQuorum, LostQuorumCheck time.Duration
}

// natsRaftTiming is nats-server's own timing (server/raft.go): election after 4–9 s, heartbeats
// every second, leadership given up after 10 s without a quorum.
func natsRaftTiming() RaftTiming {
	return RaftTiming{
		ElectionMin: 4 * time.Second, ElectionMax: 9 * time.Second, Heartbeat: time.Second,
		LostQuorum: 10 * time.Second, LostQuorumCheck: 10 * time.Second,
	}
}

// ScaledRaftTiming is the timing for followers that call an election after electionTimeout to
// twice that (ElectionMin, ElectionMax) without hearing from their leader.
//
// The leader's idle heartbeat is an eighth of electionTimeout. nats-server's own ratio is a
// quarter (1 s against 4 s), but an idle leader sends a heartbeat only when nothing else went out for
// a whole interval, checked once per interval: followers can go two intervals without a word. With
// an eighth, a follower still has three quarters of the election timeout of slack for a stalled
// process (GC, a starved CPU) before it deposes a healthy leader. nats-server's tests use a
// thirtieth.
//
// A leader that hears from no quorum steps down after 2.5 election timeouts, checked as often: the
// ratio of nats-server's 10 s to its 4 s.
//
// 0 means nats-server's own timing (4–9 s, heartbeat 1 s, lost quorum after 10 s).
func ScaledRaftTiming(electionTimeout time.Duration) RaftTiming {
	if electionTimeout <= 0 {
		return natsRaftTiming()
	}
	lostQuorum := electionTimeout * 5 / 2
	return RaftTiming{
		ElectionMin: electionTimeout, ElectionMax: 2 * electionTimeout, Heartbeat: electionTimeout / 8,
		LostQuorum: lostQuorum, LostQuorumCheck: lostQuorum,
	}
}

func (r RaftTiming) validate() error {
	switch {
	case r.ElectionMin < MinElectionTimeout:
		return fmt.Errorf("natsserver: raft election timeout %s below %s", r.ElectionMin, MinElectionTimeout)
	case r.ElectionMax <= r.ElectionMin:
		// nats-server draws a random duration in [min, max) and panics on an empty range.
		return fmt.Errorf("natsserver: raft election timeout range %s–%s is empty", r.ElectionMin, r.ElectionMax)
	case r.Heartbeat <= 0 || r.Heartbeat*2 > r.ElectionMin:
		return fmt.Errorf("natsserver: raft heartbeat %s must be positive and at most half the election timeout %s", r.Heartbeat, r.ElectionMin)
	case r.LostQuorum <= r.ElectionMin || r.LostQuorumCheck <= 0:
		return fmt.Errorf("natsserver: raft lost-quorum interval %s must exceed the election timeout %s", r.LostQuorum, r.ElectionMin)
	}
	return nil
}

// raftTimings guards the linked variables. They belong to the process, not to one server: raft
// goroutines of every running server read them, so they may only be written while no clustered
// server runs here, and two servers in one process must agree on them. A node runs one server;
// tests run several, all with the same timing.
type raftTimings struct {
	mu      sync.Mutex
	running int // clustered servers started and not yet shut down
}

// processRaft is package state because what it guards is: nats-server's variables are per process.
var processRaft raftTimings

// acquire applies t for a server about to start, or checks that the running ones use it too.
func (p *raftTimings) acquire(t RaftTiming) error {
	if err := t.validate(); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if cur := currentRaftTiming(); cur != t {
		if p.running > 0 {
			return errors.New("natsserver: a clustered server with another raft timing runs in this process: " + cur.String())
		}
		raftMinElection, raftMaxElection, raftHeartbeat = t.ElectionMin, t.ElectionMax, t.Heartbeat
		raftLostQuorum, raftLostQuorumCheck = t.LostQuorum, t.LostQuorumCheck
	}
	p.running++
	return nil
}

func (p *raftTimings) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.running--
}

// currentRaftTiming reads the linked variables.
func currentRaftTiming() RaftTiming {
	return RaftTiming{
		ElectionMin: raftMinElection, ElectionMax: raftMaxElection, Heartbeat: raftHeartbeat,
		LostQuorum: raftLostQuorum, LostQuorumCheck: raftLostQuorumCheck,
	}
}

func (r RaftTiming) String() string {
	return fmt.Sprintf("election %s–%s, heartbeat %s, lost quorum after %s", r.ElectionMin, r.ElectionMax, r.Heartbeat, r.LostQuorum)
}
