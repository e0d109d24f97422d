package gateway

import (
	"context"
	"errors"
	"io"
	"strings"
	"time"
)

// Meter is called by the Router around every model call it makes (Open, and so Complete): the
// tenant's metering — model rules, budget, response cache, ledger events, metrics, the log line —
// lives behind it (package metering), so every caller of the Router is metered the same way
// without knowing it. Set it with RouterOptions.Meter; nil meters nothing.
type Meter interface {
	// BeforeCall runs before any model is called. It may drop call.Fallback (a fallback the tenant
	// may not use), refuse the call with an error (Open returns it unwrapped), or answer the call
	// itself: a Ticket whose Answer is set is returned to the caller as the call's stream and no
	// model is called (a response-cache hit).
	BeforeCall(ctx context.Context, call *Call) (Ticket, error)
}

// Call is one model call as a Meter sees it before it is made.
type Call struct {
	Request  ChatRequest
	Fallback string
}

// Ticket is a Meter's admission of one call.
type Ticket struct {
	// Answer, when set, is the call's reply, given without calling a model.
	Answer ChatStream
	// Cache is the response-cache state the caller may report: CacheHit, CacheMiss or "" (the call
	// is not cacheable). CacheStatus reads it from the stream.
	Cache string
	// KeepReply asks for the reply's text in CallResult.Reply (to cache it).
	KeepReply bool
	// Observer hears the call's retries and fallbacks; nil hears none.
	Observer *CallObserver
	// After is called exactly once when the call has ended: its opening failed, its stream ended
	// (io.EOF or an error), or the stream was closed before its end. It runs on the goroutine that
	// ended the call; long work belongs in the background. Nil: nothing to settle.
	After func(ctx context.Context, res CallResult)
}

// Response-cache states of Ticket.Cache.
const (
	CacheHit  = "HIT"
	CacheMiss = "MISS"
)

// Outcomes of CallResult.
const (
	OutcomeOK        = "ok"
	OutcomeError     = "error"
	OutcomeCancelled = "cancelled"
)

// CallResult is how a call ended, for the Meter's After.
type CallResult struct {
	// Model served the reply; when no model answered, the primary model asked for.
	Model string
	// Info describes Model (provider, prices); zero for an answer given by the Meter itself.
	Info ModelInfo
	// Answered is true when a model (or the Meter's Answer) produced a reply stream; false when
	// every model failed before its first token.
	Answered bool
	Usage    Usage
	Outcome  string // OutcomeOK, OutcomeError or OutcomeCancelled
	Err      error  // the failure, for OutcomeError and OutcomeCancelled
	Reply    string // the whole reply, when the Ticket asked for it and Outcome is OutcomeOK
	// FirstToken is the time from opening the call (retries and fallback included) to the model's
	// first token; 0 when no model produced one (a failure, or the Meter's own Answer).
	FirstToken time.Duration
}

// CacheStatus is the response-cache state of a stream opened through a metered Router: CacheHit,
// CacheMiss or "" (not cacheable, or not metered).
func CacheStatus(s ChatStream) string {
	if m, ok := s.(*meteredStream); ok {
		return m.ticket.Cache
	}
	return ""
}

// openMetered is Open with the Meter's hooks around it.
func (r *Router) openMetered(ctx context.Context, req ChatRequest, fallback string) (ChatStream, error) {
	call := &Call{Request: req, Fallback: fallback}
	t, err := r.meter.BeforeCall(ctx, call)
	if err != nil {
		return nil, err
	}
	if t.Answer != nil {
		return &meteredStream{inner: t.Answer, ticket: t, ctx: ctx}, nil
	}
	octx := ctx
	if t.Observer != nil {
		octx = WithCallObserver(ctx, t.Observer)
	}
	opened := time.Now()
	s, err := r.openTraced(octx, call.Request, call.Fallback)
	if err != nil {
		if t.After != nil {
			info, _ := r.Describe(call.Request.Model)
			t.After(ctx, CallResult{Model: call.Request.Model, Info: info, Outcome: outcomeOf(ctx, err), Err: err})
		}
		return nil, err
	}
	return &meteredStream{inner: s, ticket: t, ctx: ctx, info: streamInfo(s), opened: opened}, nil
}

// outcomeOf names how a failed call ended: cancelled when the caller left, else error.
func outcomeOf(ctx context.Context, err error) string {
	if ctx.Err() != nil || errors.Is(err, context.Canceled) {
		return OutcomeCancelled
	}
	return OutcomeError
}

// meteredStream reports the end of its call to the ticket's After, once.
type meteredStream struct {
	inner  ChatStream
	ticket Ticket
	ctx    context.Context // the call's context, handed to After
	info   ModelInfo
	reply  strings.Builder
	ended  bool
	opened time.Time     // when the call was opened; zero for the Meter's own Answer
	first  time.Duration // opened → first token; 0 until it arrives
}

func (s *meteredStream) Next(ctx context.Context) (string, error) {
	tok, err := s.inner.Next(ctx)
	switch {
	case err == nil:
		if s.first == 0 && !s.opened.IsZero() {
			s.first = max(time.Since(s.opened), time.Nanosecond)
		}
		if s.ticket.KeepReply {
			s.reply.WriteString(tok)
		}
	case errors.Is(err, io.EOF):
		s.end(CallResult{Outcome: OutcomeOK, Reply: s.reply.String()})
	default:
		s.end(CallResult{Outcome: outcomeOf(ctx, err), Err: err})
	}
	return tok, err
}

func (s *meteredStream) end(res CallResult) {
	if s.ended {
		return
	}
	s.ended = true
	if s.ticket.After == nil {
		return
	}
	if res.Outcome != OutcomeOK {
		res.Reply = ""
	}
	res.Model, res.Info, res.Answered, res.Usage, res.FirstToken = s.inner.Model(), s.info, true, s.inner.Usage(), s.first
	s.ticket.After(s.ctx, res)
}

func (s *meteredStream) Usage() Usage          { return s.inner.Usage() }
func (s *meteredStream) Model() string         { return s.inner.Model() }
func (s *meteredStream) ToolCalls() []ToolCall { return ToolCallsOf(s.inner) }

// Close ends a call its caller stopped reading (a client that left) as cancelled.
func (s *meteredStream) Close() error {
	s.end(CallResult{Outcome: OutcomeCancelled, Err: context.Canceled})
	return s.inner.Close()
}
