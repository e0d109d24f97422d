// Command peers measures crispy side by side with peer AI gateways (`make bench-peers`, manual, not
// in CI; scripts/bench-peers.sh installs the peers and runs it).
//
// It starts one mock OpenAI-compatible upstream (in this process: a fixed small reply with usage,
// streamed or not), starts every gateway on 127.0.0.1 against it — the floor (below), a crispy node
// from the built binary, the Portkey gateway (Node) and the LiteLLM proxy (Python) when their
// installs are given — and drives them in rounds that alternate the contenders, so that drift on a
// shared machine falls on every contender alike:
//
//   - sequential rounds (one request at a time): time to last byte p50/p99; "added" is a contender's
//     p50 minus the direct (no gateway) p50 in the same mode (streamed or not);
//   - concurrent rounds (32 connections): requests per second, and the gateway's CPU per request from
//     /proc/<pid>/stat (utime+stime of the gateway and its child processes) before and after.
//
// The direct contender is this process calling the mock in this process, so a gateway's "added"
// includes four cross-process loopback hops (client → gateway → upstream and back) and an HTTP
// server and client in the gateway, which no gateway run as its own process can avoid. The floor
// measures exactly that: "go reverse proxy (floor)" is this binary re-executed as `peers serve-proxy`,
// a separate process serving net/http/httputil's single-host ReverseProxy to the mock (the request
// body read first, as the gateways do; pooled connections like crispy's provider client; every write
// flushed), measured like every other gateway. "added over floor" is a contender's added p50 minus
// the floor's in the same mode: what the gateway does beyond forwarding bytes.
//
// Everything listens on loopback and every round is bounded in requests and time. The table goes to
// stdout, the numbers to -out as JSON.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/test/mockllm"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == serveProxyCmd {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := serveProxy(ctx, os.Args[2:])
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench-peers serve-proxy:", err)
			os.Exit(1)
		}
		return
	}
	var o options
	flag.StringVar(&o.crispyBin, "crispy", "bin/crispy", "crispy binary")
	flag.StringVar(&o.crispyBase, "crispy-base", "", "a second crispy binary (an older build) measured alongside as \"crispy-base\", for before/after in one run")
	flag.StringVar(&o.portkeyDir, "portkey-dir", "", "folder whose node_modules holds @portkey-ai/gateway (empty: skip Portkey)")
	flag.StringVar(&o.litellmBin, "litellm", "", "the litellm proxy executable (empty: skip LiteLLM)")
	flag.IntVar(&o.seqRequests, "seq-requests", 200, "requests per contender per sequential round")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds (each runs every contender once, in a rotated order)")
	flag.IntVar(&o.connections, "connections", 32, "connections of the concurrent rounds")
	flag.DurationVar(&o.concDuration, "conc-duration", 3*time.Second, "length of one contender's concurrent round")
	flag.IntVar(&o.concMax, "conc-max", 20000, "most requests of one contender's concurrent round")
	flag.StringVar(&o.out, "out", "bin/bench-peers.json", "JSON report")
	flag.StringVar(&o.workDir, "work", "", "folder for data dirs, configs and gateway logs (default: a temp dir, removed)")
	flag.StringVar(&o.only, "only", "", "measure only the gateway contenders whose names match this regular expression (the direct calls and the floor are always measured: \"added\" needs them)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench-peers:", err)
		os.Exit(1)
	}
}

type options struct {
	crispyBin, crispyBase, portkeyDir, litellmBin, out, workDir, only string
	seqRequests, rounds, connections, concMax                         int
	concDuration                                                      time.Duration
}

// contender is one way to ask for a chat completion.
type contender struct {
	Name    string `json:"name"`
	Gateway string `json:"gateway"` // process whose CPU is counted; "" = none (direct)
	Stream  bool   `json:"stream"`
	// newRequest builds request i.
	newRequest func(i int) (*http.Request, error)
	proc       *gatewayProc
}

// result is what the rounds measured for a contender.
type result struct {
	Name        string  `json:"name"`
	Gateway     string  `json:"gateway"`
	Stream      bool    `json:"stream"`
	SeqRequests int     `json:"seqRequests"`
	P50ms       float64 `json:"p50Ms"`
	P99ms       float64 `json:"p99Ms"`
	AddedP50ms  float64 `json:"addedP50Ms"`
	// AddedOverFloorP50ms is AddedP50ms minus the floor's in the same mode; nil for direct and when
	// the floor was not measured.
	AddedOverFloorP50ms *float64 `json:"addedOverFloorP50Ms,omitempty"`

	ConcRequests int     `json:"concRequests"`
	ReqPerSec    float64 `json:"reqPerSec"`
	CPUPerReqMs  float64 `json:"cpuPerRequestMs"`
	Errors       int     `json:"errors"`
	FirstError   string  `json:"firstError,omitempty"`

	seq      []time.Duration
	concN    int
	concTime time.Duration
	cpu      time.Duration
}

func run(ctx context.Context, o options) error {
	work := o.workDir
	if work == "" {
		d, err := os.MkdirTemp("", "bench-peers-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		work = d
	}
	up, err := startUpstream()
	if err != nil {
		return err
	}
	defer up.Close()
	fmt.Printf("mock upstream on %s\n", up.base)

	client := &http.Client{Transport: &http.Transport{
		MaxIdleConns: 256, MaxIdleConnsPerHost: 256, DisableCompression: true, IdleConnTimeout: time.Minute,
	}, Timeout: 30 * time.Second}

	var contenders []*contender
	add := func(c ...*contender) { contenders = append(contenders, c...) }
	add(directContenders(up.base)...)

	floor, err := startFloor(ctx, work, up.base)
	if err != nil {
		fmt.Printf("%s: not measured: %v\n", floorName, err)
	} else {
		defer floor.stop()
		add(floorContenders(floor)...)
	}

	crispy, err := startCrispy(ctx, "crispy", o.crispyBin, work, up.base)
	if err != nil {
		return fmt.Errorf("crispy: %w", err)
	}
	defer crispy.stop()
	add(crispyContenders(ctx, client, crispy)...)
	if o.crispyBase != "" {
		base, err := startCrispy(ctx, "crispy-base", o.crispyBase, work, up.base)
		if err != nil {
			return fmt.Errorf("crispy-base: %w", err)
		}
		defer base.stop()
		add(crispyContenders(ctx, client, base)...)
	}

	if o.portkeyDir != "" {
		p, err := startPortkey(ctx, o.portkeyDir, work)
		if err != nil {
			fmt.Printf("portkey: not measured: %v\n", err)
		} else {
			defer p.stop()
			add(portkeyContenders(p, up.base)...)
		}
	} else {
		fmt.Println("portkey: not installed, skipped")
	}
	if o.litellmBin != "" {
		l, err := startLiteLLM(ctx, o.litellmBin, work, up.base)
		if err != nil {
			fmt.Printf("litellm: not measured: %v\n", err)
		} else {
			defer l.stop()
			add(litellmContenders(l)...)
		}
	} else {
		fmt.Println("litellm: not installed, skipped")
	}

	if o.only != "" {
		only, err := regexp.Compile(o.only)
		if err != nil {
			return fmt.Errorf("--only: %w", err)
		}
		contenders = slices.DeleteFunc(contenders, func(c *contender) bool {
			return c.Gateway != "" && c.Gateway != floorGateway && !only.MatchString(c.Name)
		})
	}
	results := make(map[string]*result, len(contenders))
	contenders = slices.DeleteFunc(contenders, func(c *contender) bool {
		// Warm up: connections, JIT, caches, grain activations. A contender that fails here is
		// reported and left out rather than ending the run.
		for i := range 20 {
			if _, err := once(ctx, client, c, -1-i); err != nil {
				fmt.Printf("%s: not measured: warm-up request failed: %v\n", c.Name, err)
				return true
			}
		}
		results[c.Name] = &result{Name: c.Name, Gateway: c.Gateway, Stream: c.Stream}
		return false
	})
	for r := range o.rounds {
		order := rotate(contenders, r)
		for _, c := range order {
			if err := ctx.Err(); err != nil {
				return err
			}
			sequential(ctx, client, c, o.seqRequests, r, results[c.Name])
		}
		for _, c := range order {
			if err := ctx.Err(); err != nil {
				return err
			}
			concurrent(ctx, client, c, o, r, results[c.Name])
		}
		fmt.Printf("round %d/%d done\n", r+1, o.rounds)
	}
	rs := summarize(contenders, results)
	printTable(os.Stdout, rs)
	return writeJSON(o.out, rs)
}

func rotate(cs []*contender, r int) []*contender {
	n := len(cs)
	out := make([]*contender, n)
	for i := range cs {
		out[i] = cs[(i+r)%n]
	}
	return out
}

// once sends request i and reads the body to its end; it returns the time to last byte.
func once(ctx context.Context, client *http.Client, c *contender, i int) (time.Duration, error) {
	req, err := c.newRequest(i)
	if err != nil {
		return 0, err
	}
	req = req.WithContext(ctx)
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	d := time.Since(start)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("status %d", resp.StatusCode)
	}
	if n == 0 {
		return 0, errors.New("empty body")
	}
	return d, nil
}

func sequential(ctx context.Context, client *http.Client, c *contender, n, round int, res *result) {
	for i := range n {
		d, err := once(ctx, client, c, round*1_000_000+i)
		if err != nil {
			res.fail(err)
			continue
		}
		res.seq = append(res.seq, d)
	}
}

func concurrent(ctx context.Context, client *http.Client, c *contender, o options, round int, res *result) {
	var (
		next  atomic.Int64
		done  atomic.Int64
		errMu sync.Mutex
		wg    sync.WaitGroup
	)
	deadline := time.Now().Add(o.concDuration)
	cpu0 := c.proc.cpu()
	start := time.Now()
	for range o.connections {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				i := next.Add(1)
				if i > int64(o.concMax) {
					return
				}
				if _, err := once(ctx, client, c, 500_000+round*1_000_000+int(i)); err != nil {
					errMu.Lock()
					res.fail(err)
					errMu.Unlock()
					continue
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	res.concTime += time.Since(start)
	res.cpu += c.proc.cpu() - cpu0
	res.concN += int(done.Load())
}

func (r *result) fail(err error) {
	r.Errors++
	if r.FirstError == "" {
		r.FirstError = err.Error()
	}
}

func summarize(cs []*contender, results map[string]*result) []*result {
	direct, floor := map[bool]float64{}, map[bool]*result{}
	out := make([]*result, 0, len(cs))
	for _, c := range cs {
		r := results[c.Name]
		slices.Sort(r.seq)
		r.SeqRequests = len(r.seq)
		r.P50ms, r.P99ms = ms(quantile(r.seq, 0.50)), ms(quantile(r.seq, 0.99))
		r.ConcRequests = r.concN
		if r.concTime > 0 {
			r.ReqPerSec = float64(r.concN) / r.concTime.Seconds()
		}
		if r.concN > 0 && c.Gateway != "" {
			r.CPUPerReqMs = ms(r.cpu) / float64(r.concN)
		}
		if c.Gateway == "" {
			direct[c.Stream] = r.P50ms
		}
		if c.Gateway == floorGateway && r.SeqRequests > 0 {
			floor[c.Stream] = r
		}
		out = append(out, r)
	}
	for _, r := range out {
		if r.Gateway != "" {
			r.AddedP50ms = r.P50ms - direct[r.Stream]
		}
	}
	for _, r := range out {
		if f := floor[r.Stream]; f != nil && r.Gateway != "" {
			over := r.AddedP50ms - f.AddedP50ms
			r.AddedOverFloorP50ms = &over
		}
	}
	return out
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// printTable prints one line per contender, then what the columns mean. "added over floor" takes
// out what a separate-process Go reverse proxy adds in the same mode (the loopback hops and HTTP
// handling every gateway here pays); the ratios compare each gateway with crispy's /chat in the same
// mode (above 1: crispy is better by that factor) and keep the hops in.
func printTable(w io.Writer, rs []*result) {
	ref := map[bool]*result{}
	for _, r := range rs {
		if r.Name == "crispy /chat" || r.Name == "crispy /chat stream" {
			ref[r.Stream] = r
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| contender | p50 ms | p99 ms | added p50 ms | added over floor ms | req/s @32 | gateway CPU ms/req | added ÷ crispy | crispy req/s ÷ this | CPU ÷ crispy | errors |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range rs {
		addedRatio, rpsRatio, cpuRatio := "", "", ""
		if c := ref[r.Stream]; c != nil && r.Gateway != "" && r != c {
			addedRatio = ratio(r.AddedP50ms, c.AddedP50ms)
			rpsRatio = ratio(c.ReqPerSec, r.ReqPerSec)
			cpuRatio = ratio(r.CPUPerReqMs, c.CPUPerReqMs)
		}
		added, over, cpu := "—", "—", "—"
		if r.Gateway != "" {
			added, cpu = fmt.Sprintf("%.2f", r.AddedP50ms), fmt.Sprintf("%.2f", r.CPUPerReqMs)
		}
		if r.AddedOverFloorP50ms != nil {
			over = fmt.Sprintf("%.2f", *r.AddedOverFloorP50ms)
		}
		fmt.Fprintf(w, "| %s | %.2f | %.2f | %s | %s | %.0f | %s | %s | %s | %s | %d |\n",
			r.Name, r.P50ms, r.P99ms, added, over, r.ReqPerSec, cpu, addedRatio, rpsRatio, cpuRatio, r.Errors)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "added p50: p50 minus direct's (the bench calling the mock in its own process) in the same mode;")
	fmt.Fprintln(w, "  it includes the four loopback hops and the HTTP server and client of any gateway run as its own process.")
	fmt.Fprintf(w, "added over floor: added p50 minus that of %q in the same mode, a separate process serving\n", floorName)
	fmt.Fprintln(w, "  net/http/httputil's ReverseProxy to the mock: what a gateway adds beyond forwarding bytes.")
	fmt.Fprintln(w, "ratios: against crispy /chat in the same mode (above 1: crispy is better), hops included.")
	fmt.Fprintln(w)
	for _, r := range rs {
		if r.FirstError != "" {
			fmt.Fprintf(w, "%s: %d errors, first: %s\n", r.Name, r.Errors, r.FirstError)
		}
	}
}

func ratio(a, b float64) string {
	if b <= 0 || a <= 0 {
		return ""
	}
	return fmt.Sprintf("%.1f×", a/b)
}

func writeJSON(path string, rs []*result) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(map[string]any{"generatedAt": time.Now().UTC().Format(time.RFC3339), "results": rs}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Printf("wrote %s\n", path)
	return nil
}

// chatBody is an OpenAI chat completion request for the mock model.
func chatBody(stream bool) string {
	if stream {
		return `{"model":"mock-model","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16,"stream":true,"stream_options":{"include_usage":true}}`
	}
	return `{"model":"mock-model","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16}`
}

func postJSON(url, body string, headers ...string) func(int) (*http.Request, error) {
	return func(int) (*http.Request, error) {
		req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		return req, nil
	}
}

func directContenders(upstream string) []*contender {
	return []*contender{
		{Name: "direct", newRequest: postJSON(upstream+"/chat/completions", chatBody(false)), proc: &gatewayProc{}},
		{Name: "direct stream", Stream: true, newRequest: postJSON(upstream+"/chat/completions", chatBody(true)), proc: &gatewayProc{}},
	}
}

const (
	// serveProxyCmd is the hidden subcommand that makes this binary the floor's proxy process.
	serveProxyCmd = "serve-proxy"
	floorGateway  = "go reverse proxy"
	floorName     = floorGateway + " (floor)"
)

// startFloor re-executes this binary as the floor's proxy process, so that the floor pays the same
// cross-process hops as every other gateway and its CPU is counted from /proc like theirs.
func startFloor(ctx context.Context, work, upstream string) (*gatewayProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("own executable: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	// The proxy forwards paths as they come: /v1/chat/completions to the mock's, hence its origin.
	cmd := exec.CommandContext(ctx, exe, serveProxyCmd, "-listen", fmt.Sprintf("127.0.0.1:%d", port),
		"-upstream", strings.TrimSuffix(upstream, "/v1"))
	return startProc(ctx, "goproxy", work, cmd, base, httpOK(http.MethodGet, base+"/v1/models", ""))
}

func floorContenders(p *gatewayProc) []*contender {
	return []*contender{
		{Name: floorName, Gateway: floorGateway, newRequest: postJSON(p.base+"/v1/chat/completions", chatBody(false)), proc: p},
		{Name: floorName + " stream", Gateway: floorGateway, Stream: true, newRequest: postJSON(p.base+"/v1/chat/completions", chatBody(true)), proc: p},
	}
}

// serveProxy serves the floor: a plain single-host reverse proxy to -upstream, until ctx ends.
func serveProxy(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet(serveProxyCmd, flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to serve on")
	upstream := fs.String("upstream", "", "upstream origin (http://host:port); request paths are kept")
	if err := fs.Parse(args); err != nil {
		return err
	}
	target, err := url.Parse(*upstream)
	if err != nil || target.Host == "" {
		return fmt.Errorf("upstream %q: want http://host:port (%v)", *upstream, err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	// crispy's provider client's transport, so the floor pools upstream connections as crispy does.
	rp.Transport = gateway.NewHTTPClient().Transport
	// Flush every write, so that a stream's events reach the client as the upstream sends them.
	rp.FlushInterval = -1
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// The request body is read before proxying, as every gateway here does (they parse it). Streamed
	// to the upstream as it comes, the body races the server: writing the response headers drains
	// and closes the inbound body while the transport may still read it to check its length, which
	// fails the upstream connection mid-response (golang/go#40747; unexpected EOF at the client).
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, fmt.Sprintf("read request body: %v", err), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		rp.ServeHTTP(w, r)
	})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// gatewayProc is a started gateway process.
type gatewayProc struct {
	name string
	cmd  *exec.Cmd
	base string // http://127.0.0.1:port
	log  *os.File
	done chan struct{}
	key  string // API key the gateway wants, if any
}

// cpu is the user+system CPU time of the process and its descendants so far (0 without a process).
func (p *gatewayProc) cpu() time.Duration {
	if p == nil || p.cmd == nil {
		return 0
	}
	var total time.Duration
	for _, pid := range descendants(p.cmd.Process.Pid) {
		total += procCPU(pid)
	}
	return total
}

// clockTick is USER_HZ, the unit of utime and stime in /proc/<pid>/stat: 100 on every Linux ABI.
const clockTick = 100

// procCPU reads utime+stime of pid (fields 14 and 15 of /proc/<pid>/stat).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; the fields after it follow its closing parenthesis.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / clockTick
}

// descendants is pid and every process below it (LiteLLM's uvicorn may run worker processes).
func descendants(pid int) []int {
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", out[i], out[i]))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startProc starts a gateway with its output in work/<name>.log and waits until ready answers.
func startProc(ctx context.Context, name, work string, cmd *exec.Cmd, base string, ready func() bool) (*gatewayProc, error) {
	logf, err := os.Create(filepath.Join(work, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	p := &gatewayProc{name: name, cmd: cmd, base: base, log: logf, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	deadline := time.Now().Add(90 * time.Second)
	for !ready() {
		select {
		case <-p.done:
			return nil, fmt.Errorf("%s exited before it was ready; see %s", name, tail(logf.Name()))
		case <-ctx.Done():
			p.stop()
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("%s not ready after 90 s; log: %s", name, tail(logf.Name()))
		}
	}
	return p, nil
}

// stop sends SIGTERM to the process group, then SIGKILL after 30 s, and reports how long it took.
func (p *gatewayProc) stop() {
	if p == nil || p.cmd == nil {
		return
	}
	start := time.Now()
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	fmt.Printf("%s stopped in %.1f s (exit %d)\n", p.name, time.Since(start).Seconds(), p.cmd.ProcessState.ExitCode())
	p.log.Close()
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

func httpOK(method, url, body string, headers ...string) func() bool {
	return func() bool {
		req, err := http.NewRequest(method, url, strings.NewReader(body))
		if err != nil {
			return false
		}
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
}

// crispyTenant is a public tenant whose chat model is the mock's, with the rate limit and a token
// budget on (set far above what the run uses) so that both are checked on every request, as in
// production, and sessions capped at 20 messages so that history stays small however long the run.
const crispyTenant = `{
  "tenantId": "bench", "accountId": "00000000000000000000000000000000", "aiGatewayId": "gw",
  "aiModels": {"chat": "mock-model", "embeddings": "local/hash-embed"},
  "vectorizeNamespace": "bench", "rateLimit": {"perMinute": 100000000, "burst": 100000000},
  "tokenBudget": {"daily": 1000000000000, "monthly": 1000000000000},
  "maxMessagesPerSession": 20,
  "featureFlags": {}, "allowedHosts": [], "apiKeys": [], "public": true
}`

// crispySessions is how many chat sessions the /chat contenders spread their requests over.
const crispySessions = 256

// startCrispy starts bin as the gateway named name (its contenders' prefix, its folder under work).
func startCrispy(ctx context.Context, name, bin, work, upstream string) (*gatewayProc, error) {
	dir := filepath.Join(work, name)
	if err := os.MkdirAll(filepath.Join(dir, "tenants", "bench"), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "tenants", "bench", "tenant.config.json"), []byte(crispyTenant), 0o644); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	admin, err := freePort()
	if err != nil {
		return nil, err
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	cmd := exec.CommandContext(ctx, bin, "serve", "--node-name", "bench", "--data-dir", filepath.Join(dir, "data"),
		"--tenants-dir", filepath.Join(dir, "tenants"), "--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--admin-addr", fmt.Sprintf("127.0.0.1:%d", admin), "--log-format", "json", "--log-level", "warn")
	cmd.Env = append(os.Environ(), "CRISPY_OPENAI_BASE_URL="+upstream, "CRISPY_OPENAI_API_KEY=sk-bench")
	return startProc(ctx, name, work, cmd, base, httpOK(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/readyz", admin), ""))
}

func crispyContenders(ctx context.Context, client *http.Client, p *gatewayProc) []*contender {
	chat := func(stream bool) func(int) (*http.Request, error) {
		return func(i int) (*http.Request, error) {
			body := fmt.Sprintf(`{"message":"Say hello.","sessionId":"bench-%d","stream":%t}`, (i%crispySessions+crispySessions)%crispySessions, stream)
			return postJSON(p.base+"/chat", body, "x-tenant-id", "bench")(i)
		}
	}
	cs := []*contender{
		{Name: p.name + " /chat", Gateway: p.name, newRequest: chat(false), proc: p},
		{Name: p.name + " /chat stream", Gateway: p.name, Stream: true, newRequest: chat(true), proc: p},
	}
	// The stateless OpenAI-compatible route, when this build has one.
	v1 := &contender{Name: p.name + " /v1", Gateway: p.name, newRequest: postJSON(p.base+"/v1/chat/completions", chatBody(false), "x-tenant-id", "bench"), proc: p}
	if _, err := once(ctx, client, v1, 0); err != nil {
		fmt.Printf("%s /v1/chat/completions: not measured (%v)\n", p.name, err)
		return cs
	}
	return append(cs, v1, &contender{Name: p.name + " /v1 stream", Gateway: p.name, Stream: true,
		newRequest: postJSON(p.base+"/v1/chat/completions", chatBody(true), "x-tenant-id", "bench"), proc: p})
}

// portkeyPreload adapts Portkey 1.15 to this Node without changing its work per request:
//   - it makes Node's servers listen on loopback only (Portkey's start-server listens on every
//     interface and has no option for the host);
//   - it gives a streamed upstream response mutable headers. @hono/node-server 1.14's Response keeps
//     the init's Headers object, and for a stream Portkey passes fetch's Response (immutable
//     headers) as the init, then appends its own headers: "TypeError: immutable", a 500 for every
//     stream. Re-wrapping the response copies the headers once; the body stream is the same object.
const portkeyPreload = `const net = require('net');
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'number') return listen.call(this, args[0], '127.0.0.1', ...args.slice(1).filter((a) => typeof a === 'function'));
  if (args[0] && typeof args[0] === 'object' && !args[0].host && !args[0].path) args[0].host = '127.0.0.1';
  return listen.apply(this, args);
};
const fetch0 = globalThis.fetch;
const Response0 = globalThis.Response;
globalThis.fetch = async (...args) => {
  const r = await fetch0(...args);
  if (!(r.headers.get('content-type') || '').startsWith('text/event-stream')) return r;
  return new Response0(r.body, { status: r.status, statusText: r.statusText, headers: new Headers(r.headers) });
};
`

func startPortkey(ctx context.Context, dir, work string) (*gatewayProc, error) {
	script := filepath.Join(dir, "node_modules", "@portkey-ai", "gateway", "build", "start-server.js")
	if _, err := os.Stat(script); err != nil {
		return nil, err
	}
	preload := filepath.Join(work, "loopback.cjs")
	if err := os.WriteFile(preload, []byte(portkeyPreload), 0o644); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	cmd := exec.CommandContext(ctx, "node", "--require", preload, script, fmt.Sprintf("--port=%d", port), "--headless")
	cmd.Env = append(os.Environ(), "NODE_ENV=production")
	return startProc(ctx, "portkey", work, cmd, base, httpOK(http.MethodGet, base+"/", ""))
}

func portkeyContenders(p *gatewayProc, upstream string) []*contender {
	h := []string{"x-portkey-provider", "openai", "x-portkey-custom-host", upstream, "Authorization", "Bearer sk-bench"}
	return []*contender{
		{Name: "portkey", Gateway: "portkey", newRequest: postJSON(p.base+"/v1/chat/completions", chatBody(false), h...), proc: p},
		{Name: "portkey stream", Gateway: "portkey", Stream: true, newRequest: postJSON(p.base+"/v1/chat/completions", chatBody(true), h...), proc: p},
	}
}

func startLiteLLM(ctx context.Context, bin, work, upstream string) (*gatewayProc, error) {
	// The proxy refuses to start without a master key; this one lives as long as the run.
	var key [16]byte
	if _, err := rand.Read(key[:]); err != nil {
		return nil, err
	}
	masterKey := "sk-" + hex.EncodeToString(key[:])
	cfg := filepath.Join(work, "litellm.yaml")
	yaml := fmt.Sprintf(`model_list:
  - model_name: mock-model
    litellm_params:
      model: openai/mock-model
      api_base: %s
      api_key: sk-bench
litellm_settings:
  telemetry: false
`, upstream)
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	cmd := exec.CommandContext(ctx, bin, "--config", cfg, "--host", "127.0.0.1", "--port", strconv.Itoa(port), "--num_workers", "1")
	// The model cost map is read from the installed package, not fetched.
	cmd.Env = append(os.Environ(), "LITELLM_LOCAL_MODEL_COST_MAP=True", "LITELLM_TELEMETRY=False", "LITELLM_LOG=ERROR",
		"LITELLM_MASTER_KEY="+masterKey)
	p, err := startProc(ctx, "litellm", work, cmd, base, httpOK(http.MethodGet, base+"/health/liveliness", ""))
	if p != nil {
		p.key = masterKey
	}
	return p, err
}

func litellmContenders(p *gatewayProc) []*contender {
	h := []string{"Authorization", "Bearer " + p.key}
	return []*contender{
		{Name: "litellm", Gateway: "litellm", newRequest: postJSON(p.base+"/v1/chat/completions", chatBody(false), h...), proc: p},
		{Name: "litellm stream", Gateway: "litellm", Stream: true, newRequest: postJSON(p.base+"/v1/chat/completions", chatBody(true), h...), proc: p},
	}
}

// upstream is the mock OpenAI-compatible server.
type upstream struct {
	srv  *http.Server
	base string // http://127.0.0.1:port/v1
}

func (u *upstream) Close() { _ = u.srv.Close() }

func startUpstream() (*upstream, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	h := mockllm.Handler(mockllm.Reply{ID: "chatcmpl-mock", OwnedBy: "bench",
		Parts: []string{"Hello! ", "How can I help ", "you today?"}, PromptTokens: 12, CompletionTokens: 9}, nil)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	return &upstream{srv: srv, base: "http://" + l.Addr().String() + "/v1"}, nil
}
