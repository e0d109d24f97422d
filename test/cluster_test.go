package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	protocluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/crispy-enigma/crispy/test/harness"
)

// Tenants of the cluster tests, added to a copy of ../tenants: loadtest never hits its rate limit,
// ratetest admits exactly rateLimitN requests per minute (burst rateLimitN).
const (
	loadTenant = "loadtest"
	rateTenant = "ratetest"
	rateLimitN = 10
)

// clusterTenants copies ../tenants into a temp dir and adds the test tenants.
func clusterTenants(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("../tenants")); err != nil {
		t.Fatal(err)
	}
	for _, tn := range []struct {
		id         string
		perMinute  int
		burst      int
		allowHost  string
		accountHex string
	}{
		{loadTenant, 1000000, 1000000, "loadtest.local", "00000000000000000000000000000101"},
		{rateTenant, rateLimitN, rateLimitN, "ratetest.local", "00000000000000000000000000000102"},
	} {
		cfg := map[string]any{
			"tenantId": tn.id, "accountId": tn.accountHex, "aiGatewayId": "ai-gate",
			"aiModels":           map[string]any{"chat": "local/extractive", "embeddings": "@cf/baai/bge-m3"},
			"vectorizeNamespace": tn.id,
			"rateLimit":          map[string]any{"perMinute": tn.perMinute, "burst": tn.burst},
			"featureFlags":       map[string]any{},
			"allowedHosts":       []string{tn.allowHost},
			"apiKeys":            []string{},
			"public":             true,
		}
		b, _ := json.MarshalIndent(cfg, "", "  ")
		if err := os.MkdirAll(filepath.Join(dir, tn.id), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, tn.id, "tenant.config.json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// httpClient bounds every request: a request to a grain on a node that was just killed waits for
// the grain request timeout, not forever.
var httpClient = &http.Client{Timeout: 20 * time.Second}

// chatOnce posts a JSON /chat and returns the status (0 on a transport error).
func chatOnce(base, tenant, session, message, user string) int {
	body, _ := json.Marshal(map[string]any{"message": message, "sessionId": session, "stream": false, "userId": user})
	req, _ := http.NewRequest("POST", base+"/chat", bytes.NewReader(body))
	req.Header.Set("content-type", "application/json")
	req.Header.Set("x-tenant-id", tenant)
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// history returns the session's user messages in order, or an error.
func history(base, tenant, session string) ([]string, error) {
	req, _ := http.NewRequest("GET", base+"/chat/"+session+"/history", nil)
	req.Header.Set("x-tenant-id", tenant)
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Data struct {
			Messages []struct{ Role, Content string }
		}
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("history %s: %d %s", session, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	var users []string
	for _, m := range out.Data.Messages {
		if m.Role == "user" {
			users = append(users, m.Content)
		}
	}
	return users, nil
}

// members is the "cluster" component of a node's /readyz on the admin listener: the member
// addresses it sees (a tenant's /health does not show them).
func members(n *harness.Node) ([]string, error) {
	resp, err := httpClient.Get("http://" + n.AdminAddr + "/readyz")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct{ Components map[string]string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	c := out.Components["cluster"]
	_, list, ok := strings.Cut(c, ": ")
	if !ok {
		return nil, fmt.Errorf("cluster component %q", c)
	}
	return strings.Fields(list), nil
}

// waitMembers waits until every running node sees want members.
func waitMembers(t *testing.T, c *harness.Cluster, want int, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		all := true
		var seen []string
		for _, n := range c.Nodes {
			if !n.Running() {
				continue
			}
			ms, err := members(n)
			seen = append(seen, fmt.Sprintf("%s→%v(%v)", n.Addr, ms, err))
			if err != nil || len(ms) != want {
				all = false
			}
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nodes never all saw %d members within %v: %s", want, limit, strings.Join(seen, "; "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// owner is the node whose member owns the ChatSession grain of tenant:session, computed with
// protoactor's own rendezvous hash over the member addresses the nodes report.
func owner(t *testing.T, c *harness.Cluster, tenant, session string) int {
	t.Helper()
	var ms protocluster.Members
	byAddr := map[string]int{}
	for i, n := range c.Nodes {
		addr := n.MemberAddress()
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatalf("node %d member address %q: %v", i, addr, err)
		}
		p, _ := strconv.Atoi(port)
		ms = append(ms, &protocluster.Member{Id: addr, Host: host, Port: int32(p), Kinds: []string{"ChatSession"}})
		byAddr[addr] = i
	}
	r := protocluster.NewRendezvous()
	r.UpdateMembers(ms)
	return byAddr[r.GetByClusterIdentity(&protocluster.ClusterIdentity{Kind: "ChatSession", Identity: tenant + ":" + session})]
}

// TestCluster runs three crispy processes with routed embedded NATS servers and checks, in order on
// one cluster: membership in /health, a rate limit that holds cluster-wide, and under load with one
// node SIGKILLed and restarted: no acknowledged chat message lost or duplicated, sessions of the
// killed owner served with full history by another node, and the time from SIGKILL to the first
// successful request of an affected session (reported, not asserted).
func TestCluster(t *testing.T) {
	c := harness.NewCluster(t, harness.ClusterOptions{Bin: crispyBin, TenantsDir: clusterTenants(t)})
	c.Start(t)

	t.Run("every node sees three members", func(t *testing.T) {
		waitMembers(t, c, 3, 30*time.Second)
		want, _ := members(c.Nodes[0])
		for i, n := range c.Nodes {
			got, err := members(n)
			if err != nil || strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("node %d sees %v (%v), node 0 sees %v", i, got, err, want)
			}
			if !containsStr(got, n.MemberAddress()) {
				t.Errorf("node %d's own member %s missing from %v", i, n.MemberAddress(), got)
			}
		}
	})

	// docs/api.md: rate limit per tenant:user — one RateLimiter activation cluster-wide, so three
	// nodes admit N, not 3N.
	t.Run("rate limit holds across three nodes", func(t *testing.T) {
		counts := map[int]int{}
		for i := range 3 * rateLimitN {
			code := chatOnce(c.Nodes[i%3].URL(), rateTenant, "rl", fmt.Sprintf("rl %d", i), "same-user")
			counts[code]++
		}
		if counts[200] != rateLimitN || counts[429] != 2*rateLimitN {
			t.Fatalf("status counts %v: want %d×200 and %d×429", counts, rateLimitN, 2*rateLimitN)
		}
	})

	t.Run("SIGKILL under load loses no acknowledged message", func(t *testing.T) {
		// The victim is the CHAT stream's leader, the worst case for failover: every session write
		// then waits for JetStream to elect a new leader (see docs/architecture.md, Failover), on top
		// of the membership change that moves the victim's grains.
		victim := leaderNode(t, c, "CHAT")
		// A session the victim owns, with history written before the kill.
		probe := ""
		for i := 0; probe == ""; i++ {
			if s := fmt.Sprintf("probe-%d", i); owner(t, c, loadTenant, s) == victim {
				probe = s
			}
		}
		for i := range 3 {
			if code := chatOnce(c.Nodes[(victim+1+i)%3].URL(), loadTenant, probe, fmt.Sprintf("before kill %d", i), "u"); code != 200 {
				t.Fatalf("probe write %d: %d", i, code)
			}
		}

		ld := newLoad(c, 24)
		ld.start(6)
		time.Sleep(2 * time.Second)
		// Which JetStream streams the victim leads decides the failover time: a stream whose leader
		// dies accepts writes again after a raft election (--nats-election-timeout to twice that).
		// Logged, not asserted: they may have moved since the victim was chosen.
		leaders := streamLeaders(t, c.Nodes[(victim+1)%3], "CHAT", "KV_members")
		c.Nodes[victim].Kill()
		killed := time.Now()

		// Time to the first successful request of a session the dead node owned, through a survivor.
		survivor := c.Nodes[(victim+1)%3]
		var firstOK time.Duration
		for attempt := 0; ; attempt++ {
			t0 := time.Now()
			code := chatOnce(survivor.URL(), loadTenant, probe, fmt.Sprintf("after kill %d", attempt), "u")
			t.Logf("after kill: attempt %d at +%v: %d in %v", attempt, t0.Sub(killed).Round(time.Millisecond), code, time.Since(t0).Round(time.Millisecond))
			if code == 200 {
				firstOK = time.Since(killed)
				ld.ack(probe, fmt.Sprintf("after kill %d", attempt))
				break
			}
			if time.Since(killed) > 60*time.Second {
				t.Fatal("no successful request for the killed owner's session within 60s")
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("SIGKILL → first successful /chat for a session the killed node owned: %v (stream leaders before the kill: %v; victim n%d)",
			firstOK.Round(time.Millisecond), leaders, victim)
		if os.Getenv("CRISPY_CLUSTER_LOGS") != "" {
			t.Logf("killed at %s; survivor log:\n%s", killed.UTC().Format(time.RFC3339Nano), survivor.Output())
		}

		// The moved session has its full history on its new owner, read through the third node.
		other := c.Nodes[(victim+2)%3]
		got, err := history(other.URL(), loadTenant, probe)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if !containsStr(got, fmt.Sprintf("before kill %d", i)) {
				t.Errorf("moved session %s lost %q: %v", probe, fmt.Sprintf("before kill %d", i), got)
			}
		}

		time.Sleep(2 * time.Second)
		// Restart under load: grains move back to the restarted node, a second topology change.
		c.Nodes[victim].Launch(t)
		c.Nodes[victim].WaitReady(t, 90*time.Second)
		waitMembers(t, c, 3, 30*time.Second)
		time.Sleep(2 * time.Second)
		acked, statuses := ld.stop()
		t.Logf("load: %d acknowledged, statuses %v", len(acked), statuses)
		if len(acked) < 50 {
			t.Fatalf("only %d acknowledged messages: the load did not run", len(acked))
		}

		// Every acknowledged user message is in its session's history exactly once, read through
		// every node. Unacknowledged ones may be there (written, then the reply was lost) but
		// never twice.
		bySession := map[string][]string{}
		for _, a := range acked {
			bySession[a.session] = append(bySession[a.session], a.message)
		}
		for s, msgs := range bySession {
			for ni, n := range c.Nodes {
				got, err := history(n.URL(), loadTenant, s)
				if err != nil {
					t.Fatalf("node %d: %v", ni, err)
				}
				count := map[string]int{}
				for _, m := range got {
					count[m]++
					if count[m] == 2 {
						t.Errorf("session %s via node %d: %q stored twice", s, ni, m)
					}
				}
				for _, m := range msgs {
					if count[m] == 0 {
						t.Errorf("session %s via node %d: acknowledged %q lost", s, ni, m)
					}
				}
			}
		}
	})
}

// leaderNode is the index of the node leading stream, asked through node 0; node 1 when JetStream
// does not say (the kill then still checks correctness, only not the worst case).
func leaderNode(t *testing.T, c *harness.Cluster, stream string) int {
	t.Helper()
	leader := streamLeaders(t, c.Nodes[0], stream)[stream]
	for i := range c.Nodes {
		if leader == fmt.Sprintf("n%d", i) {
			return i
		}
	}
	t.Logf("leader of %s unknown (%q): killing node 1", stream, leader)
	return 1
}

// streamLeaders asks JetStream through node n which server leads each stream ("?" if unknown).
func streamLeaders(t *testing.T, n *harness.Node, streams ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	nc, err := nats.Connect(n.NATSURL(), nats.Timeout(2*time.Second))
	if err != nil {
		t.Logf("stream leaders: %v", err)
		return out
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Logf("stream leaders: %v", err)
		return out
	}
	for _, name := range streams {
		out[name] = "?"
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := js.Stream(ctx, name)
		if err == nil && st.CachedInfo().Cluster != nil {
			out[name] = st.CachedInfo().Cluster.Leader
		}
		cancel()
	}
	return out
}

func containsStr(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// load drives POST /chat through every running node of a cluster for many sessions and records
// every acknowledged (200) message.
type load struct {
	c        *harness.Cluster
	sessions int

	mu       sync.Mutex
	acked    []ackedMsg
	statuses map[int]int
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

type ackedMsg struct{ session, message string }

func newLoad(c *harness.Cluster, sessions int) *load {
	ctx, cancel := context.WithCancel(context.Background())
	return &load{c: c, sessions: sessions, statuses: map[int]int{}, ctx: ctx, cancel: cancel}
}

func (l *load) ack(session, message string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.acked = append(l.acked, ackedMsg{session, message})
}

// start runs workers goroutines; worker w sends its i-th message to node i%3 (dead nodes answer
// with connection errors, which count as failures).
func (l *load) start(workers int) {
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; l.ctx.Err() == nil; i++ {
				s := fmt.Sprintf("load-%d", (w*7+i)%l.sessions)
				m := fmt.Sprintf("w%d-m%d", w, i)
				code := chatOnce(l.c.Nodes[(w+i)%len(l.c.Nodes)].URL(), loadTenant, s, m, s)
				l.mu.Lock()
				l.statuses[code]++
				if code == 200 {
					l.acked = append(l.acked, ackedMsg{s, m})
				}
				l.mu.Unlock()
				if code != 200 {
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
}

// stop ends the load and returns what was acknowledged and the status counts (0 = transport error).
func (l *load) stop() ([]ackedMsg, map[int]int) {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.acked, l.statuses
}
