// Package api is the tenant-facing HTTP server: Echo middleware in docs/api.md's order, handlers,
// SSE, the response envelope and the error codes.
package api

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/crispy-enigma/crispy/wire"
)

// Error codes of docs/api.md. They are part of the wire contract: never rename one.
const (
	CodeNotFound         = wire.CodeNotFound
	CodeMethodNotAllowed = wire.CodeMethodNotAllowed
	CodeInternal         = wire.CodeInternal
	CodeTenantRequired   = wire.CodeTenantRequired
	CodeTenantUnknown    = wire.CodeTenantUnknown
	CodeUnauthorized     = wire.CodeUnauthorized
	CodeForbidden        = wire.CodeForbidden
	CodePayloadTooLarge  = wire.CodePayloadTooLarge
	CodeInvalidJSON      = wire.CodeInvalidJSON
	CodeInvalidRequest   = wire.CodeInvalidRequest
	CodeRateLimited      = wire.CodeRateLimited
	CodeBudgetExceeded   = wire.CodeBudgetExceeded
	CodeModelNotAllowed  = wire.CodeModelNotAllowed
	CodeModelNotFound    = wire.CodeModelNotFound
	CodeAIError          = wire.CodeAIError
	CodeToolError        = wire.CodeToolError
	CodeTTSNotEnabled    = wire.CodeTTSNotEnabled
	CodeTTSError         = wire.CodeTTSError
	CodeTTSUnavailable   = wire.CodeTTSUnavailable
	CodeUnavailable      = wire.CodeUnavailable
	CodeQuotaExceeded    = wire.CodeQuotaExceeded
)

// Error is the one error type handlers return. It carries the HTTP status, the docs/api.md code,
// a message that is safe to show the client, and the cause, which only the log sees.
type Error struct {
	Status  int
	Code    string
	Message string
	Err     error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s (%d %s): %v", e.Message, e.Status, e.Code, e.Err)
	}
	return fmt.Sprintf("%s (%d %s)", e.Message, e.Status, e.Code)
}

func (e *Error) Unwrap() error { return e.Err }

// NewError returns an Error with a client-safe message.
func NewError(status int, code, message string) *Error {
	return &Error{Status: status, Code: code, Message: message}
}

// Wrap returns an Error whose cause is logged but never sent to the client.
func Wrap(status int, code, message string, cause error) *Error {
	return &Error{Status: status, Code: code, Message: message, Err: cause}
}

func errInvalidRequest(format string, args ...any) *Error {
	return NewError(http.StatusBadRequest, CodeInvalidRequest, fmt.Sprintf(format, args...))
}

// asError maps any error a handler or Echo returns to an *Error. Unknown errors become a 500
// whose message hides the cause.
func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return errPayloadTooLarge(mbe.Limit)
	}
	if errors.Is(err, ErrBodyTooSlow) {
		return Wrap(http.StatusRequestTimeout, CodeInvalidRequest, "the request body arrived too slowly", err)
	}
	return Wrap(http.StatusInternalServerError, CodeInternal, "internal error", err)
}

func errPayloadTooLarge(limit int64) *Error {
	return NewError(http.StatusRequestEntityTooLarge, CodePayloadTooLarge,
		fmt.Sprintf("request body exceeds the limit of %d bytes", limit))
}
