// Package openai holds the request and response types of the OpenAI-compatible API (/v1): chat
// completions and their stream chunks, embeddings, models, audio speech and the Responses API, the
// OpenAI error shape, and the SSE encoder that ends a stream with `data: [DONE]`. It has no server
// code, so clients and tests can use it without importing the server.
//
// The types follow OpenAI's published API so that its SDKs, LangChain, LlamaIndex and the gateways
// that speak this dialect (LiteLLM, Ollama, vLLM) work unchanged. Fields a client may send but this
// platform does not act on are decoded and ignored, never refused, except where ignoring them would
// change the answer silently (n > 1, an unsupported encoding or audio format).
package openai

import (
	"fmt"
	"net/http"
)

// Error types of OpenAI's error shape. The SDKs pick their exception class from the HTTP status;
// the type and code let a client tell the cases apart within one status.
const (
	TypeInvalidRequest     = "invalid_request_error"
	TypeAuthentication     = "authentication_error"
	TypePermission         = "permission_error"
	TypeNotFound           = "not_found_error"
	TypeRateLimit          = "rate_limit_error"
	TypeInsufficientQuota  = "insufficient_quota"
	TypeServer             = "server_error"
	TypeServiceUnavailable = "service_unavailable_error"
)

// Error codes this API sends in error.code (OpenAI's where one exists).
const (
	CodeInvalidAPIKey     = "invalid_api_key"
	CodeModelNotFound     = "model_not_found"
	CodeModelNotAllowed   = "model_not_allowed"
	CodeRateLimitExceeded = "rate_limit_exceeded"
	CodeInsufficientQuota = "insufficient_quota"
	CodeInvalidValue      = "invalid_value"
	CodeInvalidJSON       = "invalid_json"
	CodeMissingRequired   = "missing_required_parameter"
	CodeUnsupportedValue  = "unsupported_value"
	CodePayloadTooLarge   = "payload_too_large"
	CodeNotFound          = "not_found"
	CodeServerError       = "server_error"
)

// ErrorResponse is OpenAI's error body: {"error":{"message","type","param","code"}}. Param and Code
// are JSON null when unset, as OpenAI sends them.
type ErrorResponse struct {
	Error ErrorObject `json:"error"`
}

// ErrorObject is the inside of ErrorResponse.
type ErrorObject struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

// NewError builds an error body. An empty param or code is sent as null.
func NewError(status int, code, param, message string) ErrorResponse {
	e := ErrorObject{Message: message, Type: TypeForStatus(status)}
	if param != "" {
		e.Param = &param
	}
	if code != "" {
		e.Code = &code
	}
	if code == CodeInsufficientQuota {
		e.Type = TypeInsufficientQuota
	}
	return ErrorResponse{Error: e}
}

// TypeForStatus is the error type OpenAI uses for an HTTP status.
func TypeForStatus(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return TypeAuthentication
	case status == http.StatusForbidden:
		return TypePermission
	case status == http.StatusNotFound:
		return TypeNotFound
	case status == http.StatusTooManyRequests:
		return TypeRateLimit
	case status == http.StatusServiceUnavailable:
		return TypeServiceUnavailable
	case status >= 500:
		return TypeServer
	default:
		return TypeInvalidRequest
	}
}

// ParamError is a client error that names the request parameter at fault (OpenAI's error.param).
// Handlers return it for 400s; the error writer puts Param into the body.
type ParamError struct {
	Param   string
	Code    string // "" means invalid_value
	Message string
	Err     error // the cause, if any
}

func (e *ParamError) Error() string { return fmt.Sprintf("%s: %s", e.Param, e.Message) }

// Unwrap returns the cause.
func (e *ParamError) Unwrap() error { return e.Err }

// Invalid returns a ParamError with code invalid_value.
func Invalid(param, format string, args ...any) *ParamError {
	return &ParamError{Param: param, Code: CodeInvalidValue, Message: fmt.Sprintf(format, args...)}
}

// Missing returns a ParamError with code missing_required_parameter.
func Missing(param string) *ParamError {
	return &ParamError{Param: param, Code: CodeMissingRequired, Message: fmt.Sprintf("you must provide a value for '%s'", param)}
}

// Unsupported returns a ParamError with code unsupported_value.
func Unsupported(param, format string, args ...any) *ParamError {
	return &ParamError{Param: param, Code: CodeUnsupportedValue, Message: fmt.Sprintf(format, args...)}
}
