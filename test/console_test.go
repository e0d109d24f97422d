package test

// The web console (console/) driven in a real Chromium by chromedp, against the real binary: sign
// in with a key, upload a document and find it with a search, stream a chat reply token by token
// (and stop one mid-stream, which must cancel the upstream call), see the usage chart carry the
// numbers GET /usage returns, play speech, and see the members on the operator page. Screenshots of
// every page go to test/out/console/; CONSOLE_DOCS_IMG=1 also refreshes the two in docs/img/.
//
//	go test ./test/ -run Console -v

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/crispy-enigma/crispy/config"
)

const consoleKey = "ck_console_test_key_0123456789"

// chromiumPath finds Debian's chromium; without it the test skips, and fails on CI.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed on CI: make test installs it (scripts/provision.sh)")
	}
	t.Skip("chromium is not installed (apt-get install chromium, or run make test as root); the console's browser test needs it")
	return ""
}

// consoleTenants writes a keyed tenant whose chat model is an OpenAI-compatible upstream (stream
// that the test stops) with local/extractive as the other choice, speech on, and a token budget.
func consoleTenants(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`{
  "tenantId": "console", "accountId": "acc-console", "aiGatewayId": "gw",
  "aiModels": {"chat": "slow/model", "embeddings": "local/hash-embed", "fallbackChat": "local/extractive"},
  "vectorizeNamespace": "console",
  "rateLimit": {"perMinute": 1000, "burst": 1000},
  "featureFlags": {"tts_enabled": true, "tools_enabled": true},
  "allowedHosts": ["console.example.test"],
  "apiKeys": [%q],
  "tokenBudget": {"daily": 1000000, "monthly": 10000000}
}`, config.HashAPIKey(consoleKey))
	if err := os.MkdirAll(filepath.Join(dir, "console"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "console", "tenant.config.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// fakeUpstream is an OpenAI-compatible model. Asked "what is 6*7?" with tools offered, it calls the
// calculate tool, and answers once it has the result; anything else it streams endlessly until its
// client goes away, which it reports on cancelled.
func fakeUpstream(t *testing.T) (*httptest.Server, <-chan struct{}) {
	cancelled := make(chan struct{})
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Messages []struct {
				Role    string `json:"role"`
				Content string `json:"content"`
			} `json:"messages"`
			Tools []json.RawMessage `json:"tools"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		w.Header().Set("Content-Type", "text/event-stream")
		last := req.Messages[len(req.Messages)-1]
		switch {
		case last.Role == "tool":
			fmt.Fprint(w, "data: {\"choices\":[{\"delta\":{\"content\":\"It is 42.\"}}]}\n\n")
			fmt.Fprint(w, "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n")
			return
		case last.Content == "what is 6*7?" && len(req.Tools) > 0:
			fmt.Fprint(w, `data: {"choices":[{"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"calculate","arguments":"{\"expression\":\"6*7\"}"}}]}}]}`+"\n\n")
			fmt.Fprint(w, "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\ndata: [DONE]\n\n")
			return
		}
		for i := 0; ; i++ {
			fmt.Fprintf(w, "data: {\"choices\":[{\"delta\":{\"content\":\"w%d \"}}]}\n\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-time.After(50 * time.Millisecond): // pacing of the fake model, not synchronisation
			case <-r.Context().Done():
				once.Do(func() { close(cancelled) })
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv, cancelled
}

func TestConsoleInChromium(t *testing.T) {
	chromium := chromiumPath(t)
	started := time.Now()
	up, upstreamCancelled := fakeUpstream(t)
	n := newNode(t, "CRISPY_OPENAI_BASE_URL="+up.URL)
	n.TenantsDir = consoleTenants(t)
	n.Start(t)
	base, admin := n.URL(), "http://"+n.AdminAddr

	out := filepath.Join("out", "console")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"), chromedp.Flag("mute-audio", true),
		chromedp.WindowSize(1280, 900),
		// A cold Chromium on two busy cores (the rest of the suite runs beside it) can take longer
		// than chromedp's default 20 s to print its DevTools address.
		chromedp.WSURLReadTimeout(90 * time.Second),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	defer cancelTimeout()

	if err := chromedp.Run(ctx); err != nil { // starts the browser on ctx, not on a step's shorter one
		t.Fatalf("start chromium: %v", err)
	}
	// Page errors (uncaught exceptions, console.error, CSP refusals) fail the test.
	var mu sync.Mutex
	var pageErrors []string
	chromedp.ListenTarget(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			pageErrors = append(pageErrors, "exception: "+e.ExceptionDetails.Error())
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.APITypeError {
				var parts []string
				for _, a := range e.Args {
					parts = append(parts, string(a.Value)+a.Description)
				}
				pageErrors = append(pageErrors, "console.error: "+strings.Join(parts, " "))
			}
		}
	})

	// shot writes the whole page to test/out/console/<name>.png; for the README, the viewport of
	// the playground and usage pages to docs/img/ (CONSOLE_DOCS_IMG=1).
	shot := func(name string) chromedp.Action {
		return chromedp.ActionFunc(func(ctx context.Context) error {
			if os.Getenv("CONSOLE_DOCS_IMG") == "1" && (name == "playground" || name == "usage") {
				var view []byte
				if err := chromedp.CaptureScreenshot(&view).Do(ctx); err != nil {
					return err
				}
				if err := os.WriteFile(filepath.Join("..", "docs", "img", "console-"+name+".png"), view, 0o644); err != nil {
					return err
				}
			}
			var full []byte
			if err := chromedp.FullScreenshot(&full, 100).Do(ctx); err != nil { // 100: PNG
				return err
			}
			return os.WriteFile(filepath.Join(out, name+".png"), full, 0o644)
		})
	}
	run := func(step string, actions ...chromedp.Action) {
		t.Helper()
		for i, a := range actions {
			sctx, cancel := context.WithTimeout(ctx, 40*time.Second)
			err := chromedp.Run(sctx, a)
			cancel()
			if err != nil {
				var body string
				_ = chromedp.Run(ctx, shot("failed"), chromedp.Text("body", &body, chromedp.ByQuery))
				t.Fatalf("%s, action %d: %v (screenshot %s/failed.png)\npage text:\n%s", step, i, err, out, body)
			}
		}
	}
	poll := func(expr string) chromedp.Action { // waits until expr is truthy (the page's own state)
		return chromedp.Poll(expr, nil, chromedp.WithPollingTimeout(30*time.Second))
	}

	// A wrong key shows the envelope's message; then sign in with the key only (the tenant is
	// resolved from it).
	var refused string
	run("sign in",
		chromedp.Navigate(base+"/console/"),
		chromedp.WaitVisible("#api-key", chromedp.ByID),
		chromedp.SendKeys("#tenant-id", "console", chromedp.ByID),
		chromedp.SendKeys("#api-key", "ck_wrong", chromedp.ByID),
		chromedp.Click("#signin-btn", chromedp.ByID),
		chromedp.WaitVisible("#signin .banner-error", chromedp.ByQuery),
		chromedp.Text("#signin .banner-error", &refused, chromedp.ByQuery),
		shot("signin"),
		chromedp.Evaluate(`document.getElementById('tenant-id').value = document.getElementById('api-key').value = ''`, nil),
		chromedp.SendKeys("#api-key", consoleKey, chromedp.ByID),
		chromedp.Click("#signin-btn", chromedp.ByID),
		chromedp.WaitVisible("#tenant-name", chromedp.ByID),
	)
	if !strings.Contains(refused, "missing or invalid API key (unauthorized") {
		t.Errorf("a wrong key shows %q, want the envelope's message and code", refused)
	}
	var tenantName string
	run("tenant name", chromedp.Text("#tenant-name", &tenantName, chromedp.ByID))
	if !strings.Contains(tenantName, "console") {
		t.Fatalf("signed in as %q, want tenant console", tenantName)
	}
	var location string
	run("location", chromedp.Location(&location))
	if strings.Contains(location, consoleKey) {
		t.Fatal("the key is in the URL")
	}

	// Stop: the upstream model streams until cancelled; Stop aborts the fetch, and the server must
	// cancel the upstream call.
	var streamed string
	run("chat and stop",
		chromedp.WaitVisible("#message", chromedp.ByID),
		chromedp.SetValue("#model", "slow/model", chromedp.ByID),
		chromedp.SendKeys("#message", "count for me", chromedp.ByID),
		chromedp.Click("#send", chromedp.ByID),
		poll(`Number(document.querySelector('.msg.assistant')?.dataset.tokens || 0) >= 3`),
		chromedp.Click("#stop", chromedp.ByID),
		poll(`document.querySelector('.msg.assistant')?.dataset.stopped === 'true'`),
		chromedp.Text(".msg.assistant .body", &streamed, chromedp.ByQuery),
	)
	if !strings.HasPrefix(streamed, "w0 w1 w2") {
		t.Fatalf("streamed reply %q, want the upstream's tokens w0 w1 w2 …", streamed)
	}
	select {
	case <-upstreamCancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not cancel the upstream model call within 10 s")
	}

	// A model-requested tool call and its result show inline, before the reply.
	var toolCall, toolResult, toolReply string
	run("tool call",
		chromedp.Click("#new-session", chromedp.ByID),
		chromedp.SendKeys("#message", "what is 6*7?", chromedp.ByID),
		chromedp.Click("#send", chromedp.ByID),
		poll(`document.querySelector('.msg.assistant')?.dataset.done === 'true'`),
		chromedp.Text(`.tool[data-kind="tool_call"]`, &toolCall, chromedp.ByQuery),
		chromedp.Text(`.tool[data-kind="tool_result"]`, &toolResult, chromedp.ByQuery),
		chromedp.Text(".msg.assistant .body", &toolReply, chromedp.ByQuery),
		shot("playground-tools"),
	)
	if !strings.Contains(toolCall, "calculate") || !strings.Contains(toolResult, "42") || toolReply != "It is 42." {
		t.Fatalf("tool call %q, result %q, reply %q; want calculate, 42 and the model's answer", toolCall, toolResult, toolReply)
	}

	// Knowledge: upload by the file input (the drop zone's keyboard path), then search.
	doc := filepath.Join(t.TempDir(), "moon-facts.md")
	if err := os.WriteFile(doc, []byte("# Moon facts\n\nThe moon orbits the earth every 27 days. Tides follow the moon.\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var answer string
	var sources int
	run("upload and search",
		chromedp.Navigate(base+"/console/#knowledge"),
		chromedp.WaitReady("#files", chromedp.ByID),
		chromedp.SetUploadFiles("#files", []string{doc}, chromedp.ByID),
		poll(`document.querySelector('#uploads li')?.dataset.state === 'ingested'`),
		poll(`document.querySelector('#documents')?.textContent.includes('moon-facts.md')`),
		chromedp.SendKeys("#query", "how often does the moon orbit the earth?", chromedp.ByID),
		chromedp.Click("#search-btn", chromedp.ByID),
		poll(`document.querySelector('#search-result')?.dataset.sources !== undefined`),
		chromedp.Text("#answer", &answer, chromedp.ByID),
		chromedp.Evaluate(`document.querySelectorAll('#search-result .sources li').length`, &sources),
		shot("knowledge"),
	)
	if sources == 0 || !strings.Contains(answer, "27 days") {
		t.Fatalf("search: %d sources, answer %q; want the moon document", sources, answer)
	}

	// Playground with local/extractive: tokens arrive one event at a time, and the reply's [n]
	// citations link to their passages.
	var tokens int
	var reply string
	run("stream a reply",
		chromedp.Navigate(base+"/console/#playground"),
		chromedp.WaitVisible("#message", chromedp.ByID),
		chromedp.Click("#new-session", chromedp.ByID),
		chromedp.SetValue("#model", "local/extractive", chromedp.ByID),
		chromedp.SendKeys("#message", "How often does the moon orbit the earth?", chromedp.ByID),
		chromedp.Click("#send", chromedp.ByID),
		poll(`document.querySelector('.msg.assistant')?.dataset.done === 'true'`),
		chromedp.Evaluate(`Number(document.querySelector('.msg.assistant').dataset.tokens)`, &tokens),
		chromedp.Text(".msg.assistant .body", &reply, chromedp.ByQuery),
		poll(`document.querySelector('.msg.assistant a.cite') !== null`),
		shot("playground"),
	)
	if tokens < 5 || !strings.Contains(reply, "27 days") {
		t.Fatalf("reply arrived in %d token events: %q; want several, quoting the document", tokens, reply)
	}
	// The session list reopens a session from the server's history; the stopped reply was not stored.
	run("history",
		chromedp.Click("#new-session", chromedp.ByID),
		chromedp.Click("#session-list li:nth-child(1) button", chromedp.ByQuery),
		poll(`document.querySelectorAll('#log .msg').length === 2 && document.getElementById('chat-status').textContent === '2 messages'`),
		chromedp.Click("#session-list li:nth-child(3) button", chromedp.ByQuery),
		poll(`document.getElementById('chat-status').textContent === 'Empty session'`),
	)

	// Usage: wait until the ledger has projected every model call — the stopped one, the tool chat
	// (one call, its rounds summed), the extractive reply, and the query rewrite of each of the two
	// searches (the tenant's chat model is not a local one, so /search asks it to rewrite; the
	// endless upstream makes those time out) — then the chart must show exactly what GET /usage says.
	usage := waitUsage(t, base, 5)
	t.Logf("GET /usage totals: %+v", usage)
	var chartIn, chartOut float64
	var totalRequests string
	run("usage",
		chromedp.Navigate(base+"/console/#usage"),
		chromedp.WaitVisible("#chart-tokens-day", chromedp.ByID),
		chromedp.Evaluate(`[...document.querySelectorAll('#chart-tokens-day rect[data-series="in"]')].reduce((a, r) => a + Number(r.dataset.value), 0)`, &chartIn),
		chromedp.Evaluate(`[...document.querySelectorAll('#chart-tokens-day rect[data-series="out"]')].reduce((a, r) => a + Number(r.dataset.value), 0)`, &chartOut),
		chromedp.Text("#total-requests", &totalRequests, chromedp.ByID),
		poll(`document.querySelector('#slis') !== null`),
		shot("usage"),
	)
	if chartIn != usage.TokensIn || chartOut != usage.TokensOut || totalRequests != fmt.Sprint(usage.Requests) {
		t.Fatalf("usage page shows tokens in %v, out %v, requests %s; GET /usage says %+v", chartIn, chartOut, totalRequests, usage)
	}

	// Speech: the audio element gets the clip (a duration) from a blob: URL.
	var src string
	run("speech",
		chromedp.Navigate(base+"/console/#speech"),
		chromedp.WaitVisible("#speak", chromedp.ByID),
		chromedp.SetValue("#format", "wav", chromedp.ByID),
		chromedp.Click("#speak", chromedp.ByID),
		poll(`document.getElementById('audio').duration > 0`),
		chromedp.Evaluate(`document.getElementById('audio').src`, &src),
		shot("speech"),
	)
	if !strings.HasPrefix(src, "blob:") {
		t.Fatalf("audio src %q, want a blob: URL", src)
	}

	// The playground at phone width: readable, no horizontal scroll.
	var overflow bool
	run("phone width",
		chromedp.EmulateViewport(390, 844),
		chromedp.Navigate(base+"/console/#playground"),
		chromedp.WaitVisible("#message", chromedp.ByID),
		chromedp.Evaluate(`document.documentElement.scrollWidth > window.innerWidth + 1`, &overflow),
		shot("playground-phone"),
		chromedp.EmulateViewport(1280, 900),
	)
	if overflow {
		t.Error("the playground scrolls horizontally at 390 px")
	}

	// Operator view on the admin listener: the members, refreshed automatically.
	var members string
	run("operator",
		chromedp.Navigate(admin+"/operator/"),
		chromedp.WaitVisible("#members-h", chromedp.ByID),
		chromedp.SetValue("#every", "2", chromedp.ByID),
		chromedp.Evaluate(`document.getElementById('every').dispatchEvent(new Event('change'))`, nil),
		poll(`document.getElementById('chart-rps') !== null`),
		chromedp.Text("#content", &members, chromedp.ByID),
		shot("operator"),
	)
	for _, want := range []string{"Members (1)", "(this node)", "CHAT", "LEDGER", "projector-bb", "ChatSession"} {
		if !strings.Contains(members, want) {
			t.Errorf("operator page lacks %q", want)
		}
	}

	mu.Lock()
	defer mu.Unlock()
	if len(pageErrors) > 0 {
		t.Errorf("page errors:\n%s", strings.Join(pageErrors, "\n"))
	}
	t.Logf("console test ran in %v (screenshots in %s)", time.Since(started).Round(time.Millisecond), out)
}

type usageTotals struct {
	Requests  int64   `json:"requests"`
	TokensIn  float64 `json:"tokensIn"`
	TokensOut float64 `json:"tokensOut"`
}

// waitUsage polls GET /usage until it counts want model calls (the ledger projector is
// asynchronous) and returns its totals for the console's default window.
func waitUsage(t *testing.T, base string, want int64) usageTotals {
	t.Helper()
	now := time.Now().UTC()
	q := fmt.Sprintf("/usage?groupBy=day&from=%s&to=%s", now.AddDate(0, 0, -29).Format(time.DateOnly), now.Format(time.DateOnly))
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequest("GET", base+q, nil)
		req.Header.Set("x-api-key", consoleKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var env struct {
			Data struct {
				Totals usageTotals `json:"totals"`
			} `json:"data"`
		}
		if err := json.Unmarshal(b, &env); err != nil {
			t.Fatalf("GET /usage: %v: %s", err, b)
		}
		if env.Data.Totals.Requests >= want {
			return env.Data.Totals
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /usage still counts %d model calls after 30 s, want %d", env.Data.Totals.Requests, want)
		}
		time.Sleep(100 * time.Millisecond) // polling the ledger projection, as harness.WaitReady polls /readyz
	}
}
