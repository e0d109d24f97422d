package test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/test/harness"
)

var crispyBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "crispy-bin-")
	if err != nil {
		panic(err)
	}
	crispyBin = harness.Build(&buildTB{}, dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildTB lets TestMain use harness.Build, which reports failures through testing.TB.
type buildTB struct{ testing.TB }

func (*buildTB) Helper()                   {}
func (*buildTB) Fatalf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }

func newNode(t *testing.T, env ...string) *harness.Node {
	return &harness.Node{
		Bin: crispyBin, DataDir: t.TempDir(), TenantsDir: "../tenants",
		Addr: harness.FreeAddr(t), AdminAddr: harness.FreeAddr(t), Env: env,
	}
}

// slowUpstream is an OpenAI-compatible server on loopback that streams n tokens, one every gap.
func slowUpstream(t *testing.T, n int, gap time.Duration) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range n {
			fmt.Fprintf(w, "data: {\"choices\":[{\"delta\":{\"content\":\"t%d \"}}]}\n\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-time.After(gap):
			case <-r.Context().Done():
				return
			}
		}
		fmt.Fprintf(w, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":%d}}\n\ndata: [DONE]\n\n", n)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string, headers ...string) (int, map[string]any) {
	t.Helper()
	return call(t, "GET", url, "", headers...)
}

func call(t *testing.T, method, url, body string, headers ...string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(k, strings.TrimSpace(v))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s %s: not JSON (%v): %s", method, url, err, b)
	}
	return resp.StatusCode, out
}

// The shipped binary with the shipped tenants: health, keyed access, chat through the fallback
// model, history, and a restart that finds the history again.
func TestBinaryServesAndRestartKeepsHistory(t *testing.T) {
	n := newNode(t)
	n.Start(t)

	if code, body := get(t, n.URL()+"/health", "x-tenant-id: mrrainbowsmoke"); code != 200 || body["ok"] != true {
		t.Fatalf("health: %d %v", code, body)
	}
	if code, body := get(t, n.URL()+"/health", "x-api-key: ck_example_local_dev_key"); code != 200 || body["data"].(map[string]any)["tenantId"] != "example" {
		t.Fatalf("health by key: %d %v", code, body)
	}
	if code, body := get(t, n.URL()+"/health", "x-tenant-id: example"); code != 401 {
		t.Fatalf("keyed tenant without key: %d %v", code, body)
	}
	code, body := call(t, "POST", n.URL()+"/chat", `{"message":"remember me","sessionId":"bb1","stream":false}`, "x-tenant-id: mrrainbowsmoke")
	if code != 200 {
		t.Fatalf("chat: %d %v", code, body)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.Stop(ctx); err != nil {
		t.Fatalf("SIGTERM: exit %v\n%s", err, n.Output())
	}
	n.Start(t)
	_, hist := get(t, n.URL()+"/chat/bb1/history", "x-tenant-id: mrrainbowsmoke")
	msgs := hist["data"].(map[string]any)["messages"].([]any)
	if len(msgs) != 2 || msgs[0].(map[string]any)["content"] != "remember me" {
		t.Fatalf("history after restart: %v", hist)
	}
}

// SIGTERM while a stream is in flight: the stream finishes with event: done, the reply is stored,
// and the process exits cleanly.
func TestSIGTERMDrainsInFlightStream(t *testing.T) {
	up := slowUpstream(t, 10, 100*time.Millisecond)
	n := newNode(t, "CRISPY_OPENAI_BASE_URL="+up.URL, "MODEL_ID=slow/model")
	n.Start(t)

	req, _ := http.NewRequest("POST", n.URL()+"/chat", strings.NewReader(`{"message":"drain me","sessionId":"drain1"}`))
	req.Header.Set("x-tenant-id", "mrrainbowsmoke")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rd := bufio.NewReader(resp.Body)
	if _, err := rd.ReadString('\n'); err != nil { // the first token has arrived
		t.Fatal(err)
	}
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		stopped <- n.Stop(ctx)
	}()
	rest, err := io.ReadAll(rd)
	if err != nil {
		t.Fatalf("stream cut during drain: %v", err)
	}
	if !strings.Contains(string(rest), "event: done") || strings.Contains(string(rest), "event: error") {
		t.Fatalf("stream did not end cleanly during drain:\n%s", rest)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("exit after drain: %v\n%s", err, n.Output())
	}
	n.Args = nil
	n.Env = nil
	n.Start(t)
	_, hist := get(t, n.URL()+"/chat/drain1/history", "x-tenant-id: mrrainbowsmoke")
	msgs := hist["data"].(map[string]any)["messages"].([]any)
	if len(msgs) != 2 || !strings.HasPrefix(msgs[1].(map[string]any)["content"].(string), "t0 t1") {
		t.Fatalf("drained reply not stored: %v", hist)
	}
}
