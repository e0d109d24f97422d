package api

import (
	"net/http"
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/config"
)

func TestCORS(t *testing.T) {
	const webKey = "ck_web_test_key"
	web := strings.Replace(tenantJSON("web", `, "allowedOrigins": ["https://app.example.com"]`), `"apiKeys": []`,
		`"apiKeys": ["`+config.HashAPIKey(webKey)+`"]`, 1)
	wildcardTenant := tenantJSON("webany", `, "public": true, "allowedOrigins": ["*"]`)
	ts := newTestServer(t, testServerOpts{tenants: []string{web, wildcardTenant}, noChat: true})
	const app = "https://app.example.com"
	preflight := []string{"Access-Control-Request-Method: POST", "Access-Control-Request-Headers: Authorization, Content-Type, X-Stainless-OS"}
	cases := []struct {
		name, method, path string
		headers            []string
		status             int
		allowOrigin, creds string
		allowHeaders       string
	}{
		{"preflight for the host's tenant", "OPTIONS", "/v1/chat/completions", append([]string{"Origin: " + app, "Host: web.example.test"}, preflight...),
			204, app, "true", "authorization, content-type, x-stainless-os"},
		{"preflight without a tenant: any tenant listing the origin", "OPTIONS", "/chat", append([]string{"Origin: " + app}, preflight...),
			204, app, "true", "authorization, content-type, x-stainless-os"},
		{"preflight for a tenant that does not list the origin", "OPTIONS", "/chat", append([]string{"Origin: " + app, "Host: acme.example.test"}, preflight...),
			204, "", "", ""},
		{"preflight from an origin only the wildcard allows", "OPTIONS", "/chat", append([]string{"Origin: https://other.example"}, preflight...),
			204, "*", "", "authorization, content-type, x-stainless-os"},
		{"request of the tenant", "GET", "/health", []string{"Origin: " + app, "Authorization: Bearer " + webKey}, 200, app, "true", ""},
		{"request of another tenant", "GET", "/health", []string{"Origin: " + app, "x-tenant-id: acme", "x-api-key: " + testKey}, 200, "", "", ""},
		{"request of the wildcard tenant", "GET", "/health", []string{"Origin: " + app, "x-tenant-id: webany"}, 200, "*", "", ""},
		{"error of the tenant", "GET", "/nope", []string{"Origin: " + app, "Authorization: Bearer " + webKey}, 404, app, "true", ""},
		{"bad key", "GET", "/health", []string{"Origin: " + app, "Authorization: Bearer wrong", "x-tenant-id: web"}, 401, "", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := ts.do(t, tc.method, tc.path, "", tc.headers...)
			h := resp.Header
			if resp.StatusCode != tc.status || h.Get("Access-Control-Allow-Origin") != tc.allowOrigin ||
				h.Get("Access-Control-Allow-Credentials") != tc.creds || h.Get("Access-Control-Allow-Headers") != tc.allowHeaders {
				t.Errorf("%d %v\n%s", resp.StatusCode, h, body)
			}
			if !strings.Contains(strings.Join(h.Values("Vary"), ","), "Origin") {
				t.Errorf("no Vary: Origin: %v", h)
			}
		})
	}
	// Without an Origin header nothing changes.
	resp, _ := ts.do(t, http.MethodGet, "/health", "", "x-tenant-id: webany")
	if resp.Header.Get("Access-Control-Allow-Origin") != "" || len(resp.Header.Values("Vary")) != 0 {
		t.Errorf("CORS headers without an Origin: %v", resp.Header)
	}
}
