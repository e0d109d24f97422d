package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/gateway/minilm"
	"github.com/crispy-enigma/crispy/observe"
)

// DefaultPricePer1K is docs/api.md's price per 1K tokens, in and out, for models the routing table
// prices at zero or does not list.
const DefaultPricePer1K = 0.0002

// Retry defaults: two retries of the primary, 200 ms doubling to at most 2 s, with jitter.
const (
	DefaultMaxRetries     = 2
	DefaultRetryBaseDelay = 200 * time.Millisecond
	DefaultRetryMaxDelay  = 2 * time.Second
)

// DefaultCallTimeout bounds one model call (one attempt), from the request to the stream's last byte, when
// neither the provider nor RouterOptions set a bound. It is an overall bound, not an idle one: generous
// enough for a long reply from a slow local model, small enough that a wedged upstream frees its slot.
const DefaultCallTimeout = 120 * time.Second

// ProviderConfig is one row of the routing table: an OpenAI-compatible server and the models it serves.
type ProviderConfig struct {
	Name      string
	BaseURL   string
	APIKeyEnv string // name of the environment variable holding the key; the key is never logged
	APIKey    string // the key itself, when the caller already read it (wins over APIKeyEnv)
	// Models are exact model IDs, or prefixes ending in "*" ("*" alone serves every model that nothing
	// more specific serves, except @cf/ and local/ models).
	Models        []string
	PricePer1KIn  float64 // 0 means DefaultPricePer1K
	PricePer1KOut float64 // 0 means DefaultPricePer1K
	// Timeout bounds one call to this provider (0: RouterOptions.CallTimeout).
	Timeout time.Duration
	// Embeddings are the embedding model IDs this provider serves on /v1/embeddings: exact IDs or
	// prefixes ending in "*". Chat Models and Embeddings are separate lists: a chat catch-all "*" does
	// not make a provider an embedding server.
	Embeddings []string
	// EmbeddingDimensions fixes the vector length of embedding models by exact ID; models not listed
	// learn it from their first response.
	EmbeddingDimensions map[string]int
	// EmbeddingBatchSize is the most texts sent in one /v1/embeddings request (0: DefaultEmbeddingBatchSize).
	EmbeddingBatchSize int
	// EmbeddingInputType sends input_type "query" or "passage" with embeddings requests
	// (OpenAIEmbeddingOptions.InputType).
	EmbeddingInputType bool
}

// RouterOptions configures a Router. Keep it out of logs: CloudflareToken is a secret.
type RouterOptions struct {
	Providers []ProviderConfig
	// CloudflareTokenEnv names the environment variable holding a Cloudflare API token with Workers
	// AI access; CloudflareToken gives the value directly (it wins). Without a token, @cf/ models are
	// not served.
	CloudflareTokenEnv string
	CloudflareToken    string
	// CloudflareAPIBase and CloudflareGatewayBase override the public endpoints (for tests).
	CloudflareAPIBase     string
	CloudflareGatewayBase string
	// HTTPClient carries every provider call; nil uses NewHTTPClient.
	HTTPClient *http.Client
	// Local holds built-in models by ID. local/extractive is always served: by Local's entry when
	// present (e.g. NewExtractive with a Retriever), else by NewExtractive(nil).
	Local map[string]ChatModel
	// Getenv reads the key variables; nil uses config.Getenv.
	Getenv func(string) string

	// MaxRetries is how many times Open retries the primary model after a retryable failure before its
	// first token: 0 means DefaultMaxRetries, negative means none.
	MaxRetries     int
	RetryBaseDelay time.Duration // 0 means DefaultRetryBaseDelay
	RetryMaxDelay  time.Duration // 0 means DefaultRetryMaxDelay
	// FirstTokenTimeout bounds each attempt's wait for its first token (0: no bound beyond ctx). An
	// attempt that exceeds it is a retryable failure.
	FirstTokenTimeout time.Duration
	// CallTimeout bounds each attempt as a whole, streaming included, for providers without their own
	// Timeout: 0 means DefaultCallTimeout, negative means no bound beyond ctx. An attempt that exceeds
	// it before its first token is a retryable failure; after it, the stream ends with an error.
	CallTimeout time.Duration
	// CloudflareAccountID is the account for @cf/ embedding models when the caller names none
	// (Router.Embedder); chat and EmbedderFor use the tenant's RequestMeta.AccountID.
	CloudflareAccountID string
	// Tracer records one span per Open (and so per Complete), ending when the stream closes; the
	// zero value records none.
	Tracer observe.Tracer
	// Meter is called around every Open (meter.go); nil meters nothing.
	Meter Meter
}

// ModelInfo says who serves a model and at what price.
type ModelInfo struct {
	Model         string
	Provider      string
	Local         bool // a built-in model, not a language model behind a network call
	PricePer1KIn  float64
	PricePer1KOut float64
	// CallTimeout bounds one call to the model (0: none beyond the caller's context).
	CallTimeout time.Duration
}

// Router maps model IDs to the models that serve them, and opens chat streams with retries and
// fallback. It is safe for concurrent use; after NewRouter the only state that changes is the dimension
// an embedding model learns from its first response (atomic).
type Router struct {
	providers  []routedProvider
	exact      map[string]int // model ID → index in providers; the first provider listing it wins
	prefixes   []prefixRoute  // longest first; equal lengths keep provider order
	cloudflare *CloudflareWorkersAI
	local      map[string]ChatModel

	// Embedding routes: built once, so a learned dimension is kept across calls.
	embedExact    map[string]*OpenAIEmbeddings
	embedPrefixes []prefixRoute // longest first
	hashEmbed     *HashEmbedder
	miniLM        func() (*minilm.Model, error) // loaded on first use: most nodes embed with one model
	cfAccountID   string
	httpClient    *http.Client
	getenv        func(string) string

	maxRetries        int
	baseDelay         time.Duration
	maxDelay          time.Duration
	firstTokenTimeout time.Duration
	callTimeout       time.Duration // 0: none
	tracer            observe.Tracer
	meter             Meter
}

type routedProvider struct {
	cfg   ProviderConfig
	model *OpenAICompatible
}

type prefixRoute struct {
	prefix   string
	provider int
}

// WithLocal returns a Router that serves the same table, providers and embedders as r (shared,
// so a dimension learned by one is known to the other, and local/minilm loads once) plus the
// given built-in chat models. r is unchanged. It exists for built-ins that need r's embedders:
// local/extractive's retriever embeds queries with the tenant's embedding model, which r resolves.
func (r *Router) WithLocal(models map[string]ChatModel) *Router {
	c := *r
	c.local = make(map[string]ChatModel, len(r.local)+len(models))
	for id, m := range r.local {
		c.local[id] = m
	}
	for id, m := range models {
		c.local[id] = m
	}
	return &c
}

// NewRouter builds the routing table. It reads the API keys from the environment once, here.
func NewRouter(opts RouterOptions) *Router {
	getenv := opts.Getenv
	if getenv == nil {
		getenv = config.Getenv
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = NewHTTPClient() // one connection pool for every provider of the router
	}
	r := &Router{
		exact:             map[string]int{},
		local:             map[string]ChatModel{},
		maxRetries:        opts.MaxRetries,
		baseDelay:         opts.RetryBaseDelay,
		maxDelay:          opts.RetryMaxDelay,
		firstTokenTimeout: opts.FirstTokenTimeout,
		callTimeout:       opts.CallTimeout,
		embedExact:        map[string]*OpenAIEmbeddings{},
		hashEmbed:         NewHashEmbedder(0),
		miniLM:            sync.OnceValues(minilm.New),
		cfAccountID:       opts.CloudflareAccountID,
		httpClient:        opts.HTTPClient,
		getenv:            getenv,
		tracer:            opts.Tracer,
		meter:             opts.Meter,
	}
	switch {
	case r.callTimeout == 0:
		r.callTimeout = DefaultCallTimeout
	case r.callTimeout < 0:
		r.callTimeout = 0
	}
	switch {
	case r.maxRetries == 0:
		r.maxRetries = DefaultMaxRetries
	case r.maxRetries < 0:
		r.maxRetries = 0
	}
	if r.baseDelay <= 0 {
		r.baseDelay = DefaultRetryBaseDelay
	}
	if r.maxDelay <= 0 {
		r.maxDelay = DefaultRetryMaxDelay
	}
	for id, m := range opts.Local {
		r.local[id] = m
	}
	if r.local[ExtractiveModelID] == nil {
		r.local[ExtractiveModelID] = NewExtractive(nil)
	}
	for i, pc := range opts.Providers {
		r.providers = append(r.providers, routedProvider{
			cfg: pc,
			model: NewOpenAICompatible(OpenAIOptions{Name: pc.Name, BaseURL: pc.BaseURL, APIKey: pc.APIKey,
				APIKeyEnv: pc.APIKeyEnv, Getenv: getenv, HTTPClient: opts.HTTPClient}),
		})
		for _, m := range pc.Models {
			if p, ok := strings.CutSuffix(m, "*"); ok {
				r.prefixes = append(r.prefixes, prefixRoute{prefix: p, provider: i})
			} else if _, dup := r.exact[m]; !dup {
				r.exact[m] = i
			}
		}
		for _, m := range pc.Embeddings {
			if p, ok := strings.CutSuffix(m, "*"); ok {
				r.embedPrefixes = append(r.embedPrefixes, prefixRoute{prefix: p, provider: i})
			} else if _, dup := r.embedExact[m]; !dup {
				r.embedExact[m] = r.providerEmbedder(i, m)
			}
		}
	}
	sort.SliceStable(r.prefixes, func(a, b int) bool { return len(r.prefixes[a].prefix) > len(r.prefixes[b].prefix) })
	sort.SliceStable(r.embedPrefixes, func(a, b int) bool {
		return len(r.embedPrefixes[a].prefix) > len(r.embedPrefixes[b].prefix)
	})
	token := opts.CloudflareToken
	if token == "" && opts.CloudflareTokenEnv != "" {
		token = getenv(opts.CloudflareTokenEnv)
	}
	if token != "" {
		r.cloudflare = NewCloudflareWorkersAI(token, opts.CloudflareAPIBase, opts.CloudflareGatewayBase, opts.HTTPClient)
	}
	return r
}

// Reserved model namespaces: only table entries that name them explicitly (exact IDs, or prefixes that
// start with them) capture them; a generic prefix such as "*" never sends a built-in or a Workers AI model
// to the wrong server.
const (
	cloudflarePrefix = "@cf/"
	localPrefix      = "local/"
)

// Describe says who serves model, or returns ErrModelNotServed (wrapped, naming the model).
// Order: built-in local models; an exact table entry; the longest table prefix; @cf/ models on Workers
// AI when a Cloudflare token is configured.
func (r *Router) Describe(model string) (ModelInfo, error) {
	_, info, err := r.route(model)
	return info, err
}

// Resolve returns the model that serves model, or ErrModelNotServed (wrapped, naming the model).
func (r *Router) Resolve(model string) (ChatModel, error) {
	m, _, err := r.route(model)
	return m, err
}

func (r *Router) route(model string) (ChatModel, ModelInfo, error) {
	if model == "" {
		return nil, ModelInfo{}, fmt.Errorf("empty model ID: %w", ErrModelNotServed)
	}
	if m := r.local[model]; m != nil {
		return m, ModelInfo{Model: model, Provider: LocalProviderName, Local: true, CallTimeout: r.callTimeout}, nil
	}
	reserved := strings.HasPrefix(model, cloudflarePrefix) || strings.HasPrefix(model, localPrefix)
	if i, ok := r.exact[model]; ok {
		return r.providerRoute(model, i)
	}
	for _, pr := range r.prefixes {
		if !strings.HasPrefix(model, pr.prefix) {
			continue
		}
		if reserved && !strings.HasPrefix(pr.prefix, cloudflarePrefix) && !strings.HasPrefix(pr.prefix, localPrefix) {
			continue
		}
		return r.providerRoute(model, pr.provider)
	}
	if strings.HasPrefix(model, cloudflarePrefix) && r.cloudflare != nil {
		return r.cloudflare, ModelInfo{Model: model, Provider: CloudflareProviderName,
			PricePer1KIn: DefaultPricePer1K, PricePer1KOut: DefaultPricePer1K, CallTimeout: r.callTimeout}, nil
	}
	why := ""
	if strings.HasPrefix(model, cloudflarePrefix) {
		why = " (no Cloudflare API token is configured)"
	}
	return nil, ModelInfo{}, fmt.Errorf("model %q%s: %w", model, why, ErrModelNotServed)
}

func (r *Router) providerRoute(model string, i int) (ChatModel, ModelInfo, error) {
	p := r.providers[i]
	info := ModelInfo{Model: model, Provider: p.cfg.Name, PricePer1KIn: p.cfg.PricePer1KIn, PricePer1KOut: p.cfg.PricePer1KOut}
	if info.PricePer1KIn == 0 {
		info.PricePer1KIn = DefaultPricePer1K
	}
	if info.PricePer1KOut == 0 {
		info.PricePer1KOut = DefaultPricePer1K
	}
	info.CallTimeout = r.providerTimeout(p.cfg)
	return p.model, info, nil
}

// providerTimeout is the call bound of a provider: its own, else the router's.
func (r *Router) providerTimeout(pc ProviderConfig) time.Duration {
	if pc.Timeout > 0 {
		return pc.Timeout
	}
	return r.callTimeout
}

// errFirstTokenTimeout is the cancel cause of an attempt that waited too long for its first token;
// errCallTimeout of one that exceeded its overall call bound.
var (
	errFirstTokenTimeout = errors.New("no first token in time")
	errCallTimeout       = errors.New("model call timed out")
)

// Open opens a stream on req.Model and waits for its first token (or its normal end) before returning,
// so that every setup failure is an error here, before the HTTP layer commits SSE headers. A failure
// before the first token (not served, connect error, HTTP error, stream dropped) is retried with
// exponential backoff and jitter when retryable, then fallbackModel (when set and different) is opened
// once. The stream's Model names the model that serves. After the first token, failures come from
// Next. Every error, here or from Next, is a *CallError naming the models tried. ctx governs the whole
// stream, not only its opening: pass the request's context, whose cancellation (a client that left)
// aborts the upstream call at any point, including a blocked Next. Close the stream when done.
//
// With a Meter (RouterOptions.Meter), the call is metered: see Meter.
func (r *Router) Open(ctx context.Context, req ChatRequest, fallbackModel string) (ChatStream, error) {
	if r.meter != nil {
		return r.openMetered(ctx, req, fallbackModel) // meter.go
	}
	return r.openTraced(ctx, req, fallbackModel)
}

// openTraced is Open without the Meter.
func (r *Router) openTraced(ctx context.Context, req ChatRequest, fallbackModel string) (ChatStream, error) {
	if !r.tracer.Enabled() {
		s, err := r.open(ctx, req, fallbackModel)
		if err != nil {
			return nil, err
		}
		return limitOutput(s, req), nil // maxtokens.go
	}
	ctx, span := r.tracer.Start(ctx, "model "+req.Model, trace.SpanKindClient)
	span.SetAttributes(attribute.String("gen_ai.request.model", req.Model),
		attribute.String("crispy.trace_id", observe.TraceID(ctx)))
	s, err := r.open(ctx, req, fallbackModel)
	if err != nil {
		observe.EndSpan(span, err)
		return nil, err
	}
	span.SetAttributes(attribute.String("gen_ai.response.model", s.model),
		attribute.String("gen_ai.provider.name", s.info.Provider),
		attribute.Int("crispy.models_tried", len(s.tried)))
	s.span = span // ended by Close, with the token counts
	return limitOutput(s, req), nil
}

// open is Open without the span.
func (r *Router) open(ctx context.Context, req ChatRequest, fallbackModel string) (*routedStream, error) {
	models := []string{req.Model}
	if fallbackModel != "" && fallbackModel != req.Model {
		models = append(models, fallbackModel)
	}
	var tried []string
	var errs []error
	obs := callObserverFrom(ctx) // observer.go
	for i, model := range models {
		if i > 0 {
			obs.fallback(models[i-1], model, errs[len(errs)-1])
		}
		tried = append(tried, model)
		attempts := 1
		if i == 0 {
			attempts += r.maxRetries
		}
		var lastErr error
		for a := 0; a < attempts; a++ {
			if a > 0 {
				obs.retry(model, a, lastErr)
				if err := r.backoff(ctx, a-1); err != nil {
					return nil, &CallError{Tried: tried, Errs: append(errs, fmt.Errorf("waiting to retry %s: %w", model, err))}
				}
			}
			attemptReq := req
			attemptReq.Model = model
			s, err := r.openFirst(ctx, attemptReq)
			if err == nil {
				s.tried = tried
				return s, nil
			}
			if ctx.Err() != nil {
				return nil, &CallError{Tried: tried, Errs: append(errs, err)}
			}
			lastErr = err
			if i == 0 && IsModelNotFound(err) {
				// The provider does not know the model: the caller named one that does not exist
				// there (a catch-all route passes any name on). Not a failure to fall back from.
				return nil, &CallError{Tried: tried, Errs: append(errs, err)}
			}
			if !IsRetryable(err) || a == attempts-1 {
				if a > 0 {
					err = fmt.Errorf("after %d attempts: %w", a+1, err)
				}
				errs = append(errs, err)
				break
			}
		}
	}
	return nil, &CallError{Tried: tried, Errs: errs}
}

// backoff sleeps before retry n (0-based): base·2ⁿ capped at max, half fixed and half random so that
// clients retrying together spread out.
func (r *Router) backoff(ctx context.Context, n int) error {
	return sleepBackoff(ctx, r.baseDelay, r.maxDelay, n)
}

// sleepBackoff waits base·2ⁿ capped at max, jittered; chat and embedding retries share it.
func sleepBackoff(ctx context.Context, base, max time.Duration, n int) error {
	d := base << min(n, 30)
	if d > max || d <= 0 {
		d = max
	}
	d = d/2 + rand.N(d/2+1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// openFirst opens one attempt and reads its first token.
func (r *Router) openFirst(ctx context.Context, req ChatRequest) (*routedStream, error) {
	m, info, err := r.route(req.Model)
	if err != nil {
		return nil, err
	}
	actx, cancel := context.WithCancelCause(ctx)
	var timer *time.Timer
	if r.firstTokenTimeout > 0 {
		// A whole reply's first token is its last: the bound is kept by streaming.
		req.Whole = false
		timer = time.AfterFunc(r.firstTokenTimeout, func() { cancel(errFirstTokenTimeout) })
	}
	// The call bound covers the whole stream, so it is a timer that cancels the attempt's context
	// rather than a deadline on the HTTP client, which would also cut a healthy stream mid-reply.
	var callTimer *time.Timer
	if info.CallTimeout > 0 {
		callTimer = time.AfterFunc(info.CallTimeout, func() { cancel(errCallTimeout) })
	}
	stop := func() {
		if callTimer != nil {
			callTimer.Stop()
		}
		cancel(nil)
	}
	timedOut := func() error {
		if errors.Is(context.Cause(actx), errCallTimeout) {
			return callTimedOut(info, true)
		}
		return &UpstreamError{Provider: info.Provider, Model: req.Model, Retryable: true,
			Message: fmt.Sprintf("no first token within %s", r.firstTokenTimeout), cause: errFirstTokenTimeout}
	}
	timerCause := func() bool {
		c := context.Cause(actx)
		return ctx.Err() == nil && (errors.Is(c, errFirstTokenTimeout) || errors.Is(c, errCallTimeout))
	}
	s, err := m.OpenChat(actx, req)
	if err != nil {
		if timerCause() {
			err = timedOut()
		}
		stop()
		return nil, err
	}
	tok, err := s.Next(actx)
	if timer != nil && !timer.Stop() && ctx.Err() == nil {
		err = timedOut() // the timer fired: the attempt's context is cancelled, whatever Next returned
	}
	if err != nil && !errors.Is(err, io.EOF) {
		s.Close()
		if timerCause() {
			err = timedOut()
		}
		stop()
		return nil, err
	}
	return &routedStream{inner: s, model: req.Model, first: tok, pending: err == nil, cancel: cancel,
		actx: actx, callTimer: callTimer, info: info}, nil
}

// callTimedOut is the error of an attempt that exceeded its call bound. Before the first token it is
// retryable like any other failure to start; after it, nothing is retried.
func callTimedOut(info ModelInfo, retryable bool) error {
	return &UpstreamError{Provider: info.Provider, Model: info.Model, Retryable: retryable,
		Message: fmt.Sprintf("call exceeded its %s timeout", info.CallTimeout), cause: errCallTimeout}
}

// routedStream replays the first token Open already read, then delegates, wrapping failures so they
// name the models tried.
type routedStream struct {
	inner     ChatStream
	model     string
	first     string
	pending   bool
	tried     []string
	cancel    context.CancelCauseFunc
	actx      context.Context // the attempt's context: its cause tells a call timeout from other ends
	callTimer *time.Timer
	info      ModelInfo
	span      trace.Span // nil when not traced
}

func (s *routedStream) Next(ctx context.Context) (string, error) {
	if s.pending {
		s.pending = false
		return s.first, nil
	}
	tok, err := s.inner.Next(ctx)
	if err != nil && !errors.Is(err, io.EOF) {
		if ctx.Err() == nil && errors.Is(context.Cause(s.actx), errCallTimeout) {
			err = callTimedOut(s.info, false)
		}
		err = &CallError{Tried: s.tried, Errs: []error{fmt.Errorf("after the first token from %s: %w", s.model, err)}}
		if s.span != nil {
			s.span.RecordError(err)
			s.span.SetStatus(codes.Error, err.Error())
		}
		return "", err
	}
	return tok, err
}

func (s *routedStream) Usage() Usage  { return s.inner.Usage() }
func (s *routedStream) Model() string { return s.model }

func (s *routedStream) Close() error {
	err := s.inner.Close()
	if s.callTimer != nil {
		s.callTimer.Stop()
	}
	s.cancel(nil)
	if s.span != nil {
		u := s.inner.Usage()
		s.span.SetAttributes(attribute.Int("gen_ai.usage.input_tokens", u.TokensIn),
			attribute.Int("gen_ai.usage.output_tokens", u.TokensOut), attribute.Bool("crispy.tokens_estimated", u.Estimated))
		s.span.End()
	}
	return err
}

// Complete opens the call like Open, asking for the whole reply (ChatRequest.Whole), and reads it:
// the non-streamed chat form and tools use it.
func (r *Router) Complete(ctx context.Context, req ChatRequest, fallbackModel string) (text string, usage Usage, model string, err error) {
	req.Whole = true
	s, err := r.Open(ctx, req, fallbackModel)
	if err != nil {
		return "", Usage{}, "", err
	}
	defer s.Close()
	var b strings.Builder
	for {
		tok, err := s.Next(ctx)
		if errors.Is(err, io.EOF) {
			return b.String(), s.Usage(), s.Model(), nil
		}
		if err != nil {
			return "", Usage{}, s.Model(), err
		}
		b.WriteString(tok)
	}
}
