package test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/crispy-enigma/crispy/test/harness"
	"github.com/crispy-enigma/crispy/test/mockllm"
)

// TestMeasureCapacity measures what one request of each route costs (docs/capacity.md): the node's
// CPU time, the JetStream messages it stores (per stream) and JetStream API requests it makes, and
// the bytes it moves between client and node, node and model upstream, and (on a cluster) between
// the nodes' NATS servers (routes) and their actor remotes. Counts and CPU time are deltas of
// counters read before and after a fixed number of requests, so they do not depend on how loaded
// the machine is; the requests per second it prints do.
//
// It measures, it asserts nothing; it runs only with CRISPY_CAPACITY=1:
//
//	CRISPY_CAPACITY=1 go test ./test -run MeasureCapacity -v -timeout 30m
//
// CAPACITY_REQUESTS (default 500) requests per route, CAPACITY_CONCURRENCY (4) workers,
// CAPACITY_NODES ("1,3") which cluster sizes, CAPACITY_CPUS (e.g. "0;1;0-1") pins node i to the
// i-th CPU list with taskset (";"-separated, empty entries unpinned), CAPACITY_MILVUS=1 stores
// vectors in the Milvus at MILVUS_ADDR (the documents ingested are deleted again at the end) and
// counts the node↔Milvus bytes.
func TestMeasureCapacity(t *testing.T) {
	if os.Getenv("CRISPY_CAPACITY") == "" {
		t.Skip("set CRISPY_CAPACITY=1 to measure the cost of a request per route")
	}
	requests := envInt(t, "CAPACITY_REQUESTS", 500)
	workers := envInt(t, "CAPACITY_CONCURRENCY", 4)
	sizes := strings.Split(envOr("CAPACITY_NODES", "1,3"), ",")
	var cpus []string
	if s := os.Getenv("CAPACITY_CPUS"); s != "" {
		cpus = strings.Split(s, ";")
	}
	milvus := ""
	if os.Getenv("CAPACITY_MILVUS") != "" {
		if milvus = os.Getenv("MILVUS_ADDR"); milvus == "" {
			t.Fatal("CAPACITY_MILVUS needs MILVUS_ADDR")
		}
	}
	up := startCountingUpstream(t)
	tenants := capacityTenants(t)
	for _, size := range sizes {
		n, err := strconv.Atoi(strings.TrimSpace(size))
		if err != nil || n < 1 {
			t.Fatalf("CAPACITY_NODES: bad size %q", size)
		}
		t.Run(fmt.Sprintf("nodes=%d", n), func(t *testing.T) {
			c := startCapacityCluster(t, n, tenants, up.base, milvus, cpus)
			m := newMeter(t, c, up, milvus)
			if milvus != "" {
				defer m.deleteDocuments(t)
			}
			m.idle(t, 5*time.Second)
			for _, r := range capacityRoutes {
				m.measure(t, r, requests, workers)
			}
			for _, name := range []string{"chat-json", "v1-chat"} {
				m.latency(t, capacityRouteNamed(t, name), requests)
			}
			m.measurePublish(t, n, 4*requests, workers)
			m.logLeaders(t)
		})
	}
}

const capacityTenant = "capacity"

// capacityRoute is one kind of request: body i of it, and how to read its reply.
type capacityRoute struct {
	name, path string
	stream     bool
	body       func(i int) string
	// warm: requests sent before measuring (connections, sessions, documents to search).
	warm int
}

// capacitySessions is how many sessions the measured /chat requests of a route go to, request i to
// session i mod capacitySessions: with the default 500 requests, five turns per session (the model
// request carries 0..4 earlier exchanges), and concurrent requests go to different sessions.
const capacitySessions = 100

// capacitySession is the session of request i of a /chat route (warm-up requests, i < 0, have
// sessions of their own).
func capacitySession(route string, i int) string {
	if i < 0 {
		return fmt.Sprintf("cap-%s-warm%d", route, -i)
	}
	return fmt.Sprintf("cap-%s-%d", route, i%capacitySessions)
}

var capacityRoutes = []capacityRoute{
	{name: "chat-json", path: "/chat", warm: 20, body: func(i int) string {
		return fmt.Sprintf(`{"message":"capacity message %d: where is the keeper's lantern?","sessionId":"%s","stream":false}`, i, capacitySession("json", i))
	}},
	{name: "chat-stream", path: "/chat", stream: true, warm: 20, body: func(i int) string {
		return fmt.Sprintf(`{"message":"capacity message %d: where is the keeper's lantern?","sessionId":"%s","stream":true}`, i, capacitySession("sse", i))
	}},
	{name: "v1-chat", path: "/v1/chat/completions", warm: 20, body: func(int) string {
		return `{"model":"mock-model","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16}`
	}},
	{name: "v1-chat-stream", path: "/v1/chat/completions", stream: true, warm: 20, body: func(int) string {
		return `{"model":"mock-model","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16,"stream":true,"stream_options":{"include_usage":true}}`
	}},
	{name: "ingest", path: "/ingest", warm: 20, body: func(i int) string {
		w := benchWord(i)
		return fmt.Sprintf(`{"docId":"cap-%d","title":"capacity %s","text":%q}`, i+1000000, w,
			strings.Repeat("The "+w+" keeper climbs to the "+benchWord(i+1)+" at dusk. ", 20))
	}},
	{name: "search", path: "/search", warm: 20, body: func(i int) string {
		return fmt.Sprintf(`{"query":"where is the %s","topK":3}`, benchWord(i))
	}},
}

func benchWord(i int) string {
	w := strings.Fields("keeper lantern harbour storm ledger tide beacon granite compass signal fog island")
	return w[(i%len(w)+len(w))%len(w)]
}

// capacityTenants writes a public tenant whose chat model is the counting upstream's, with rate
// limit and token budget on (far above the run) so both are checked as in production.
func capacityTenants(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cfg := `{
  "tenantId": "capacity", "accountId": "00000000000000000000000000000103", "aiGatewayId": "gw",
  "aiModels": {"chat": "mock-model", "embeddings": "local/hash-embed"},
  "vectorizeNamespace": "capacity", "rateLimit": {"perMinute": 100000000, "burst": 100000000},
  "tokenBudget": {"daily": 1000000000000, "monthly": 1000000000000},
  "maxMessagesPerSession": 20,
  "featureFlags": {}, "allowedHosts": [], "apiKeys": [], "public": true
}`
	if err := os.MkdirAll(filepath.Join(dir, capacityTenant), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, capacityTenant, "tenant.config.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// startCapacityCluster starts n nodes (a single node when n is 1) with a NATS client listener the
// meter connects to, each pinned to cpus[i] when given.
func startCapacityCluster(t *testing.T, n int, tenants, upstream, milvus string, cpus []string) *harness.Cluster {
	t.Helper()
	env := []string{"CRISPY_OPENAI_BASE_URL=" + upstream, "CRISPY_OPENAI_API_KEY=sk-capacity"}
	if milvus != "" {
		env = append(env, "CRISPY_MILVUS_ADDR="+milvus)
	}
	// The default log level (info: one access log line per request), as a node runs by default.
	var args []string
	var c *harness.Cluster
	if n == 1 {
		node := &harness.Node{Bin: crispyBin, DataDir: t.TempDir(), TenantsDir: tenants,
			Addr: harness.FreeAddr(t), AdminAddr: harness.FreeAddr(t), Env: env,
			Args: append(args, "--nats-listen", harness.FreeAddr(t))}
		c = &harness.Cluster{Nodes: []*harness.Node{node}}
	} else {
		c = harness.NewCluster(t, harness.ClusterOptions{Bin: crispyBin, TenantsDir: tenants, Size: n, Args: args, Env: env})
	}
	for i, node := range c.Nodes {
		if i < len(cpus) && cpus[i] != "" {
			node.Bin = pinned(t, crispyBin, cpus[i])
		}
	}
	if n == 1 {
		c.Nodes[0].Start(t)
	} else {
		c.Start(t)
		waitMembers(t, c, n, 60*time.Second)
	}
	return c
}

// pinned writes a launcher that runs bin on the given CPUs (taskset's list syntax).
func pinned(t *testing.T, bin, cpus string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "crispy-pinned")
	script := fmt.Sprintf("#!/bin/sh\nexec taskset -c %s %s \"$@\"\n", cpus, bin)
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		t.Fatalf("CAPACITY_CPUS needs taskset: %v", err)
	}
	return p
}

// countingUpstream is a mock OpenAI-compatible model server that counts the bytes its connections
// read and write: exactly the node↔upstream traffic (HTTP headers included, TCP/IP framing not).
type countingUpstream struct {
	base     string
	in, out  atomic.Int64 // bytes read from / written to the nodes
	requests atomic.Int64
}

func startCountingUpstream(t *testing.T) *countingUpstream {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &countingUpstream{base: "http://" + l.Addr().String() + "/v1"}
	h := mockllm.Handler(mockllm.Reply{ID: "chatcmpl-cap", OwnedBy: "capacity",
		Parts: []string{"The keeper's lantern ", "hangs in the ", "harbour beacon."}, PromptTokens: 12, CompletionTokens: 11},
		func() { u.requests.Add(1) })
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(&countingListener{Listener: l, in: &u.in, out: &u.out}) }()
	t.Cleanup(func() { _ = srv.Close() })
	return u
}

type countingListener struct {
	net.Listener
	in, out *atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, in: l.in, out: l.out}, nil
}

// countingConn counts the bytes read and written through it.
type countingConn struct {
	net.Conn
	in, out *atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.out.Add(int64(n))
	return n, err
}

// meter reads the counters a measurement compares.
type meter struct {
	c      *harness.Cluster
	up     *countingUpstream
	js     jetstream.JetStream
	client *http.Client
	// Bytes the client wrote to and read from the nodes (HTTP/1.1, headers included).
	sent, recv atomic.Int64
	// routePorts and remotePorts: the NATS route and actor remote listeners of the nodes (cluster).
	routePorts, remotePorts map[string]bool
	// milvusPort and pids: the node processes' connections to Milvus ("" without Milvus).
	milvusPort string
	pids       map[string]bool
	// idleCPU is the nodes' CPU seconds per second without requests (heartbeats, raft, timers),
	// subtracted from a measurement's CPU time for the "net" figure.
	idleCPU  float64
	ingested []string // node URL and docId of every document ingested, to delete from Milvus
	mu       sync.Mutex
}

func newMeter(t *testing.T, c *harness.Cluster, up *countingUpstream, milvus string) *meter {
	t.Helper()
	m := &meter{c: c, up: up, routePorts: map[string]bool{}, remotePorts: map[string]bool{}}
	if milvus != "" {
		_, m.milvusPort, _ = net.SplitHostPort(milvus)
		m.pids = nodePIDs(t, c)
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	m.client = &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		MaxIdleConnsPerHost: 64, DisableCompression: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &countingConn{Conn: conn, in: &m.recv, out: &m.sent}, nil
		},
	}}
	url := ""
	for _, n := range c.Nodes {
		if u := n.NATSURL(); u != "" && url == "" {
			url = u
		}
		for i, a := range n.Args {
			if a == "--nats-cluster-listen" && i+1 < len(n.Args) {
				_, port, _ := net.SplitHostPort(n.Args[i+1])
				m.routePorts[port] = true
			}
		}
		if addr := n.MemberAddress(); addr != "" {
			_, port, _ := net.SplitHostPort(addr)
			m.remotePorts[port] = true
		}
	}
	if url == "" {
		t.Fatal("no node reported its NATS client URL")
	}
	nc, err := nats.Connect(url, nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if m.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	return m
}

// snapshot is the counters at one moment.
type snapshot struct {
	at                   time.Time
	cpu                  []float64 // per node, seconds
	streams              map[string]streamCounts
	apiTotal             uint64
	sent, recv           int64
	upIn, upOut, upN     int64
	routeBytes, actor    int64
	toMilvus, fromMilvus int64
	ledgerKinds          map[string]uint64 // LEDGER messages by subject (ledger.<tenant>.<kind>)
}

type streamCounts struct{ lastSeq, msgs, bytes uint64 }

func (m *meter) snapshot(t *testing.T) snapshot {
	t.Helper()
	s := snapshot{at: time.Now(), streams: map[string]streamCounts{}}
	for _, n := range m.c.Nodes {
		s.cpu = append(s.cpu, processCPU(t, n))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := m.js.AccountInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.apiTotal = info.API.Total
	lister := m.js.ListStreams(ctx)
	for si := range lister.Info() {
		s.streams[si.Config.Name] = streamCounts{si.State.LastSeq, si.State.Msgs, si.State.Bytes}
	}
	if err := lister.Err(); err != nil {
		t.Fatal(err)
	}
	if st, err := m.js.Stream(ctx, "LEDGER"); err == nil {
		if li, err := st.Info(ctx, jetstream.WithSubjectFilter("ledger.>")); err == nil {
			s.ledgerKinds = li.State.Subjects
		}
	}
	s.sent, s.recv = m.sent.Load(), m.recv.Load()
	s.upIn, s.upOut, s.upN = m.up.in.Load(), m.up.out.Load(), m.up.requests.Load()
	if len(m.c.Nodes) > 1 {
		s.routeBytes, s.actor = socketBytes(t, m.routePorts), socketBytes(t, m.remotePorts)
	}
	if m.milvusPort != "" {
		s.toMilvus, s.fromMilvus = processSocketBytes(t, m.pids, m.milvusPort)
	}
	return s
}

// nodePIDs finds the nodes' processes by their admin address on the command line.
func nodePIDs(t *testing.T, c *harness.Cluster) map[string]bool {
	t.Helper()
	pids := map[string]bool{}
	dirs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range dirs {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		for i := 0; i+1 < len(args); i++ {
			for _, n := range c.Nodes {
				if args[i] == "--admin-addr" && args[i+1] == n.AdminAddr {
					pids[filepath.Base(filepath.Dir(f))] = true
				}
			}
		}
	}
	if len(pids) != len(c.Nodes) {
		t.Fatalf("found %d node processes, want %d", len(pids), len(c.Nodes))
	}
	return pids
}

// processSocketBytes sums bytes_sent and bytes_received of the established TCP sockets of the
// processes pids whose peer port is port (ss -tip).
func processSocketBytes(t *testing.T, pids map[string]bool, port string) (sent, recv int64) {
	t.Helper()
	out, err := exec.Command("ss", "-tinpH", "state", "established").Output()
	if err != nil {
		t.Fatalf("ss: %v", err)
	}
	lines := strings.Split(string(out), "\n")
	for i := 0; i+1 < len(lines); i++ {
		f := strings.Fields(lines[i])
		if len(f) < 5 || strings.HasPrefix(lines[i], "\t") {
			continue
		}
		if _, pp, _ := net.SplitHostPort(f[3]); pp != port {
			continue
		}
		owned := false
		for pid := range pids {
			owned = owned || strings.Contains(lines[i], "pid="+pid+",")
		}
		if !owned {
			continue
		}
		for _, kv := range strings.Fields(lines[i+1]) {
			if v, ok := strings.CutPrefix(kv, "bytes_sent:"); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				sent += n
			}
			if v, ok := strings.CutPrefix(kv, "bytes_received:"); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				recv += n
			}
		}
	}
	return sent, recv
}

// deleteDocuments removes every document the run ingested (the Milvus collection is shared).
func (m *meter) deleteDocuments(t *testing.T) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, d := range m.ingested {
		url, id, _ := strings.Cut(d, " ")
		req, _ := http.NewRequest(http.MethodDelete, url+"/documents/"+id, nil)
		req.Header.Set("x-tenant-id", capacityTenant)
		resp, err := m.client.Do(req)
		if err != nil {
			t.Logf("delete %s: %v", id, err)
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// processCPU is the node's process_cpu_seconds_total (utime+stime) from its admin /metrics.
func processCPU(t *testing.T, n *harness.Node) float64 {
	t.Helper()
	resp, err := httpClient.Get("http://" + n.AdminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "process_cpu_seconds_total "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("%s: no process_cpu_seconds_total", n.AdminAddr)
	return 0
}

// socketBytes sums bytes_sent of every established TCP socket with a local or peer port in ports
// (ss -ti): each byte on loopback is counted once, by its sender.
func socketBytes(t *testing.T, ports map[string]bool) int64 {
	t.Helper()
	out, err := exec.Command("ss", "-tinH", "state", "established").Output()
	if err != nil {
		t.Fatalf("ss: %v", err)
	}
	var total int64
	lines := strings.Split(string(out), "\n")
	for i := 0; i+1 < len(lines); i++ {
		f := strings.Fields(lines[i])
		if len(f) < 4 || strings.HasPrefix(lines[i], "\t") {
			continue
		}
		_, lp, _ := net.SplitHostPort(f[2])
		_, pp, _ := net.SplitHostPort(f[3])
		if !ports[lp] && !ports[pp] {
			continue
		}
		for _, kv := range strings.Fields(lines[i+1]) {
			if v, ok := strings.CutPrefix(kv, "bytes_sent:"); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				total += n
			}
		}
	}
	return total
}

// idle measures what the nodes cost without requests over d.
func (m *meter) idle(t *testing.T, d time.Duration) {
	t.Helper()
	before := m.snapshot(t)
	time.Sleep(d) // the measurement window, not synchronisation
	after := m.snapshot(t)
	secs := after.at.Sub(before.at).Seconds()
	var cpu float64
	var perNode []string
	for i := range after.cpu {
		cpu += after.cpu[i] - before.cpu[i]
		perNode = append(perNode, fmt.Sprintf("%.1f", (after.cpu[i]-before.cpu[i])*1000/secs))
	}
	m.idleCPU = cpu / secs
	var stored []string
	for name, a := range after.streams {
		if d := a.lastSeq - before.streams[name].lastSeq; d > 0 {
			stored = append(stored, fmt.Sprintf("%s %.2f msgs/s", name, float64(d)/secs))
		}
	}
	sort.Strings(stored)
	t.Logf("idle nodes=%d over %.1f s: cpu %.1f ms/s (per node %s); JetStream stored [%s]; NATS routes %.0f B/s, actor remote %.0f B/s",
		len(m.c.Nodes), secs, cpu*1000/secs, strings.Join(perNode, "/"), strings.Join(stored, "; "),
		float64(after.routeBytes-before.routeBytes)/secs, float64(after.actor-before.actor)/secs)
}

// measurePublish is the cost of one acknowledged JetStream write on its own: requests publishes
// of a 600-byte message (about a stored exchange) to a stream of replicas replicas, through the
// first node's NATS server, with the node CPU time each server spent. On a cluster it shows what
// the stream leader pays per write against a follower: the ceiling of one stream.
func (m *meter) measurePublish(t *testing.T, replicas, requests, workers int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	st, err := m.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: "CAPACITY", Subjects: []string{"capacity.>"}, Storage: jetstream.FileStorage, Replicas: replicas,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = m.js.DeleteStream(context.Background(), "CAPACITY") }()
	payload := bytes.Repeat([]byte("x"), 600)
	for i := range 50 { // warm-up: the stream's leader elected, connections up
		if _, err := m.js.Publish(ctx, fmt.Sprintf("capacity.w%d", i), payload); err != nil {
			t.Fatal(err)
		}
	}
	before := m.snapshot(t)
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(requests) {
					return
				}
				if _, err := m.js.Publish(ctx, fmt.Sprintf("capacity.s%d", i%100), payload); err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	after := m.snapshot(t)
	secs := after.at.Sub(before.at).Seconds()
	n := float64(requests)
	var perNode []string
	var cpu float64
	for i := range after.cpu {
		d := after.cpu[i] - before.cpu[i]
		cpu += d
		perNode = append(perNode, fmt.Sprintf("%s %.3f", nodeName(i), (d-m.idleCPU/float64(len(after.cpu))*secs)*1000/n))
	}
	leader := "-"
	if info, err := st.Info(ctx); err == nil && info.Cluster != nil {
		leader = info.Cluster.Leader
	}
	t.Logf("publish R%d nodes=%d n=%d failed=%d: cpu %.3f ms/write net of idle (per node, net of an even share of idle: %s; leader %s), %.0f writes/s wall (under shared load); NATS routes %.0f B/write",
		replicas, len(m.c.Nodes), requests, failed.Load(), (cpu-m.idleCPU*secs)*1000/n, strings.Join(perNode, ", "), leader,
		n/secs, float64(after.routeBytes-before.routeBytes)/n)
}

// saveProfile writes a 2-second CPU profile of the node to path.
func saveProfile(t *testing.T, n *harness.Node, path string) {
	resp, err := httpClient.Get("http://" + n.AdminAddr + "/debug/pprof/profile?seconds=2")
	if err != nil {
		t.Logf("profile %s: %v", path, err)
		return
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil {
		err = os.WriteFile(path, b, 0o644)
	}
	if err != nil {
		t.Logf("profile %s: %v", path, err)
	}
}

// nodeName is the harness's name of node i (n0, n1, …).
func nodeName(i int) string { return fmt.Sprintf("n%d", i) }

// logLeaders logs which server leads each replicated stream.
func (m *meter) logLeaders(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lister := m.js.ListStreams(ctx)
	var leaders []string
	for si := range lister.Info() {
		if si.Cluster != nil {
			leaders = append(leaders, fmt.Sprintf("%s R%d leader %s", si.Config.Name, si.Config.Replicas, si.Cluster.Leader))
		}
	}
	sort.Strings(leaders)
	t.Logf("stream leaders: %s", strings.Join(leaders, "; "))
}

// measure sends warm-up requests, then requests requests of r from workers workers round-robin over
// the nodes, and logs the per-request deltas.
func capacityRouteNamed(t *testing.T, name string) capacityRoute {
	t.Helper()
	for _, r := range capacityRoutes {
		if r.name == name {
			return r
		}
	}
	t.Fatalf("no capacity route %q", name)
	return capacityRoute{}
}

// latency sends requests of r one at a time to each node in turn and logs each node's p50 and
// p90 (time to the last byte): on a cluster, what a request pays for the grains it asks on other
// members.
func (m *meter) latency(t *testing.T, r capacityRoute, requests int) {
	t.Helper()
	line := fmt.Sprintf("%s one at a time nodes=%d n=%d per node:", r.name, len(m.c.Nodes), requests)
	for k := range m.c.Nodes {
		took := make([]time.Duration, 0, requests)
		for i := range requests {
			start := time.Now()
			if code := m.do(r, i, k); code != 200 {
				t.Fatalf("%s on node %d: status %d", r.name, k, code)
			}
			took = append(took, time.Since(start))
		}
		slices.Sort(took)
		line += fmt.Sprintf(" n%d p50 %.2f ms p90 %.2f ms;", k, took[len(took)/2].Seconds()*1000, took[len(took)*9/10].Seconds()*1000)
	}
	t.Log(line)
}

func (m *meter) measure(t *testing.T, r capacityRoute, requests, workers int) {
	t.Helper()
	for i := range r.warm {
		if code := m.do(r, -1-i, i); code != 200 {
			t.Fatalf("%s warm-up: status %d", r.name, code)
		}
	}
	// The meter's own JetStream API requests (account info, stream list) between two snapshots.
	s0 := m.snapshot(t)
	overhead := m.snapshot(t).apiTotal - s0.apiTotal
	before := m.snapshot(t)
	var (
		next, failed atomic.Int64
		wg           sync.WaitGroup
	)
	if dir := os.Getenv("CAPACITY_PROFILE"); dir != "" {
		// A CPU profile of every node during the measurement: where a request's CPU time goes.
		for i, node := range m.c.Nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				saveProfile(t, node, filepath.Join(dir, fmt.Sprintf("%s-nodes%d-n%d.pb.gz", r.name, len(m.c.Nodes), i)))
			}()
		}
	}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= requests {
					return
				}
				if code := m.do(r, i, i); code != 200 {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(before.at)
	after := m.snapshot(t)
	n := float64(requests)
	var cpu, maxNode float64
	var perNode []string
	for i := range after.cpu {
		d := after.cpu[i] - before.cpu[i]
		cpu += d
		maxNode = max(maxNode, d)
		perNode = append(perNode, fmt.Sprintf("%.3f", d*1000/n))
	}
	var streams []string
	names := make([]string, 0, len(after.streams))
	for name := range after.streams {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		a, b := after.streams[name], before.streams[name]
		if d := a.lastSeq - b.lastSeq; d > 0 {
			streams = append(streams, fmt.Sprintf("%s %.2f msgs %.0f B", name, float64(d)/n, float64(int64(a.bytes)-int64(b.bytes))/n))
		}
	}
	var kinds []string
	for subj, c := range after.ledgerKinds {
		if d := c - before.ledgerKinds[subj]; d > 0 {
			kinds = append(kinds, fmt.Sprintf("%s %.2f", subj[strings.LastIndex(subj, ".")+1:], float64(d)/n))
		}
	}
	sort.Strings(kinds)
	netCPU := (cpu - m.idleCPU*after.at.Sub(before.at).Seconds()) * 1000 / n
	line := fmt.Sprintf("%s nodes=%d n=%d failed=%d: cpu %.3f ms/req (net of idle %.3f; per node %s), %.0f req/s wall (under shared load); "+
		"client→node %.0f B, node→client %.0f B; node→upstream %.0f B, upstream→node %.0f B, %.2f upstream calls; "+
		"JetStream stored [%s] (ledger kinds: %s), API requests %.2f",
		r.name, len(m.c.Nodes), requests, failed.Load(), cpu*1000/n, netCPU, strings.Join(perNode, "/"), n/elapsed.Seconds(),
		float64(after.sent-before.sent)/n, float64(after.recv-before.recv)/n,
		float64(after.upIn-before.upIn)/n, float64(after.upOut-before.upOut)/n, float64(after.upN-before.upN)/n,
		strings.Join(streams, "; "), strings.Join(kinds, ", "), float64(after.apiTotal-before.apiTotal-overhead)/n)
	if m.milvusPort != "" {
		line += fmt.Sprintf("; node→Milvus %.0f B, Milvus→node %.0f B", float64(after.toMilvus-before.toMilvus)/n, float64(after.fromMilvus-before.fromMilvus)/n)
	}
	if len(m.c.Nodes) > 1 {
		line += fmt.Sprintf("; NATS routes %.0f B, actor remote %.0f B", float64(after.routeBytes-before.routeBytes)/n, float64(after.actor-before.actor)/n)
	}
	t.Log(line)
}

// do sends request i of r (negative: a warm-up request) to node k mod nodes.
func (m *meter) do(r capacityRoute, i, k int) int {
	node := m.c.Nodes[k%len(m.c.Nodes)]
	req, err := http.NewRequest(http.MethodPost, node.URL()+r.path, bytes.NewReader([]byte(r.body(i))))
	if err != nil {
		return 0
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-tenant-id", capacityTenant)
	resp, err := m.client.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0
	}
	if r.name == "ingest" && resp.StatusCode == 200 {
		m.mu.Lock()
		m.ingested = append(m.ingested, fmt.Sprintf("%s cap-%d", node.URL(), i+1000000))
		m.mu.Unlock()
	}
	return resp.StatusCode
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v <= 0 {
		t.Fatalf("%s: want a positive integer, got %q", name, s)
	}
	return v
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
