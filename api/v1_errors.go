package api

import (
	"errors"
	"net/http"
	"regexp"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/crispy-enigma/crispy/wire/openai"
)

// v1Prefix is the path prefix of the OpenAI-compatible API; its errors use OpenAI's shape.
const v1Prefix = "/v1/"

// isV1 reports whether the request is one of the OpenAI-compatible API's (also its routes without
// /v1, e.g. POST /chat/completions, which SDKs reach with a base URL that lacks /v1).
func isV1(c echo.Context) bool {
	p := c.Request().URL.Path
	return strings.HasPrefix(p, v1Prefix) || p == "/chat/completions" || p == "/embeddings" ||
		p == "/responses" || strings.HasPrefix(p, "/responses/") || p == "/audio/speech"
}

// fieldPrefix finds the field a message of errInvalidRequest names ("temperature: must be …"), so
// that errors raised by shared code still carry OpenAI's param.
var fieldPrefix = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_.\[\]]*): `)

// v1Error is the OpenAI form of err: the status, and the body with type, code and param.
// An *openai.ParamError is a 400 naming its parameter; an *Error keeps its status, and its code
// becomes OpenAI's where OpenAI has one (rate_limited → rate_limit_exceeded, budget_exceeded →
// insufficient_quota, unauthorized → invalid_api_key).
func v1Error(err error) (int, openai.ErrorResponse) {
	var pe *openai.ParamError
	hasParam := errors.As(err, &pe)
	var e *Error
	if !errors.As(err, &e) && hasParam {
		return http.StatusBadRequest, openai.NewError(http.StatusBadRequest, cmpOr(pe.Code, openai.CodeInvalidValue), pe.Param, pe.Message)
	}
	e = asError(err)
	status, code, param := e.Status, e.Code, ""
	switch e.Code {
	case CodeTenantRequired, CodeUnauthorized:
		// With an OpenAI client the key is the only way a tenant is named: no tenant is a bad key.
		status, code = http.StatusUnauthorized, openai.CodeInvalidAPIKey
	case CodeRateLimited:
		code = openai.CodeRateLimitExceeded
	case CodeBudgetExceeded:
		code = openai.CodeInsufficientQuota
	case CodeModelNotAllowed, CodeModelNotFound:
		param = "model"
	case CodeInvalidRequest:
		code = openai.CodeInvalidValue
		if m := fieldPrefix.FindStringSubmatch(e.Message); m != nil {
			param = m[1]
		}
		if hasParam {
			code = cmpOr(pe.Code, openai.CodeInvalidValue)
		}
	case CodeInternal:
		code = openai.CodeServerError
	}
	if hasParam {
		param = pe.Param
	}
	return status, openai.NewError(status, code, param, e.Message)
}

// paramError is a 400 that names the request parameter at fault: an *Error (so logs and metrics see
// invalid_request like everywhere) whose cause carries OpenAI's param and code.
func paramError(pe *openai.ParamError) *Error {
	return Wrap(http.StatusBadRequest, CodeInvalidRequest, pe.Message, pe)
}

// writeV1Error writes err in OpenAI's shape. The trace ID is in x-trace-id (every response) and in
// x-request-id, the header the SDKs expose as the request ID. A budget that is spent will not come
// back on a retry, so the SDKs are told not to retry it.
func writeV1Error(c echo.Context, err *Error) error {
	status, body := v1Error(err)
	h := c.Response().Header()
	h.Set("x-request-id", traceID(c))
	if body.Error.Code != nil && *body.Error.Code == openai.CodeInsufficientQuota {
		h.Set("x-should-retry", "false")
	}
	if c.Request().Method == http.MethodHead {
		return c.NoContent(status)
	}
	return c.JSON(status, body)
}
