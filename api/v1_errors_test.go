package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/crispy-enigma/crispy/wire/openai"
)

// Every error a /v1 handler or the middleware returns maps to OpenAI's status, type, code and param,
// which is what the SDKs choose their exception class by.
func TestV1ErrorMapping(t *testing.T) {
	cases := []struct {
		err                       error
		status                    int
		typ, code, param, message string
	}{
		{paramError(openai.Invalid("top_p", "must be between 0 and 1")), 400, "invalid_request_error", "invalid_value", "top_p", "must be between 0 and 1"},
		{openai.Invalid("temperature", "must be between 0 and 2"), 400, "invalid_request_error", "invalid_value", "temperature", "must be between 0 and 2"},
		{openai.Missing("model"), 400, "invalid_request_error", "missing_required_parameter", "model", "you must provide a value for 'model'"},
		{errInvalidRequest("messages: must not be empty"), 400, "invalid_request_error", "invalid_value", "messages", "messages: must not be empty"},
		{NewError(400, CodeInvalidJSON, "malformed JSON"), 400, "invalid_request_error", "invalid_json", "", "malformed JSON"},
		{NewError(401, CodeUnauthorized, "missing or invalid API key"), 401, "authentication_error", "invalid_api_key", "", "missing or invalid API key"},
		{NewError(400, CodeTenantRequired, "tenant required"), 401, "authentication_error", "invalid_api_key", "", "tenant required"},
		{NewError(403, CodeForbidden, "another tenant's key"), 403, "permission_error", "forbidden", "", "another tenant's key"},
		{NewError(403, CodeModelNotAllowed, "not allowed"), 403, "permission_error", "model_not_allowed", "model", "not allowed"},
		{NewError(404, CodeModelNotFound, "no route"), 404, "not_found_error", "model_not_found", "model", "no route"},
		{NewError(404, CodeNotFound, "no route for this path"), 404, "not_found_error", "not_found", "", "no route for this path"},
		{errPayloadTooLarge(1024), 413, "invalid_request_error", "payload_too_large", "", "request body exceeds the limit of 1024 bytes"},
		{NewError(429, CodeRateLimited, "slow down"), 429, "rate_limit_error", "rate_limit_exceeded", "", "slow down"},
		{NewError(429, CodeBudgetExceeded, "spent"), 429, "insufficient_quota", "insufficient_quota", "", "spent"},
		{NewError(502, CodeAIError, "model failed"), 502, "server_error", "ai_error", "", "model failed"},
		{NewError(503, CodeUnavailable, "retry"), 503, "service_unavailable_error", "unavailable", "", "retry"},
		{fmt.Errorf("raw: %w", http.ErrBodyNotAllowed), 500, "server_error", "server_error", "", "internal error"},
	}
	for _, tc := range cases {
		t.Run(tc.code+"/"+tc.param, func(t *testing.T) {
			status, body := v1Error(tc.err)
			b, _ := json.Marshal(body)
			var got struct {
				Error struct {
					Message, Type string
					Code, Param   *string
				}
			}
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			deref := func(p *string) string {
				if p == nil {
					return ""
				}
				return *p
			}
			if status != tc.status || got.Error.Type != tc.typ || deref(got.Error.Code) != tc.code ||
				deref(got.Error.Param) != tc.param || got.Error.Message != tc.message {
				t.Errorf("%d %s", status, b)
			}
		})
	}
}
