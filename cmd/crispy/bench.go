package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/crispy-enigma/crispy/config"
)

// Bench operations (--mix names).
const (
	opChatJSON   = "chat-json"
	opChatStream = "chat-stream"
	opSearch     = "search"
	opIngest     = "ingest"
	opHistory    = "history"
	opHealth     = "health" // GET /health: the server's floor, not in the default mix
)

var benchOps = []string{opChatJSON, opChatStream, opSearch, opIngest, opHistory, opHealth}

const defaultMix = "chat-json=5,chat-stream=2,search=2,ingest=1,history=2"

// benchOptions are crispy bench's settings.
type benchOptions struct {
	Targets     []string
	Admin       []string // operator listeners: RSS and goroutines per interval, goroutine leak check
	Tenant      string
	APIKey      string
	Mix         map[string]int
	Rate        float64 // requests per second; 0 = saturation with Concurrency workers
	Concurrency int
	Duration    time.Duration
	Requests    int
	Interval    time.Duration
	Timeout     time.Duration
	Out         string
	AllowRemote bool
	// SessionMessages is how many chat messages go to one session before the next is used.
	SessionMessages int
	// CheckGoroutines compares the admin listeners' goroutine counts before the load and after
	// Settle; more than GoroutineSlack extra is a leak.
	CheckGoroutines bool
	Settle          time.Duration
	GoroutineSlack  int
	// TolerateTransportErrors keeps connection failures from failing the run (soak with restarts).
	TolerateTransportErrors bool
}

func newBenchCmd() *cobra.Command {
	var (
		o                             benchOptions
		targets, admin, mix, rate, ap string
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Drive a running node or cluster with a mixed load; report throughput, latency and invariants",
		Long: `crispy bench sends a mix of chat (JSON and SSE), search, ingest and history requests to one or more
nodes, at a fixed rate (--rate N/s) or at saturation (--concurrency C), for --duration and/or
--requests. It prints throughput, latency percentiles per operation and error counts by status,
writes a JSON report with --out, and checks what it can see: every acknowledged chat message is in
its session's history at the end, and no answer was a 5xx. It exits non-zero when an invariant fails.
Targets must be loopback unless --allow-remote.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if o.Targets, err = parseTargets(targets, o.AllowRemote); err != nil {
				return err
			}
			if admin != "" {
				if o.Admin, err = parseTargets(admin, o.AllowRemote); err != nil {
					return fmt.Errorf("--admin: %w", err)
				}
			}
			if o.Mix, err = parseMix(mix); err != nil {
				return err
			}
			if o.Rate, err = parseRate(rate); err != nil {
				return err
			}
			if o.APIKey == "" {
				o.APIKey = config.Getenv(ap)
			}
			if o.CheckGoroutines && len(o.Admin) == 0 {
				return errors.New("--check-goroutines needs --admin")
			}
			if o.Duration <= 0 && o.Requests <= 0 {
				o.Duration = 10 * time.Second
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			rep, err := runBench(ctx, o, cmd.OutOrStdout())
			if err != nil {
				return err
			}
			if o.Out != "" {
				b, _ := json.MarshalIndent(rep, "", "  ")
				if err := os.WriteFile(o.Out, append(b, '\n'), 0o644); err != nil {
					return fmt.Errorf("write report: %w", err)
				}
			}
			if len(rep.Failures) > 0 {
				return fmt.Errorf("bench failed: %s", strings.Join(rep.Failures, "; "))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&targets, "target", "http://127.0.0.1:8787", "node URL(s), comma-separated; requests go round-robin")
	f.StringVar(&admin, "admin", "", "operator listener URL(s) (e.g. http://127.0.0.1:9787): RSS and goroutines per interval")
	f.StringVar(&o.Tenant, "tenant", "", "tenant ID sent as x-tenant-id (empty: resolved from the API key)")
	f.StringVar(&o.APIKey, "api-key", "", "tenant API key (prefer --api-key-env)")
	f.StringVar(&ap, "api-key-env", "CRISPY_API_KEY", "environment variable holding the API key when --api-key is empty")
	f.StringVar(&mix, "mix", defaultMix, "operation weights: "+strings.Join(benchOps, ", "))
	f.StringVar(&rate, "rate", "", "fixed arrival rate, e.g. 50/s (empty: saturation with --concurrency workers)")
	f.IntVar(&o.Concurrency, "concurrency", 8, "workers (saturation), or the most requests in flight at a fixed rate")
	f.DurationVar(&o.Duration, "duration", 0, "how long to send (0 with --requests: until that many; neither: 10s)")
	f.IntVar(&o.Requests, "requests", 0, "how many requests to send at most (0: bounded by --duration)")
	f.DurationVar(&o.Interval, "interval", 0, "print a progress line every interval (e.g. 10s); 0: none")
	f.DurationVar(&o.Timeout, "timeout", 60*time.Second, "bound of one request")
	f.StringVar(&o.Out, "out", "", "write the JSON report to this file")
	f.BoolVar(&o.AllowRemote, "allow-remote", false, "allow non-loopback targets")
	f.IntVar(&o.SessionMessages, "session-messages", 10, "chat messages per session before the next session")
	f.BoolVar(&o.CheckGoroutines, "check-goroutines", false, "fail when the nodes' goroutines grow by more than --goroutine-slack after the load (needs --admin)")
	f.DurationVar(&o.Settle, "settle", 10*time.Second, "how long goroutines may take to settle after the load")
	f.IntVar(&o.GoroutineSlack, "goroutine-slack", 25, "extra goroutines tolerated after the load")
	f.BoolVar(&o.TolerateTransportErrors, "tolerate-transport-errors", false, "do not fail on connection errors (soak runs that restart nodes)")
	return cmd
}

// parseTargets splits a comma-separated URL list and refuses non-loopback hosts unless allowed:
// a load generator pointed at someone else's server by mistake is a denial of service.
func parseTargets(s string, allowRemote bool) ([]string, error) {
	var out []string
	for _, raw := range strings.Split(s, ",") {
		raw = strings.TrimRight(strings.TrimSpace(raw), "/")
		if raw == "" {
			continue
		}
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("target %q: want http(s)://host:port", raw)
		}
		if !allowRemote && !isLoopbackHost(u.Hostname()) {
			return nil, fmt.Errorf("target %q is not loopback: pass --allow-remote to load a remote server", raw)
		}
		out = append(out, raw)
	}
	if len(out) == 0 {
		return nil, errors.New("no target")
	}
	return out, nil
}

// isLoopbackHost accepts "localhost" and loopback IP literals; any other name is remote (no DNS:
// a name that resolves to loopback today may not tomorrow).
func isLoopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// parseMix reads "op=weight,…". Every op must be known, weights non-negative, their sum positive.
func parseMix(s string) (map[string]int, error) {
	mix := map[string]int{}
	total := 0
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, w, found := strings.Cut(part, "=")
		name = strings.TrimSpace(name)
		if !slices.Contains(benchOps, name) {
			return nil, fmt.Errorf("--mix: unknown operation %q (want %s)", name, strings.Join(benchOps, ", "))
		}
		n := 1
		if found {
			v, err := strconv.Atoi(strings.TrimSpace(w))
			if err != nil || v < 0 {
				return nil, fmt.Errorf("--mix: weight of %s: want a non-negative integer, got %q", name, w)
			}
			n = v
		}
		if _, dup := mix[name]; dup {
			return nil, fmt.Errorf("--mix: %s given twice", name)
		}
		mix[name] = n
		total += n
	}
	if total == 0 {
		return nil, errors.New("--mix: the weights sum to 0")
	}
	return mix, nil
}

var rateRe = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)\s*(?:/\s*(s|sec|m|min))?$`)

// parseRate reads "50", "50/s" or "600/m"; "" is 0 (saturation).
func parseRate(s string) (float64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	m := rateRe.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("--rate %q: want N/s or N/m", s)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	if m[2] == "m" || m[2] == "min" {
		v /= 60
	}
	if v <= 0 {
		return 0, fmt.Errorf("--rate %q: must be positive", s)
	}
	return v, nil
}

// ---- report -----------------------------------------------------------------------------------

// LatencySummary is in milliseconds.
type LatencySummary struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// OpReport is one operation's results.
type OpReport struct {
	Requests   int            `json:"requests"`
	OK         int            `json:"ok"`
	Throughput float64        `json:"throughputPerSec"`
	LatencyMs  LatencySummary `json:"latencyMs"`
	// Statuses counts answers by HTTP status; "transport" counts requests with no answer.
	Statuses map[string]int `json:"statuses"`
}

// IntervalReport is one --interval line.
type IntervalReport struct {
	ElapsedSec  float64          `json:"elapsedSec"`
	Requests    int              `json:"requests"`
	Throughput  float64          `json:"throughputPerSec"`
	Errors      int              `json:"errors"`
	Status5xx   int              `json:"status5xx"`
	Transport   int              `json:"transportErrors"`
	LatencyMs   LatencySummary   `json:"latencyMs"`
	RSSBytes    map[string]int64 `json:"rssBytes,omitempty"`
	Goroutines  map[string]int   `json:"goroutines,omitempty"`
	SampleError string           `json:"sampleError,omitempty"`
}

// Invariants are the checks bench can make from outside.
type Invariants struct {
	AcknowledgedMessages int `json:"acknowledgedMessages"`
	SessionsChecked      int `json:"sessionsChecked"`
	LostMessages         int `json:"lostMessages"`
	// LostSamples names up to maxLostSamples of them ("<session>: <message>"), to look up in logs.
	LostSamples      []string       `json:"lostSamples,omitempty"`
	HistoryErrors    int            `json:"historyErrors"`
	Status5xx        int            `json:"status5xx"`
	TransportErrors  int            `json:"transportErrors"`
	GoroutinesBefore map[string]int `json:"goroutinesBefore,omitempty"`
	GoroutinesAfter  map[string]int `json:"goroutinesAfter,omitempty"`
}

// BenchReport is what --out writes.
type BenchReport struct {
	StartedAt   time.Time           `json:"startedAt"`
	DurationSec float64             `json:"durationSec"`
	Targets     []string            `json:"targets"`
	Tenant      string              `json:"tenant,omitempty"`
	Mode        string              `json:"mode"`
	Rate        float64             `json:"ratePerSec,omitempty"`
	Concurrency int                 `json:"concurrency"`
	Mix         map[string]int      `json:"mix"`
	Total       OpReport            `json:"total"`
	Ops         map[string]OpReport `json:"ops"`
	Intervals   []IntervalReport    `json:"intervals,omitempty"`
	Invariants  Invariants          `json:"invariants"`
	// Dropped counts fixed-rate arrivals not sent because Concurrency requests were in flight: the
	// client, not the server, was the bottleneck.
	Dropped  int      `json:"dropped"`
	Failures []string `json:"failures"`
	Passed   bool     `json:"passed"`
}

// percentile is nearest-rank over sorted xs.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[max(rank, 1)-1]
}

func summarize(ms []float64) LatencySummary {
	if len(ms) == 0 {
		return LatencySummary{}
	}
	s := slices.Clone(ms)
	sort.Float64s(s)
	sum := 0.0
	for _, v := range s {
		sum += v
	}
	r := func(v float64) float64 { return math.Round(v*100) / 100 }
	return LatencySummary{P50: r(percentile(s, 50)), P90: r(percentile(s, 90)), P99: r(percentile(s, 99)),
		Max: r(s[len(s)-1]), Mean: r(sum / float64(len(s)))}
}

// ---- running ----------------------------------------------------------------------------------

// result is one request's outcome.
type result struct {
	op      string
	status  int // 0: transport error
	latency time.Duration
}

// bench is one run's shared state.
type bench struct {
	o      benchOptions
	client *http.Client
	runID  string
	seq    atomic.Int64 // request sequence, for unique messages and document IDs
	chatN  atomic.Int64
	next   atomic.Int64 // round-robin target

	mu       sync.Mutex
	results  []result
	acked    map[string][]string // session → acknowledged user messages
	sessions []string            // sessions with at least one acknowledged message
}

func (b *bench) target() string {
	return b.o.Targets[int(b.next.Add(1)-1)%len(b.o.Targets)]
}

func (b *bench) request(ctx context.Context, method, path string, body any) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, b.target()+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if b.o.Tenant != "" {
		req.Header.Set("x-tenant-id", b.o.Tenant)
	}
	if b.o.APIKey != "" {
		req.Header.Set("x-api-key", b.o.APIKey)
	}
	req.Header.Set("x-user-id", "bench-"+b.runID)
	return req, nil
}

var benchWords = strings.Fields("keeper lantern harbour storm ledger tide beacon granite compass signal fog island")

func (b *bench) word(n int64) string { return benchWords[int(n)%len(benchWords)] }

// do runs one operation and returns its status (0 when no answer came).
func (b *bench) do(ctx context.Context, op string) int {
	n := b.seq.Add(1)
	ctx, cancel := context.WithTimeout(ctx, b.o.Timeout)
	defer cancel()
	var (
		req     *http.Request
		err     error
		session string
		message string
	)
	switch op {
	case opChatJSON, opChatStream:
		k := b.chatN.Add(1) - 1
		session = fmt.Sprintf("bench-%s-%d", b.runID, k/int64(max(b.o.SessionMessages, 1)))
		message = fmt.Sprintf("bench %s message %d about the %s", b.runID, n, b.word(n))
		req, err = b.request(ctx, http.MethodPost, "/chat", map[string]any{
			"message": message, "sessionId": session, "stream": op == opChatStream, "maxTokens": 64,
		})
	case opSearch:
		req, err = b.request(ctx, http.MethodPost, "/search", map[string]any{"query": "where is the " + b.word(n), "topK": 3})
	case opIngest:
		req, err = b.request(ctx, http.MethodPost, "/ingest", map[string]any{
			"docId": fmt.Sprintf("bench-%s-%d", b.runID, n), "title": "bench " + b.word(n),
			"text": strings.Repeat("The "+b.word(n)+" keeper climbs to the "+b.word(n+1)+" at dusk. ", 20),
		})
	case opHealth:
		req, err = b.request(ctx, http.MethodGet, "/health", nil)
	case opHistory:
		b.mu.Lock()
		if len(b.sessions) > 0 {
			session = b.sessions[int(n)%len(b.sessions)]
		}
		b.mu.Unlock()
		if session == "" {
			session = "bench-" + b.runID + "-empty"
		}
		req, err = b.request(ctx, http.MethodGet, "/chat/"+session+"/history", nil)
		session = "" // reading acknowledges nothing
	}
	if err != nil {
		return 0
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	acked := false
	if op == opChatStream && resp.StatusCode == http.StatusOK {
		acked = streamCompleted(resp.Body)
	} else {
		_, err = io.Copy(io.Discard, resp.Body)
		acked = err == nil && resp.StatusCode == http.StatusOK
	}
	if acked && session != "" {
		b.mu.Lock()
		if _, seen := b.acked[session]; !seen {
			b.sessions = append(b.sessions, session)
		}
		b.acked[session] = append(b.acked[session], message)
		b.mu.Unlock()
	}
	return resp.StatusCode
}

// streamCompleted reads an SSE reply to its end and reports whether it ended with event: done and
// no event: error (CONTRACT.md: the reply is stored after the stream completes).
func streamCompleted(r io.Reader) bool {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	done, failed := false, false
	for sc.Scan() {
		switch strings.TrimSpace(sc.Text()) {
		case "event: done":
			done = true
		case "event: error":
			failed = true
		}
	}
	return sc.Err() == nil && done && !failed
}

// pick chooses an operation by weight; n walks a fixed deterministic sequence through the weights.
func pickOp(mix map[string]int, n int64) string {
	total := 0
	for _, op := range benchOps {
		total += mix[op]
	}
	r := int(n % int64(total))
	for _, op := range benchOps {
		if r < mix[op] {
			return op
		}
		r -= mix[op]
	}
	return benchOps[0]
}

func (b *bench) record(op string, status int, d time.Duration) {
	b.mu.Lock()
	b.results = append(b.results, result{op: op, status: status, latency: d})
	b.mu.Unlock()
}

// runBench drives the load and checks the invariants. Progress lines go to w.
func runBench(ctx context.Context, o benchOptions, w io.Writer) (*BenchReport, error) {
	if o.Concurrency <= 0 {
		o.Concurrency = 1
	}
	if len(o.Mix) == 0 {
		o.Mix, _ = parseMix(defaultMix)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: o.Concurrency * 2, MaxConnsPerHost: 0, IdleConnTimeout: 30 * time.Second}
	defer tr.CloseIdleConnections()
	b := &bench{o: o, client: &http.Client{Transport: tr}, runID: uuid.NewString()[:8], acked: map[string][]string{}}
	rep := &BenchReport{StartedAt: time.Now().UTC(), Targets: o.Targets, Tenant: o.Tenant, Concurrency: o.Concurrency, Mix: o.Mix,
		Mode: "saturation", Rate: o.Rate}
	if o.Rate > 0 {
		rep.Mode = "rate"
	}
	if o.CheckGoroutines {
		g, err := sampleGoroutines(ctx, b.client, o.Admin)
		if err != nil {
			return nil, fmt.Errorf("goroutines before the load: %w", err)
		}
		rep.Invariants.GoroutinesBefore = g
	}

	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	if o.Duration > 0 {
		loadCtx, stopLoad = context.WithTimeout(ctx, o.Duration)
		defer stopLoad()
	}
	var issued atomic.Int64
	// claim reserves the next request number, or reports that --requests is reached.
	claim := func() (int64, bool) {
		n := issued.Add(1)
		if o.Requests > 0 && n > int64(o.Requests) {
			return 0, false
		}
		return n, true
	}
	run := func(n int64) {
		op := pickOp(o.Mix, n)
		start := time.Now()
		status := b.do(ctx, op) // ctx, not loadCtx: a request in flight at the end finishes
		b.record(op, status, time.Since(start))
	}

	started := time.Now()
	intervalsDone := make(chan struct{})
	go func() {
		defer close(intervalsDone)
		b.intervals(loadCtx, started, rep, w)
	}()

	var wg sync.WaitGroup
	if o.Rate > 0 {
		sem := make(chan struct{}, o.Concurrency)
		tick := time.NewTicker(time.Duration(float64(time.Second) / o.Rate))
	rateLoop:
		for {
			select {
			case <-loadCtx.Done():
				break rateLoop
			case <-tick.C:
			}
			n, more := claim()
			if !more {
				break rateLoop
			}
			select {
			case sem <- struct{}{}:
			default:
				rep.Dropped++
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				run(n)
			}()
		}
		tick.Stop()
	} else {
		for range o.Concurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for loadCtx.Err() == nil {
					n, more := claim()
					if !more {
						return
					}
					run(n)
				}
			}()
		}
	}
	wg.Wait()
	stopLoad()
	<-intervalsDone
	elapsed := time.Since(started)
	rep.DurationSec = math.Round(elapsed.Seconds()*1000) / 1000

	b.summarizeInto(rep, elapsed)
	printSummary(w, rep)
	b.checkHistory(ctx, rep)
	if o.CheckGoroutines {
		after, err := settleGoroutines(ctx, b.client, o.Admin, rep.Invariants.GoroutinesBefore, o.GoroutineSlack, o.Settle)
		rep.Invariants.GoroutinesAfter = after
		if err != nil {
			rep.Failures = append(rep.Failures, err.Error())
		}
	}
	inv := &rep.Invariants
	if inv.Status5xx > 0 {
		rep.Failures = append(rep.Failures, fmt.Sprintf("%d answers were 5xx", inv.Status5xx))
	}
	if inv.LostMessages > 0 {
		rep.Failures = append(rep.Failures, fmt.Sprintf("%d acknowledged messages missing from their history", inv.LostMessages))
	}
	if inv.HistoryErrors > 0 {
		rep.Failures = append(rep.Failures, fmt.Sprintf("%d sessions' history could not be read", inv.HistoryErrors))
	}
	if inv.TransportErrors > 0 && !o.TolerateTransportErrors {
		rep.Failures = append(rep.Failures, fmt.Sprintf("%d requests got no answer (connection errors)", inv.TransportErrors))
	}
	if rep.Total.Requests == 0 {
		rep.Failures = append(rep.Failures, "no request was sent")
	}
	if rep.Failures == nil {
		rep.Failures = []string{}
	}
	rep.Passed = len(rep.Failures) == 0
	fmt.Fprintf(w, "invariants: %d acknowledged chat messages in %d sessions, %d lost, %d history errors, %d 5xx, %d transport errors",
		inv.AcknowledgedMessages, inv.SessionsChecked, inv.LostMessages, inv.HistoryErrors, inv.Status5xx, inv.TransportErrors)
	if inv.GoroutinesBefore != nil {
		fmt.Fprintf(w, ", goroutines %v → %v", inv.GoroutinesBefore, inv.GoroutinesAfter)
	}
	fmt.Fprintln(w)
	for _, m := range inv.LostSamples {
		fmt.Fprintln(w, "lost:", m)
	}
	if rep.Passed {
		fmt.Fprintln(w, "PASS")
	} else {
		fmt.Fprintln(w, "FAIL:", strings.Join(rep.Failures, "; "))
	}
	return rep, nil
}

// summarizeInto fills the totals and per-operation reports from the recorded results.
func (b *bench) summarizeInto(rep *BenchReport, elapsed time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	secs := math.Max(elapsed.Seconds(), 1e-9)
	lat := map[string][]float64{}
	var all []float64
	rep.Ops = map[string]OpReport{}
	rep.Total = OpReport{Statuses: map[string]int{}}
	for _, r := range b.results {
		op := rep.Ops[r.op]
		if op.Statuses == nil {
			op.Statuses = map[string]int{}
		}
		key := strconv.Itoa(r.status)
		if r.status == 0 {
			key = "transport"
			rep.Invariants.TransportErrors++
		}
		if r.status >= 500 {
			rep.Invariants.Status5xx++
		}
		op.Requests++
		rep.Total.Requests++
		if r.status >= 200 && r.status < 300 {
			op.OK++
			rep.Total.OK++
		}
		op.Statuses[key]++
		rep.Total.Statuses[key]++
		ms := float64(r.latency.Microseconds()) / 1000
		lat[r.op] = append(lat[r.op], ms)
		all = append(all, ms)
		rep.Ops[r.op] = op
	}
	for name, op := range rep.Ops {
		op.Throughput = math.Round(float64(op.Requests)/secs*100) / 100
		op.LatencyMs = summarize(lat[name])
		rep.Ops[name] = op
	}
	rep.Total.Throughput = math.Round(float64(rep.Total.Requests)/secs*100) / 100
	rep.Total.LatencyMs = summarize(all)
}

func printSummary(w io.Writer, rep *BenchReport) {
	fmt.Fprintf(w, "%s load on %s for %.1fs: %d requests, %.1f req/s", rep.Mode, strings.Join(rep.Targets, ","),
		rep.DurationSec, rep.Total.Requests, rep.Total.Throughput)
	if rep.Dropped > 0 {
		fmt.Fprintf(w, " (%d arrivals dropped: %d in flight)", rep.Dropped, rep.Concurrency)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%-12s %8s %8s %9s %9s %9s %9s %9s  %s\n", "op", "requests", "ok", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "statuses")
	names := make([]string, 0, len(rep.Ops))
	for n := range rep.Ops {
		names = append(names, n)
	}
	sort.Strings(names)
	line := func(name string, op OpReport) {
		fmt.Fprintf(w, "%-12s %8d %8d %9.1f %9.2f %9.2f %9.2f %9.2f  %s\n", name, op.Requests, op.OK, op.Throughput,
			op.LatencyMs.P50, op.LatencyMs.P90, op.LatencyMs.P99, op.LatencyMs.Max, statusString(op.Statuses))
	}
	for _, n := range names {
		line(n, rep.Ops[n])
	}
	line("total", rep.Total)
}

func statusString(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s×%d", k, m[k])
	}
	return strings.Join(parts, " ")
}

// intervals prints (and records) one line per --interval until ctx ends, covering the requests
// finished in that interval, and the nodes' RSS and goroutines when --admin is set.
func (b *bench) intervals(ctx context.Context, started time.Time, rep *BenchReport, w io.Writer) {
	if b.o.Interval <= 0 {
		<-ctx.Done()
		return
	}
	t := time.NewTicker(b.o.Interval)
	defer t.Stop()
	seen := 0
	last := started
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			b.mu.Lock()
			batch := slices.Clone(b.results[seen:])
			seen = len(b.results)
			b.mu.Unlock()
			ir := IntervalReport{ElapsedSec: math.Round(now.Sub(started).Seconds()*10) / 10, Requests: len(batch)}
			var ms []float64
			for _, r := range batch {
				ms = append(ms, float64(r.latency.Microseconds())/1000)
				switch {
				case r.status == 0:
					ir.Transport++
					ir.Errors++
				case r.status >= 500:
					ir.Status5xx++
					ir.Errors++
				case r.status >= 400:
					ir.Errors++
				}
			}
			ir.Throughput = math.Round(float64(len(batch))/now.Sub(last).Seconds()*10) / 10
			ir.LatencyMs = summarize(ms)
			last = now
			if len(b.o.Admin) > 0 {
				sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second) // the last tick may come as the load ends
				rss, gor, err := sampleNodes(sctx, b.client, b.o.Admin)
				cancel()
				ir.RSSBytes, ir.Goroutines = rss, gor
				if err != nil {
					ir.SampleError = err.Error()
				}
			}
			rep.Intervals = append(rep.Intervals, ir)
			fmt.Fprintf(w, "[%6.1fs] %5d req %7.1f req/s  errors %d (5xx %d, transport %d)  p50 %.1f ms  p99 %.1f ms",
				ir.ElapsedSec, ir.Requests, ir.Throughput, ir.Errors, ir.Status5xx, ir.Transport, ir.LatencyMs.P50, ir.LatencyMs.P99)
			for _, a := range b.o.Admin {
				if v, found := ir.RSSBytes[a]; found {
					fmt.Fprintf(w, "  %s rss %.1f MiB goroutines %d", strings.TrimPrefix(a, "http://"), float64(v)/(1<<20), ir.Goroutines[a])
				}
			}
			if ir.SampleError != "" {
				fmt.Fprintf(w, "  (sample: %s)", ir.SampleError)
			}
			fmt.Fprintln(w)
		}
	}
}

// checkHistory reads every session that acknowledged a message and counts the acknowledged user
// messages missing from it (CONTRACT.md/DESIGN.md: an acknowledged chat message is never lost).
func (b *bench) checkHistory(ctx context.Context, rep *BenchReport) {
	b.mu.Lock()
	sessions := slices.Clone(b.sessions)
	acked := make(map[string][]string, len(b.acked))
	for k, v := range b.acked {
		acked[k] = v
	}
	b.mu.Unlock()
	inv := &rep.Invariants
	for _, s := range sessions {
		inv.AcknowledgedMessages += len(acked[s])
	}
	inv.SessionsChecked = len(sessions)
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, s := range sessions {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			lost, err := b.lostIn(ctx, s, acked[s])
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				inv.HistoryErrors++
				return
			}
			inv.LostMessages += len(lost)
			for _, m := range lost {
				if len(inv.LostSamples) < maxLostSamples {
					inv.LostSamples = append(inv.LostSamples, s+": "+m)
				}
			}
		}()
	}
	wg.Wait()
}

// maxLostSamples bounds BenchReport.Invariants.LostSamples.
const maxLostSamples = 20

// lostIn fetches a session's history (from any target, retrying a few times across them: a node
// may be restarting in a soak run) and returns the messages it lacks.
func (b *bench) lostIn(ctx context.Context, session string, messages []string) ([]string, error) {
	var lastErr error
	for attempt := range 2 * len(b.o.Targets) {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(500 * time.Millisecond):
			}
		}
		hctx, cancel := context.WithTimeout(ctx, b.o.Timeout)
		have, err := b.history(hctx, session)
		cancel()
		if err != nil {
			lastErr = err
			continue
		}
		var lost []string
		for _, m := range messages {
			if !have[m] {
				lost = append(lost, m)
			}
		}
		return lost, nil
	}
	return nil, lastErr
}

func (b *bench) history(ctx context.Context, session string) (map[string]bool, error) {
	req, err := b.request(ctx, http.MethodGet, "/chat/"+session+"/history", nil)
	if err != nil {
		return nil, err
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("history %s: status %d", session, resp.StatusCode)
	}
	var env struct {
		Data struct {
			Messages []struct {
				Role    string `json:"role"`
				Content string `json:"content"`
			} `json:"messages"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		return nil, fmt.Errorf("history %s: %w", session, err)
	}
	have := map[string]bool{}
	for _, m := range env.Data.Messages {
		if m.Role == "user" {
			have[m.Content] = true
		}
	}
	return have, nil
}

// ---- node sampling ----------------------------------------------------------------------------

// sampleNodes reads process_resident_memory_bytes and go_goroutines from each admin /metrics.
func sampleNodes(ctx context.Context, c *http.Client, admins []string) (map[string]int64, map[string]int, error) {
	rss, gor := map[string]int64{}, map[string]int{}
	var errs []error
	for _, a := range admins {
		vals, err := scrape(ctx, c, a+"/metrics", "process_resident_memory_bytes", "go_goroutines")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		rss[a] = int64(vals["process_resident_memory_bytes"])
		gor[a] = int(vals["go_goroutines"])
	}
	return rss, gor, errors.Join(errs...)
}

// scrape fetches a Prometheus text exposition and returns the unlabelled samples named.
func scrape(ctx context.Context, c *http.Client, u string, names ...string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if tok := config.Getenv("CRISPY_ADMIN_TOKEN"); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: status %d", u, resp.StatusCode)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, found := strings.Cut(sc.Text(), " ")
		if !found || !slices.Contains(names, name) {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			out[name] = v
		}
	}
	return out, sc.Err()
}

// goroutineCount reads "goroutine profile: total N" from /debug/pprof/goroutine?debug=1.
func goroutineCount(ctx context.Context, c *http.Client, admin string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, admin+"/debug/pprof/goroutine?debug=1", nil)
	if err != nil {
		return 0, err
	}
	if tok := config.Getenv("CRISPY_ADMIN_TOKEN"); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil && line == "" {
		return 0, fmt.Errorf("%s goroutine profile: %w", admin, err)
	}
	var n int
	if _, err := fmt.Sscanf(line, "goroutine profile: total %d", &n); err != nil {
		return 0, fmt.Errorf("%s goroutine profile: unexpected first line %q", admin, strings.TrimSpace(line))
	}
	return n, nil
}

func sampleGoroutines(ctx context.Context, c *http.Client, admins []string) (map[string]int, error) {
	out := map[string]int{}
	for _, a := range admins {
		n, err := goroutineCount(ctx, c, a)
		if err != nil {
			return nil, err
		}
		out[a] = n
	}
	return out, nil
}

// settleGoroutines polls the nodes' goroutine counts until each is within slack of its count
// before the load, or settle passes; it returns the last counts and an error naming a leak.
// Polling (not a fixed sleep) ends as soon as the nodes are idle again; settle bounds it.
func settleGoroutines(ctx context.Context, c *http.Client, admins []string, before map[string]int, slack int, settle time.Duration) (map[string]int, error) {
	deadline := time.Now().Add(settle)
	for {
		after, err := sampleGoroutines(ctx, c, admins)
		if err != nil {
			return after, fmt.Errorf("goroutines after the load: %w", err)
		}
		var leaks []string
		for _, a := range admins {
			if after[a] > before[a]+slack {
				leaks = append(leaks, fmt.Sprintf("%s: %d → %d goroutines", a, before[a], after[a]))
			}
		}
		if len(leaks) == 0 {
			return after, nil
		}
		if time.Now().After(deadline) {
			return after, fmt.Errorf("goroutine leak after %s settle (slack %d): %s", settle, slack, strings.Join(leaks, ", "))
		}
		select {
		case <-ctx.Done():
			return after, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}
