package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/labstack/echo/v4"

	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/gateway/speech"
	"github.com/crispy-enigma/crispy/metering"
	"github.com/crispy-enigma/crispy/rag"
	"github.com/crispy-enigma/crispy/store"
	"github.com/crispy-enigma/crispy/tools"
	"github.com/crispy-enigma/crispy/wire"
)

// everyCode is every error code a client can see from the server itself (wire's codes).
var everyCode = []string{
	wire.CodeNotFound, wire.CodeMethodNotAllowed, wire.CodeInternal, wire.CodeTenantRequired, wire.CodeTenantUnknown,
	wire.CodeUnauthorized, wire.CodeForbidden, wire.CodePayloadTooLarge, wire.CodeInvalidJSON, wire.CodeInvalidRequest,
	wire.CodeRateLimited, wire.CodeBudgetExceeded, wire.CodeModelNotAllowed, wire.CodeAIError, wire.CodeToolError,
	wire.CodeTTSNotEnabled, wire.CodeTTSError, wire.CodeTTSUnavailable, wire.CodeUnavailable, wire.CodeQuotaExceeded,
}

// TestErrorMapperEveryCode walks every error code through the one mapper (Server.handleError):
// errors as handlers return them, as Echo raises them, and as the services below the API fail
// (metering, retrieval, analytics, tools), each to its status, code and envelope. Causes never
// reach the client.
func TestErrorMapperEveryCode(t *testing.T) {
	srv, err := New(Deps{Tenants: testTenants(t), Now: func() time.Time { return time.Unix(1000, 0) }})
	if err != nil {
		t.Fatal(err)
	}
	const secret = "dial tcp 10.0.0.7:4222: connection refused"
	cause := errors.New(secret)
	tests := []struct {
		name   string
		err    func() error // what a handler returns
		status int
		code   string
	}{
		{"echo 404", func() error { return echo.ErrNotFound }, 404, CodeNotFound},
		{"echo 405", func() error { return echo.ErrMethodNotAllowed }, 405, CodeMethodNotAllowed},
		{"echo 413", func() error { return echo.ErrStatusRequestEntityTooLarge }, 413, CodePayloadTooLarge},
		{"body over the limit", func() error { return &http.MaxBytesError{Limit: 10} }, 413, CodePayloadTooLarge},
		{"unknown error", func() error { return cause }, 500, CodeInternal},
		{"tenant required", func() error { return NewError(400, CodeTenantRequired, "tenant required") }, 400, CodeTenantRequired},
		{"tenant unknown", func() error { return NewError(404, CodeTenantUnknown, "unknown tenant") }, 404, CodeTenantUnknown},
		{"unauthorized", func() error { return NewError(401, CodeUnauthorized, "missing or invalid API key") }, 401, CodeUnauthorized},
		{"forbidden", func() error { return NewError(403, CodeForbidden, "another tenant's key") }, 403, CodeForbidden},
		{"invalid JSON", func() error { return NewError(400, CodeInvalidJSON, "malformed JSON") }, 400, CodeInvalidJSON},
		{"invalid request", func() error { return errInvalidRequest("message: required") }, 400, CodeInvalidRequest},
		{"rate limited", func() error { return NewError(429, CodeRateLimited, "rate limit exceeded") }, 429, CodeRateLimited},
		{"budget exceeded", func() error {
			return srv.modelCallError(http.Header{}, "m", &metering.BudgetError{Estimate: 12, ResetAt: time.Unix(1030, 0)})
		}, 429, CodeBudgetExceeded},
		{"budget unavailable", func() error {
			return srv.modelCallError(http.Header{}, "m", fmt.Errorf("%w: %w", metering.ErrBudgetUnavailable, cause))
		}, 503, CodeUnavailable},
		{"model not allowed", func() error {
			return srv.modelCallError(http.Header{}, "m", fmt.Errorf("%w: m", metering.ErrModelNotAllowed))
		}, 403, CodeModelNotAllowed},
		{"model failed upstream", func() error {
			return srv.modelCallError(http.Header{}, "m", &gateway.UpstreamError{Model: "m", Status: 500, Message: secret})
		}, 502, CodeAIError},
		{"tool dispatch error", func() error {
			return toolError(&tools.Error{Status: 404, Code: tools.CodeToolNotFound, Message: "no such tool", Cause: cause})
		}, 404, tools.CodeToolNotFound},
		{"tool error in chat", func() error { return NewError(400, CodeToolError, "tool x failed") }, 400, CodeToolError},
		{"tts not enabled", func() error { return NewError(403, CodeTTSNotEnabled, "not enabled") }, 403, CodeTTSNotEnabled},
		{"tts failed", func() error { return ttsError(cause, "speech synthesis failed") }, 500, CodeTTSError},
		{"tts engine missing", func() error {
			return ttsError(fmt.Errorf("%w: start espeak-ng: %w", speech.ErrUnavailable, cause), "speech synthesis failed")
		}, 503, CodeTTSUnavailable},
		{"retrieval: empty document", func() error { return ragError(rag.ErrEmptyDocument, "d") }, 400, CodeInvalidRequest},
		{"retrieval: no such document", func() error { return ragError(rag.ErrDocumentNotFound, "d") }, 404, CodeNotFound},
		{"retrieval: embedding failed", func() error { return ragError(fmt.Errorf("%w: %w", rag.ErrEmbedding, cause), "d") }, 502, CodeAIError},
		{"retrieval: cancelled", func() error { return ragError(context.Canceled, "") }, 503, CodeUnavailable},
		{"retrieval: quota", func() error { return ragError(fmt.Errorf("%w: documents", rag.ErrQuotaExceeded), "d") }, 403, CodeQuotaExceeded},
		{"retrieval: internal", func() error { return ragError(cause, "d") }, 500, CodeInternal},
		{"analytics: bad period", func() error { _, _, err := store.ParsePeriod("2d"); return analyticsError(err) }, 400, CodeInvalidRequest},
		{"analytics: read model down", func() error { return analyticsError(cause) }, 503, CodeUnavailable},
	}
	covered := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			c := echo.New().NewContext(httptest.NewRequest(http.MethodPost, "/x", nil), rec)
			c.Set(stateKey, &requestState{traceID: "trace-1"})
			srv.handleError(tt.err(), c)
			if rec.Code != tt.status {
				t.Errorf("status %d, want %d", rec.Code, tt.status)
			}
			var env struct {
				OK    bool `json:"ok"`
				Error *struct {
					Code    string `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
				TraceID string `json:"traceId"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil {
				t.Fatalf("not JSON: %s", rec.Body)
			}
			if env.OK || env.Error == nil || env.Error.Code != tt.code || env.Error.Message == "" || env.TraceID != "trace-1" {
				t.Errorf("envelope %s, want ok:false, code %s, a message and the trace ID", rec.Body, tt.code)
			}
			if strings.Contains(rec.Body.String(), "10.0.0.7") {
				t.Errorf("the cause reached the client: %s", rec.Body)
			}
		})
		covered[tt.code] = true
	}
	var missing []string
	for _, code := range everyCode {
		if !covered[code] {
			missing = append(missing, code)
		}
	}
	sort.Strings(missing)
	if diff := cmp.Diff([]string(nil), missing); diff != "" {
		t.Errorf("codes never walked through the mapper (-want +got):\n%s", diff)
	}
}

// A budget refusal tells the client when to retry.
func TestBudgetRefusalSetsRetryAfter(t *testing.T) {
	srv, err := New(Deps{Tenants: testTenants(t), Now: func() time.Time { return time.Unix(1000, 0) }})
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	e := srv.modelCallError(h, "m", &metering.BudgetError{Estimate: 12, ResetAt: time.Unix(1030, 0)})
	if e.Status != 429 || h.Get("Retry-After") != "30" || !strings.Contains(e.Message, "12 tokens") {
		t.Errorf("= %d %q, Retry-After %q; want 429 naming the estimate, Retry-After 30", e.Status, e.Message, h.Get("Retry-After"))
	}
}
