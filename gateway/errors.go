package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// ErrModelNotServed is returned (wrapped, naming the model) when no provider serves a model ID.
var ErrModelNotServed = errors.New("model not served")

// UpstreamError is a failure reported by, or on the way to, a model provider. Status is the HTTP status
// (0 for connect errors and broken streams). Retryable marks failures that may succeed on a retry:
// connect errors, dropped streams, 429 and 5xx. Message is the provider's own error text, trimmed; it
// never contains the API key.
type UpstreamError struct {
	Provider  string
	Model     string
	Status    int
	Retryable bool
	Message   string

	cause error // the transport error, when there is one
}

func (e *UpstreamError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "provider %s, model %s", e.Provider, e.Model)
	if e.Status != 0 {
		fmt.Fprintf(&b, ": status %d", e.Status)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	return b.String()
}

func (e *UpstreamError) Unwrap() error { return e.cause }

// retryableStatus reports whether an HTTP status is worth retrying: rate limited or a server error.
func retryableStatus(status int) bool {
	return status == 429 || status >= 500
}

// CallError is what Router returns: the models it tried, in order, and the last failure of each.
// errors.Is and errors.As see through it to ErrModelNotServed, *UpstreamError or the context's error.
type CallError struct {
	Tried []string
	Errs  []error
}

func (e *CallError) Error() string {
	msgs := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		msgs[i] = err.Error()
	}
	return fmt.Sprintf("chat model call failed (tried %s): %s", strings.Join(e.Tried, ", "), strings.Join(msgs, "; "))
}

func (e *CallError) Unwrap() []error { return e.Errs }

// IsRetryable reports whether err is a failure worth retrying on the same model.
func IsRetryable(err error) bool {
	var ue *UpstreamError
	return errors.As(err, &ue) && ue.Retryable
}

// errStreamClosed is returned by Next after Close.
var errStreamClosed = errors.New("chat stream closed")

// IsModelNotFound reports whether err is a provider's 404 for a call: the provider does not serve
// the model asked for. Router.Open does not fall back from it.
func IsModelNotFound(err error) bool {
	var ue *UpstreamError
	return errors.As(err, &ue) && ue.Status == http.StatusNotFound
}
