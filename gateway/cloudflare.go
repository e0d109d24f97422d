package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Default Cloudflare endpoints (Workers AI "OpenAI compatible API endpoints" and AI Gateway's Workers AI
// provider): https://api.cloudflare.com/client/v4/accounts/{account}/ai/v1/chat/completions and
// https://gateway.ai.cloudflare.com/v1/{account}/{gateway}/workers-ai/v1/chat/completions.
const (
	DefaultCloudflareAPIBase     = "https://api.cloudflare.com/client/v4"
	DefaultCloudflareGatewayBase = "https://gateway.ai.cloudflare.com/v1"
)

// maxAIGatewayMetadata is AI Gateway's limit: entries beyond the fifth are silently dropped.
const maxAIGatewayMetadata = 5

// CloudflareWorkersAI serves @cf/ models through Workers AI's OpenAI-compatible endpoint of the
// tenant's account (RequestMeta.AccountID), through the tenant's AI Gateway when RequestMeta.GatewayID
// is set. Through a gateway, the call carries cf-aig-metadata with the tenant, trace, session and route.
type CloudflareWorkersAI struct {
	apiBase     string
	gatewayBase string
	token       string
	client      *http.Client
	drains      *drainer
}

var _ ChatModel = (*CloudflareWorkersAI)(nil)

// CloudflareProviderName names the Workers AI provider in errors and routing.
const CloudflareProviderName = "cloudflare-workers-ai"

// NewCloudflareWorkersAI returns the provider. token is a Cloudflare API token with Workers AI access;
// empty bases use the public endpoints (tests point them at a local server).
func NewCloudflareWorkersAI(token, apiBase, gatewayBase string, client *http.Client) *CloudflareWorkersAI {
	if apiBase == "" {
		apiBase = DefaultCloudflareAPIBase
	}
	if gatewayBase == "" {
		gatewayBase = DefaultCloudflareGatewayBase
	}
	return &CloudflareWorkersAI{
		apiBase:     strings.TrimRight(apiBase, "/"),
		gatewayBase: strings.TrimRight(gatewayBase, "/"),
		token:       token,
		client:      orDefaultClient(client),
		drains:      newDrainer(MaxIdleConnsPerHost),
	}
}

var errNoAccountID = errors.New("tenant has no Cloudflare accountId")

// OpenChat calls the tenant's account, through its gateway when it has one.
func (p *CloudflareWorkersAI) OpenChat(ctx context.Context, req ChatRequest) (ChatStream, error) {
	m := req.Meta
	if m.AccountID == "" {
		return nil, fmt.Errorf("provider %s, model %s: %w", CloudflareProviderName, req.Model, errNoAccountID)
	}
	var endpoint string
	var header http.Header
	if m.GatewayID != "" {
		endpoint = p.gatewayBase + "/" + url.PathEscape(m.AccountID) + "/" + url.PathEscape(m.GatewayID) +
			"/workers-ai/v1/chat/completions"
		header = http.Header{"Cf-Aig-Metadata": {aiGatewayMetadata(m)}}
	} else {
		endpoint = p.apiBase + "/accounts/" + url.PathEscape(m.AccountID) + "/ai/v1/chat/completions"
	}
	return openChatCompletions(ctx, p.client, p.drains, CloudflareProviderName, endpoint, p.token, header, req)
}

// aiGatewayMetadata encodes the cf-aig-metadata header: string values only, empty ones left out, at
// most maxAIGatewayMetadata entries.
func aiGatewayMetadata(m RequestMeta) string {
	entries := [...]struct{ k, v string }{
		{"tenantId", m.TenantID}, {"traceId", m.TraceID}, {"sessionId", m.SessionID}, {"route", m.Route},
	}
	md := make(map[string]string, maxAIGatewayMetadata)
	for _, e := range entries {
		if e.v != "" && len(md) < maxAIGatewayMetadata {
			md[e.k] = e.v
		}
	}
	b, _ := json.Marshal(md) // a map of strings always encodes
	return string(b)
}
