package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/internal/freeport"
)

func TestParseMix(t *testing.T) {
	cases := []struct {
		in      string
		want    map[string]int
		wantErr string
	}{
		{defaultMix, map[string]int{opChatJSON: 5, opChatStream: 2, opSearch: 2, opIngest: 1, opHistory: 2}, ""},
		{"search", map[string]int{opSearch: 1}, ""},
		{" chat-json = 3 , history=0", map[string]int{opChatJSON: 3, opHistory: 0}, ""},
		{"chat=1", nil, "unknown operation"},
		{"search=-1", nil, "non-negative"},
		{"search=1,search=2", nil, "twice"},
		{"search=0", nil, "sum to 0"},
		{"", nil, "sum to 0"},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseMix(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseMix(%q) error = %v, want one containing %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("parseMix(%q) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

func TestParseTargetsLoopbackOnly(t *testing.T) {
	cases := []struct {
		in     string
		remote bool
		ok     bool
		why    string
	}{
		{"http://127.0.0.1:8787", false, true, ""},
		{"http://localhost:8787/,http://[::1]:8788", false, true, "trailing slash trimmed; IPv6 loopback"},
		{"http://127.0.0.2:1", false, true, "all of 127/8 is loopback"},
		{"http://10.0.0.1:8787", false, false, "private is not loopback"},
		{"http://example.com", false, false, "names are not resolved"},
		{"http://localhost.example.com", false, false, "a name that merely starts with localhost"},
		{"http://10.0.0.1:8787", true, true, "--allow-remote"},
		{"ftp://127.0.0.1", false, false, "scheme"},
		{"", false, false, "empty"},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			_, err := parseTargets(tc.in, tc.remote)
			if (err == nil) != tc.ok {
				t.Errorf("parseTargets(%q, %v) error = %v, want ok=%v (%s)", tc.in, tc.remote, err, tc.ok, tc.why)
			}
		})
	}
}

func TestParseRate(t *testing.T) {
	cases := []struct {
		in   string
		want float64
		ok   bool
	}{
		{"", 0, true}, {"50", 50, true}, {"50/s", 50, true}, {"2.5/s", 2.5, true}, {"600/m", 10, true},
		{"0/s", 0, false}, {"fast", 0, false}, {"-3/s", 0, false}, {"5/h", 0, false},
	}
	for _, tc := range cases {
		got, err := parseRate(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseRate(%q) = %v, %v; want %v, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestPercentileNearestRank(t *testing.T) {
	xs := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, tc := range []struct{ p, want float64 }{{50, 5}, {90, 9}, {99, 10}, {100, 10}, {1, 1}} {
		if got := percentile(xs, tc.p); got != tc.want {
			t.Errorf("p%v = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("p50 of nothing = %v, want 0", got)
	}
}

func TestPickOpFollowsWeights(t *testing.T) {
	mix := map[string]int{opChatJSON: 5, opSearch: 2, opHistory: 3}
	got := map[string]int{}
	for n := int64(0); n < 1000; n++ {
		got[pickOp(mix, n)]++
	}
	if diff := cmp.Diff(map[string]int{opChatJSON: 500, opSearch: 200, opHistory: 300}, got); diff != "" {
		t.Errorf("1000 picks (-want +got):\n%s", diff)
	}
}

func TestStreamCompleted(t *testing.T) {
	cases := []struct {
		name, body string
		want       bool
	}{
		{"done", "data: {\"content\":\"a\"}\n\nevent: done\ndata: {\"done\":true}\n\n", true},
		{"error then done", "event: error\ndata: {}\n\nevent: done\ndata: {}\n\n", false},
		{"cut off", "data: {\"content\":\"a\"}\n\n", false},
	}
	for _, tc := range cases {
		if got := streamCompleted(strings.NewReader(tc.body)); got != tc.want {
			t.Errorf("%s: streamCompleted = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestBenchAgainstNode runs the real node (serve) and a short mixed bench against it: every
// operation answered, no 5xx, every acknowledged chat message found in its history, and the
// goroutine check passes once the node settles.
func TestBenchAgainstNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node")
	}
	dir := t.TempDir()
	tdir := filepath.Join(dir, "tenants", "bench")
	if err := os.MkdirAll(tdir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tdir, "tenant.config.json"), []byte(`{
		"tenantId": "bench", "accountId": "acc", "aiGatewayId": "gw",
		"aiModels": {"chat": "local/extractive", "embeddings": "local/hash-embed"},
		"vectorizeNamespace": "bench", "rateLimit": {"perMinute": 100000, "burst": 100000},
		"featureFlags": {}, "allowedHosts": [], "apiKeys": [], "public": true}`), 0o644); err != nil {
		t.Fatal(err)
	}
	env := config.DefaultEnv()
	env.NodeName, env.DataDir, env.TenantsDir = "bench-test", filepath.Join(dir, "data"), filepath.Join(dir, "tenants")
	env.ListenAddr, env.AdminAddr = freeport.Addr(t), freeport.Addr(t)
	env.LogLevel, env.LogFormat = "error", "json"
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- serve(ctx, env) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Error("serve did not stop")
		}
	})
	target, admin := "http://"+env.ListenAddr, "http://"+env.AdminAddr
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-served:
			t.Fatalf("serve ended before ready: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("node not ready")
		}
		time.Sleep(100 * time.Millisecond)
	}

	mix, _ := parseMix(defaultMix + ",health=1")
	var out bytes.Buffer
	rep, err := runBench(t.Context(), benchOptions{
		Targets: []string{target}, Admin: []string{admin}, Tenant: "bench", Mix: mix, Concurrency: 4,
		Requests: 130, Timeout: 30 * time.Second, SessionMessages: 5,
		CheckGoroutines: true, Settle: 30 * time.Second, GoroutineSlack: 50,
	}, &out)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(out.String())
	if !rep.Passed || rep.Total.Requests != 130 || rep.Total.OK != 130 {
		t.Fatalf("report: passed %v, %d requests, %d ok, failures %v", rep.Passed, rep.Total.Requests, rep.Total.OK, rep.Failures)
	}
	for _, op := range benchOps {
		if rep.Ops[op].OK == 0 {
			t.Errorf("operation %s never succeeded: %+v", op, rep.Ops[op])
		}
	}
	inv := rep.Invariants
	if inv.AcknowledgedMessages != rep.Ops[opChatJSON].OK+rep.Ops[opChatStream].OK || inv.LostMessages != 0 || inv.SessionsChecked == 0 {
		t.Errorf("invariants %+v: want every acknowledged chat checked and none lost", inv)
	}
}
