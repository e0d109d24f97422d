package test

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/test/harness"
)

// hardeningKey is the key of the "keyed" tenant of TestHardeningAttacks.
const hardeningKey = "ck_hardening_test_key"

// hardeningTenant is a tenant config for TestHardeningAttacks.
func hardeningTenant(id, extra string) string {
	return fmt.Sprintf(`{"tenantId": %q, "accountId": "acc", "aiGatewayId": "gw",
		"aiModels": {"chat": "local/extractive", "embeddings": "local/hash-embed"},
		"vectorizeNamespace": %[1]q, "featureFlags": {}, "allowedHosts": [], %s}`, id, extra)
}

// TestHardeningAttacks replays issue 16's probe against the built binary and asserts that each limit
// holds: a client-chosen user ID does not escape a tenant's rate limit, unknown model names do not
// grow the metric series, maxTokens cannot overspend a budget, a chunk bomb is refused, slow
// connections from one address are capped while another client is served, and bad credentials,
// bad paging and a corrupt PDF get clear envelopes.
func TestHardeningAttacks(t *testing.T) {
	dir := t.TempDir()
	tenants := map[string]string{
		"limited": hardeningTenant("limited", `"public": true, "rateLimit": {"perMinute": 5, "burst": 5}, "apiKeys": []`),
		"open":    hardeningTenant("open", `"public": true, "rateLimit": {"perMinute": 100000, "burst": 100000}, "apiKeys": []`),
		"budget":  hardeningTenant("budget", `"public": true, "rateLimit": {"perMinute": 100000, "burst": 100000}, "apiKeys": [], "tokenBudget": {"daily": 300}`),
		"keyed":   hardeningTenant("keyed", `"rateLimit": {"perMinute": 1000, "burst": 1000}, "apiKeys": ["`+config.HashAPIKey(hardeningKey)+`"]`),
	}
	for id, cfg := range tenants {
		if err := os.MkdirAll(filepath.Join(dir, id), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, id, "tenant.config.json"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const connCap = 20
	n := &harness.Node{Bin: crispyBin, DataDir: t.TempDir(), TenantsDir: dir,
		Addr: harness.FreeAddr(t), AdminAddr: harness.FreeAddr(t),
		Env: []string{fmt.Sprintf("CRISPY_MAX_CONNS_PER_CLIENT=%d", connCap)}}
	n.Start(t)
	base := n.URL()

	t.Run("30 userIds against a public 5/minute tenant", func(t *testing.T) {
		passed := 0
		for i := range 30 {
			code, _ := call(t, "POST", base+"/chat", fmt.Sprintf(`{"message":"hi","stream":false,"userId":"u%d"}`, i),
				"x-tenant-id: limited", "Content-Type: application/json", fmt.Sprintf("x-user-id: u%d", i))
			if code == 200 {
				passed++
			}
		}
		t.Logf("%d of 30 passed", passed)
		if passed > 5 {
			t.Errorf("%d of 30 requests passed a 5/minute limit (before the fix: 30)", passed)
		}
	})

	t.Run("300 unknown model names", func(t *testing.T) {
		before := seriesCount(t, n)
		for i := range 300 {
			call(t, "POST", base+"/chat", fmt.Sprintf(`{"message":"hi","stream":false,"modelId":"nosuch/model-%d"}`, i),
				"x-tenant-id: open", "Content-Type: application/json")
		}
		grown := seriesCount(t, n) - before
		t.Logf("/metrics: %d series before, +%d after 300 unknown model names", before, grown)
		if grown > 100 {
			t.Errorf("/metrics grew by %d series for 300 unknown model names (before the fix: one set per name)", grown)
		}
	})

	t.Run("40 concurrent maxTokens 1 chats against a 300-token budget", func(t *testing.T) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		ok := 0
		slots := make(chan struct{}, connCap/2) // concurrent, within the per-client connection cap
		for i := range 40 {
			wg.Go(func() {
				slots <- struct{}{}
				defer func() { <-slots }()
				code, _ := call(t, "POST", base+"/chat", fmt.Sprintf(`{"message":"hello number %d","stream":false,"maxTokens":1,"sessionId":"b%d"}`, i, i),
					"x-tenant-id: budget", "Content-Type: application/json")
				if code == 200 {
					mu.Lock()
					ok++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		// The ledger reaches the read model in the background: wait until every answered call is in.
		deadline := time.Now().Add(20 * time.Second)
		for {
			_, body := get(t, base+"/usage", "x-tenant-id: budget")
			totals, _ := body["data"].(map[string]any)["totals"].(map[string]any)
			reqs, _ := totals["requests"].(float64)
			in, _ := totals["tokensIn"].(float64)
			out, _ := totals["tokensOut"].(float64)
			if int(reqs) >= ok || time.Now().After(deadline) {
				t.Logf("%d of 40 answered, %v tokens charged", ok, in+out)
				if in+out > 300 {
					t.Errorf("charged %v tokens to a 300-token budget (%d answered; before the fix: 1,260)", in+out, ok)
				}
				return
			}
		}
	})

	t.Run("450 KB with maxChunkSize 1", func(t *testing.T) {
		body := fmt.Sprintf(`{"docId":"bomb","text":%q,"chunking":{"maxChunkSize":1,"overlap":0}}`, strings.Repeat("a ", 225<<10))
		code, env := call(t, "POST", base+"/ingest", body, "x-tenant-id: open", "Content-Type: application/json")
		t.Logf("chunk bomb: %d %v", code, env["error"])
		if code < 400 || code >= 500 {
			t.Errorf("chunk bomb: %d %v, want a 4xx", code, env)
		}
		if _, docs := get(t, base+"/documents", "x-tenant-id: open"); docs["data"].(map[string]any)["count"] != 0.0 {
			t.Errorf("documents after the refused bomb: %v", docs["data"])
		}
	})

	t.Run("200 slow connections from one address", func(t *testing.T) {
		conns := make([]net.Conn, 0, 200)
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for range 200 {
			c, err := net.Dial("tcp", n.Addr)
			if err != nil {
				continue
			}
			fmt.Fprintf(c, "POST /chat HTTP/1.1\r\nHost: x\r\nx-tenant-id: open\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
			conns = append(conns, c)
		}
		// Another client (another loopback address) is still served.
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
		hc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}, Timeout: 30 * time.Second}
		req, _ := http.NewRequest("GET", base+"/health", nil)
		req.Header.Set("x-tenant-id", "keyed")
		req.Header.Set("x-api-key", hardeningKey)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("/health for another client under 200 slow connections: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("/health for another client: %d", resp.StatusCode)
		}
		// Connections over the cap were closed at once; the others are still waiting for a body.
		var held sync.WaitGroup
		var mu sync.Mutex
		open := 0
		for _, c := range conns {
			held.Go(func() {
				_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
				if _, err := bufio.NewReader(c).ReadByte(); err != nil {
					if ne, ok := err.(net.Error); ok && ne.Timeout() {
						mu.Lock()
						open++
						mu.Unlock()
					}
				}
			})
		}
		held.Wait()
		t.Logf("%d of %d slow connections held open (cap %d)", open, len(conns), connCap)
		if open > connCap {
			t.Errorf("%d slow connections held open, cap %d (before the fix: all 200)", open, connCap)
		}
	})

	t.Run("credentials", func(t *testing.T) {
		tests := []struct {
			name    string
			headers []string
			status  int
		}{
			{"a wrong key without a tenant", []string{"x-api-key: ck_wrong"}, 401},
			{"conflicting keys", []string{"x-api-key: " + hardeningKey, "Authorization: Bearer ck_other"}, 400},
			{"a public tenant with another tenant's key", []string{"x-tenant-id: open", "x-api-key: " + hardeningKey}, 403},
		}
		for _, tt := range tests {
			code, env := get(t, base+"/health", tt.headers...)
			if code != tt.status || env["ok"] != false {
				t.Errorf("%s: %d %v, want %d with an envelope", tt.name, code, env, tt.status)
			}
		}
	})

	t.Run("before=0", func(t *testing.T) {
		for _, q := range []string{"0", "-1"} {
			code, env := get(t, base+"/chat/s1/history?before="+q, "x-tenant-id: open")
			if code != 400 || env["error"].(map[string]any)["code"] != "invalid_request" {
				t.Errorf("before=%s: %d %v, want 400 invalid_request", q, code, env)
			}
		}
	})

	t.Run("corrupt PDF", func(t *testing.T) {
		pdf := base64.StdEncoding.EncodeToString([]byte("%PDF-1.4\n1 0 obj<</Length 99999>>stream\n\x00\x01garbage\nxref\n0 9\ntrailer<</Size 9/Root 1 0 R>>\nstartxref\n5\n%%EOF"))
		body := fmt.Sprintf(`{"documents":[{"docId":"broken-pdf","content":%q,"contentType":"application/pdf","encoding":"base64"}]}`, pdf)
		code, env := call(t, "POST", base+"/ingest", body, "x-tenant-id: open", "Content-Type: application/json")
		msg := fmt.Sprint(env)
		t.Logf("corrupt PDF: %d %s", code, msg)
		if code >= 500 || !strings.Contains(msg, "broken-pdf") || strings.Contains(msg, "runtime error") {
			t.Errorf("corrupt PDF: %d %s, want a 4xx or a failed result naming the document, no internals", code, msg)
		}
	})
}

// seriesCount is the number of series the admin listener's /metrics exposes.
func seriesCount(t *testing.T, n *harness.Node) int {
	t.Helper()
	resp, err := http.Get("http://" + n.AdminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	count := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if line := sc.Text(); line != "" && !strings.HasPrefix(line, "#") {
			count++
		}
	}
	return count
}
