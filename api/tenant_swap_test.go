package api

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/crispy-enigma/crispy/config"
)

// TestSetTenantsKeepsInFlightRequestsOnTheirConfig: a tenant deploy swaps the index while a
// request is being served (issue 8: "in-flight requests finish on the config they started with").
// The slow request resolved, authenticated and read its config from the old index, and keeps it to
// the end; a request that starts after the swap sees only the new index.
func TestSetTenantsKeepsInFlightRequestsOnTheirConfig(t *testing.T) {
	ts := newTestServer(t, testServerOpts{noChat: true})
	started, release := make(chan struct{}), make(chan struct{})
	ts.echo.GET("/slow", func(c echo.Context) error {
		before := tenantOf(c).RateLimit.PerMinute
		close(started)
		<-release
		// Read again after the swap: the request's config is the one it started with.
		return c.JSON(http.StatusOK, map[string]int{"before": before, "after": tenantOf(c).RateLimit.PerMinute})
	})

	var (
		wg   sync.WaitGroup
		resp *http.Response
		body []byte
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		resp, body = ts.do(t, "GET", "/slow", "", "x-tenant-id: open")
	}()
	<-started

	// The new index: "open" with another rate limit and chat model, every other tenant gone.
	raw := strings.Replace(tenantJSON("open", `, "public": true`), `"perMinute": 1000`, `"perMinute": 7`, 1)
	raw = strings.Replace(raw, `"chat": "local/extractive"`, `"chat": "local/new-model"`, 1)
	cfg, _, err := config.ParseTenantConfig("open.json", []byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	ix, err := config.NewIndex([]*config.TenantConfig{cfg})
	if err != nil {
		t.Fatal(err)
	}
	ts.SetTenants(ix)

	// A request that starts after the swap sees the new config …
	r2, b2 := ts.do(t, "GET", "/health", "", "x-tenant-id: open")
	var health struct {
		Data struct {
			ModelID string `json:"modelId"`
		} `json:"data"`
	}
	if r2.StatusCode != 200 || json.Unmarshal(b2, &health) != nil || health.Data.ModelID != "local/new-model" {
		t.Fatalf("after the swap /health = %d %s, want the new chat model", r2.StatusCode, b2)
	}
	// … and a tenant the new index dropped is unknown.
	r3, b3 := ts.do(t, "GET", "/health", "", "x-tenant-id: acme", "x-api-key: "+testKey)
	wantError(t, r3, b3, http.StatusNotFound, CodeTenantUnknown)

	close(release)
	wg.Wait()
	if resp.StatusCode != 200 {
		t.Fatalf("in-flight request = %d %s", resp.StatusCode, body)
	}
	var got map[string]int
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if got["before"] != 1000 || got["after"] != 1000 {
		t.Fatalf("in-flight request saw perMinute %v, want the config it started with (1000) throughout", got)
	}
}
