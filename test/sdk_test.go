package test

// The official OpenAI clients against the whole binary (issue "OpenAI-compatible API"): the `openai`
// Python SDK, LangChain's ChatOpenAI/OpenAIEmbeddings in a short retrieval-augmented chain, and the
// `openai` Node SDK run test/sdk/openai_client.py and test/sdk/openai_client.mjs against a node whose
// chat model is a scripted upstream on loopback (it answers "scripted reply turns=<user messages>"
// and calls the first tool it is offered, so conversation state and tool calls can be asserted; a
// random-weight model cannot). scripts/sdk-clients.sh installs the clients into .cache; a client that
// cannot be installed skips its test, and fails it with CI=true.
//
//	go test ./test/ -run SDK -v

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

const (
	sdkKey        = "sk-crispy-sdk-test"
	sdkLimitedKey = "sk-crispy-sdk-limited"
	sdkModel      = "scripted"
	sdkForbidden  = "scripted-other" // served by the route, not in allowedModels
	sdkEmbedModel = "local/hash-embed"
)

// sdkClients installs the clients (idempotent) and returns the Python interpreter and the Node SDK's
// folder.
func sdkClients(t *testing.T) (python, nodeDir string) {
	t.Helper()
	cmd := exec.Command("../scripts/sdk-clients.sh", "install")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := fmt.Sprintf("scripts/sdk-clients.sh install: %v\n%s", err, stderr.String())
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "SDK_PYTHON="); ok {
			python = v
		}
		if v, ok := strings.CutPrefix(line, "SDK_NODE_DIR="); ok {
			nodeDir = v
		}
	}
	return python, nodeDir
}

// scriptedUpstream is an OpenAI-compatible chat server. Offered tools (and no tool result yet), it
// streams a call of the first one with arguments {"city":"Paris"}; otherwise it streams
// "scripted reply turns=<n>" where n counts the user messages it was sent. Every request body is kept
// for the pass-through assertions.
type scriptedUpstream struct {
	*httptest.Server
	mu     sync.Mutex
	bodies []map[string]any
}

func newScriptedUpstream(t *testing.T) *scriptedUpstream {
	u := &scriptedUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.Close)
	return u
}

func (u *scriptedUpstream) serve(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Messages []struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		} `json:"messages"`
		Tools []struct {
			Function struct {
				Name string `json:"name"`
			} `json:"function"`
		} `json:"tools"`
	}
	var raw map[string]any
	dec := json.NewDecoder(r.Body)
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		http.Error(w, `{"error":{"message":"bad json"}}`, http.StatusBadRequest)
		return
	}
	b, _ := json.Marshal(raw)
	_ = json.Unmarshal(b, &req)
	u.mu.Lock()
	u.bodies = append(u.bodies, raw)
	u.mu.Unlock()

	promptChars, users := 0, 0
	for _, m := range req.Messages {
		promptChars += utf8.RuneCountInString(m.Content)
		if m.Role == "user" {
			users++
		}
	}
	prompt := max(1, (promptChars+3)/4)
	w.Header().Set("Content-Type", "text/event-stream")
	send := func(v string) {
		fmt.Fprintf(w, "data: %s\n\n", v)
		w.(http.Flusher).Flush()
	}
	last := req.Messages[len(req.Messages)-1].Role
	if len(req.Tools) > 0 && last != "tool" {
		name := req.Tools[0].Function.Name
		send(fmt.Sprintf(`{"choices":[{"index":0,"delta":{"role":"assistant","tool_calls":[{"index":0,"id":"call_scripted1","type":"function","function":{"name":%q,"arguments":""}}]}}]}`, name))
		send(`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}}]}`)
		send(`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}}]}`)
		send(`{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}`)
		send(fmt.Sprintf(`{"choices":[],"usage":{"prompt_tokens":%d,"completion_tokens":9}}`, prompt))
		send("[DONE]")
		return
	}
	pieces := []string{"scripted", " reply", fmt.Sprintf(" turns=%d", users)}
	for _, p := range pieces {
		send(fmt.Sprintf(`{"choices":[{"index":0,"delta":{"content":%q}}]}`, p))
	}
	send(`{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`)
	send(fmt.Sprintf(`{"choices":[],"usage":{"prompt_tokens":%d,"completion_tokens":%d}}`, prompt, len(pieces)))
	send("[DONE]")
}

// sawRequest reports whether some upstream request carried every key with the value given (compared
// as JSON).
func (u *scriptedUpstream) sawRequest(want map[string]string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, b := range u.bodies {
		all := true
		for k, v := range want {
			got, _ := json.Marshal(b[k])
			if string(got) != v {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

// sawToolResult reports whether some upstream request carried an assistant message with the
// scripted call of tool name followed by the tool's result for it: a tool round trip reached the
// model whole.
func (u *scriptedUpstream) sawToolResult(name string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, b := range u.bodies {
		msgs, _ := b["messages"].([]any)
		for i := 1; i < len(msgs); i++ {
			prev, _ := msgs[i-1].(map[string]any)
			m, _ := msgs[i].(map[string]any)
			calls, _ := prev["tool_calls"].([]any)
			if m["role"] != "tool" || m["tool_call_id"] != "call_scripted1" || prev["role"] != "assistant" || len(calls) != 1 {
				continue
			}
			call, _ := calls[0].(map[string]any)
			if fn, _ := call["function"].(map[string]any); fn["name"] == name {
				return true
			}
		}
	}
	return false
}

func keyHash(k string) string {
	sum := sha256.Sum256([]byte(k))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// sdkTenants writes the two tenants the clients use: "sdk" (allow-list, cache, TTS) and
// "sdk-limited" (two requests a minute).
func sdkTenants(t *testing.T, extraModel string) string {
	dir := t.TempDir()
	write := func(name string, cfg map[string]any) {
		if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		b, _ := json.MarshalIndent(cfg, "", "  ")
		if err := os.WriteFile(filepath.Join(dir, name, "tenant.config.json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// no-such-model is allowed but served by no route: 404 model_not_found (a model outside the
	// list is 403 model_not_allowed, whether or not it exists).
	allowed := []string{sdkModel, sdkEmbedModel, "no-such-model"}
	if extraModel != "" {
		allowed = append(allowed, extraModel)
	}
	base := func(id, key string, perMinute int) map[string]any {
		return map[string]any{
			"tenantId": id, "accountId": "00000000000000000000000000000009", "aiGatewayId": "gw",
			"aiModels":           map[string]any{"chat": sdkModel, "embeddings": sdkEmbedModel},
			"vectorizeNamespace": id,
			"rateLimit":          map[string]any{"perMinute": perMinute, "burst": perMinute},
			"featureFlags":       map[string]any{"modelAllowList": true, "tts_enabled": true, "tools_enabled": true},
			"allowedHosts":       []string{}, "apiKeys": []string{keyHash(key)},
			"allowedModels": allowed,
			"cache":         map[string]any{"ttlSeconds": 300},
		}
	}
	write("sdk", base("sdk", sdkKey, 10000))
	write("sdk-limited", base("sdk-limited", sdkLimitedKey, 2))
	return dir
}

// sdkNode starts the binary with the scripted upstream as a chat route besides the built-ins, and
// the llama.cpp server's model when llamaModel is set.
func sdkNode(t *testing.T, up *scriptedUpstream, llamaBase, llamaModel string) string {
	routes := filepath.Join(t.TempDir(), "routes.json")
	rt := fmt.Sprintf(`{"providers":[{"name":"scripted","baseUrl":%q,"models":[%q,"scripted-*"]}`, up.URL+"/v1", sdkModel)
	if llamaModel != "" {
		rt += fmt.Sprintf(`,{"name":"llama","baseUrl":%q,"models":[%q]}`, llamaBase, llamaModel)
	}
	rt += "]}"
	if err := os.WriteFile(routes, []byte(rt), 0o644); err != nil {
		t.Fatal(err)
	}
	n := newNode(t)
	n.TenantsDir = sdkTenants(t, llamaModel)
	n.Args = []string{"--routes", routes}
	n.Start(t)
	return n.URL() + "/v1"
}

// runClient runs one client program and fails the test with its output unless every check passed.
func runClient(t *testing.T, base string, env []string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Env = append(cmd.Env, "CRISPY_BASE_URL="+base, "CRISPY_API_KEY="+sdkKey, "CRISPY_LIMITED_KEY="+sdkLimitedKey,
		"CRISPY_MODEL="+sdkModel, "CRISPY_FORBIDDEN_MODEL="+sdkForbidden, "CRISPY_EMBED_MODEL="+sdkEmbedModel)
	out, err := cmd.CombinedOutput()
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "ok ") || strings.HasPrefix(line, "FAIL ") {
			t.Log(line)
		}
	}
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

func TestSDKClients(t *testing.T) {
	python, nodeDir := sdkClients(t)
	up := newScriptedUpstream(t)
	// With the llama.cpp server (LLAMACPP_URL), the Python client also runs chat and a stream with
	// usage against its real model through the node.
	var llamaBase, llamaModel string
	if os.Getenv("LLAMACPP_URL") != "" {
		llamaBase = llamaCppURL(t)
		llamaModel = llamaCppModel(t, llamaBase)
	}
	base := sdkNode(t, up, llamaBase, llamaModel)
	t.Run("python openai and langchain", func(t *testing.T) {
		runClient(t, base, []string{"CRISPY_LLAMA_MODEL=" + llamaModel}, python, "sdk/openai_client.py")
		// Sampling parameters reach the model unchanged (the Python client's chat check sends them).
		if !up.sawRequest(map[string]string{"seed": "7", "top_p": "0.9", "temperature": "0.2", "stop": `["\n\n"]`, "max_tokens": "32"}) {
			t.Error("no upstream request carried seed, top_p, temperature, stop and max_tokens as sent")
		}
		// Chat completions: the client sent the call and its result; the Responses API: the node
		// kept the call in the session and the client sent only the result.
		for _, tool := range []string{"get_weather", "get_time"} {
			if !up.sawToolResult(tool) {
				t.Errorf("no upstream request carried a call of %s and its result", tool)
			}
		}
	})
	t.Run("node openai", func(t *testing.T) {
		runClient(t, base, []string{"SDK_NODE_DIR=" + nodeDir}, "node", "sdk/openai_client.mjs")
	})
}

// The Responses API's conversation state is the session grains': a response answered before a
// kill -9 of the node is there after its restart, and the conversation continues from it.
func TestResponsesSurviveANodeKill(t *testing.T) {
	up := newScriptedUpstream(t)
	routes := filepath.Join(t.TempDir(), "routes.json")
	rt := fmt.Sprintf(`{"providers":[{"name":"scripted","baseUrl":%q,"models":[%q]}]}`, up.URL+"/v1", sdkModel)
	if err := os.WriteFile(routes, []byte(rt), 0o644); err != nil {
		t.Fatal(err)
	}
	n := newNode(t)
	n.TenantsDir, n.Args = sdkTenants(t, ""), []string{"--routes", routes}
	n.Start(t)
	auth := "Authorization: Bearer " + sdkKey
	respond := func(body string) map[string]any {
		t.Helper()
		code, out := call(t, "POST", n.URL()+"/v1/responses", body, auth, "Content-Type: application/json")
		if code != 200 {
			t.Fatalf("POST /v1/responses %s: %d %v\n%s", body, code, out, n.Output())
		}
		return out
	}
	first := respond(`{"model":"scripted","input":"remember me"}`)
	id, _ := first["id"].(string)

	n.Kill()
	n.Start(t)
	code, got := get(t, n.URL()+"/v1/responses/"+id, auth)
	if code != 200 || got["id"] != id {
		t.Fatalf("GET after the kill: %d %v", code, got)
	}
	next := respond(fmt.Sprintf(`{"model":"scripted","input":"and now?","previous_response_id":%q}`, id))
	text := fmt.Sprint(next["output"])
	if !strings.Contains(text, "turns=2") {
		t.Fatalf("the continued conversation lost its first turn: %s", text)
	}
}
