package gateway

import "context"

// CallObserver hears what Router.Open does besides the call itself: retries of a model before its
// first token and the switch to the fallback model. The HTTP layer attaches one per request (with
// WithCallObserver) to count them in its metrics; the router keeps no per-request state itself.
// Callbacks run on the calling goroutine and must not block. Nil fields are skipped.
type CallObserver struct {
	// OnRetry is called before retry attempt (1-based) of model, with the failure that caused it.
	OnRetry func(model string, attempt int, err error)
	// OnFallback is called when Open gives up on from and tries to, with from's last failure.
	OnFallback func(from, to string, err error)
}

type callObserverKey struct{}

// WithCallObserver returns ctx carrying obs for the model calls made with it.
func WithCallObserver(ctx context.Context, obs *CallObserver) context.Context {
	return context.WithValue(ctx, callObserverKey{}, obs)
}

func callObserverFrom(ctx context.Context) *CallObserver {
	obs, _ := ctx.Value(callObserverKey{}).(*CallObserver)
	return obs
}

func (o *CallObserver) retry(model string, attempt int, err error) {
	if o != nil && o.OnRetry != nil {
		o.OnRetry(model, attempt, err)
	}
}

func (o *CallObserver) fallback(from, to string, err error) {
	if o != nil && o.OnFallback != nil {
		o.OnFallback(from, to, err)
	}
}
