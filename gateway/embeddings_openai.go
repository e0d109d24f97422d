package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/crispy-enigma/crispy/config"
)

// DefaultEmbeddingBatchSize is how many texts one /v1/embeddings request carries unless configured:
// small enough for servers with low input limits (Workers AI takes at most 100), large enough that
// ingesting a document costs few round trips.
const DefaultEmbeddingBatchSize = 32

// maxEmbeddingBody bounds one embeddings response: 32 texts × 4096 dimensions as JSON numbers is
// about 3 MB, so this leaves room for larger batches without trusting the upstream with memory.
const maxEmbeddingBody = 64 << 20

// EmbeddingUsager is implemented by embedders that report the tokens a call used; the usage ledger
// type-asserts it. HashEmbedder does not: it makes no model call.
type EmbeddingUsager interface {
	EmbedWithUsage(ctx context.Context, texts []string) ([][]float32, Usage, error)
}

// OpenAIEmbeddingOptions configures an OpenAI-compatible embeddings provider.
type OpenAIEmbeddingOptions struct {
	// Name identifies the provider in errors and logs.
	Name string
	// BaseURL is the server's API root; "/embeddings" is appended when it ends in "/v1", else
	// "/v1/embeddings". Endpoint, when set, is the full URL instead (Workers AI accounts, AI Gateway).
	BaseURL  string
	Endpoint string
	// Header holds extra request headers (e.g. cf-aig-metadata).
	Header http.Header
	// APIKey is the bearer key; when empty, the variable named by APIKeyEnv is read once, here.
	APIKey    string
	APIKeyEnv string
	Getenv    func(string) string // nil uses config.Getenv
	// HTTPClient carries the calls; nil uses NewHTTPClient.
	HTTPClient *http.Client

	// Model is the model ID sent upstream and reported by ID.
	Model string
	// Dimension fixes the vector length; 0 learns it from the first response. Either way every
	// response is checked against it.
	Dimension int
	// BatchSize is the most texts per request (0: DefaultEmbeddingBatchSize).
	BatchSize int
	// InputType sends input_type "passage" with Embed and "query" with EmbedQuery. Off by default:
	// only models trained on that distinction (E5: "query: " / "passage: ") need it, and servers that
	// do not know the field may refuse it.
	InputType bool
	// Timeout bounds each request (0: DefaultCallTimeout, negative: none beyond ctx).
	Timeout time.Duration
	// MaxRetries is how many times a retryable failure of one batch is retried (0: DefaultMaxRetries,
	// negative: none), waiting RetryBaseDelay doubling up to RetryMaxDelay, with jitter, as chat does.
	MaxRetries     int
	RetryBaseDelay time.Duration
	RetryMaxDelay  time.Duration
}

// OpenAIEmbeddings is an EmbeddingModel served by an OpenAI-compatible /v1/embeddings endpoint (OpenAI,
// vLLM, Ollama, llama.cpp, Workers AI). It splits the texts into batches of at most BatchSize, sends
// them one after another (keeping a server's concurrency ours to decide) and returns the vectors in
// input order, matched by each item's index rather than by response order. It is safe for concurrent
// use.
type OpenAIEmbeddings struct {
	name, model string
	endpoint    string
	header      http.Header
	apiKey      string
	client      *http.Client
	batch       int
	inputType   bool
	timeout     time.Duration
	maxRetries  int
	baseDelay   time.Duration
	maxDelay    time.Duration

	dim atomic.Int64 // configured, or learned from the first response; 0 until then
}

var (
	_ EmbeddingModel  = (*OpenAIEmbeddings)(nil)
	_ EmbeddingUsager = (*OpenAIEmbeddings)(nil)
	_ QueryEmbedder   = (*OpenAIEmbeddings)(nil)
)

// NewOpenAIEmbeddings returns the provider for opts.
func NewOpenAIEmbeddings(opts OpenAIEmbeddingOptions) *OpenAIEmbeddings {
	getenv := opts.Getenv
	if getenv == nil {
		getenv = config.Getenv
	}
	key := opts.APIKey
	if key == "" && opts.APIKeyEnv != "" {
		key = getenv(opts.APIKeyEnv)
	}
	endpoint := opts.Endpoint
	if endpoint == "" {
		endpoint = embeddingsURL(opts.BaseURL)
	}
	e := &OpenAIEmbeddings{
		name:       opts.Name,
		model:      opts.Model,
		endpoint:   endpoint,
		header:     opts.Header,
		apiKey:     key,
		client:     orDefaultClient(opts.HTTPClient),
		batch:      opts.BatchSize,
		inputType:  opts.InputType,
		timeout:    opts.Timeout,
		maxRetries: opts.MaxRetries,
		baseDelay:  opts.RetryBaseDelay,
		maxDelay:   opts.RetryMaxDelay,
	}
	if e.batch <= 0 {
		e.batch = DefaultEmbeddingBatchSize
	}
	switch {
	case e.timeout == 0:
		e.timeout = DefaultCallTimeout
	case e.timeout < 0:
		e.timeout = 0
	}
	switch {
	case e.maxRetries == 0:
		e.maxRetries = DefaultMaxRetries
	case e.maxRetries < 0:
		e.maxRetries = 0
	}
	if e.baseDelay <= 0 {
		e.baseDelay = DefaultRetryBaseDelay
	}
	if e.maxDelay <= 0 {
		e.maxDelay = DefaultRetryMaxDelay
	}
	if opts.Dimension > 0 {
		e.dim.Store(int64(opts.Dimension))
	}
	return e
}

// embeddingsURL accepts both base URL conventions, like chatCompletionsURL.
func embeddingsURL(base string) string {
	base = strings.TrimRight(base, "/")
	if strings.HasSuffix(base, "/v1") {
		return base + "/embeddings"
	}
	return base + "/v1/embeddings"
}

// ID returns the model ID.
func (e *OpenAIEmbeddings) ID() string { return e.model }

// Dimension returns the vector length: the configured one, else the one learned from the first
// response, else 0 (no response yet; call Probe to learn it up front).
func (e *OpenAIEmbeddings) Dimension() int { return int(e.dim.Load()) }

// Probe embeds one short text when the dimension is not known yet, so that a caller that must size a
// vector collection before its first document can learn it. It returns the dimension.
func (e *OpenAIEmbeddings) Probe(ctx context.Context) (int, error) {
	if d := e.Dimension(); d > 0 {
		return d, nil
	}
	if _, err := e.Embed(ctx, []string{"dimension probe"}); err != nil {
		return 0, err
	}
	return e.Dimension(), nil
}

// Embed returns one vector per text (a passage, with InputType), in input order.
func (e *OpenAIEmbeddings) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	vecs, _, err := e.EmbedWithUsage(ctx, texts)
	return vecs, err
}

// EmbedQuery embeds search queries: like Embed, but with InputType the request says "query".
func (e *OpenAIEmbeddings) EmbedQuery(ctx context.Context, texts []string) ([][]float32, error) {
	vecs, _, err := e.embedAll(ctx, texts, inputQuery)
	return vecs, err
}

// EmbedWithUsage embeds like Embed and sums the tokens the provider reported over all batches;
// batches without usage are estimated (and the total is marked Estimated).
func (e *OpenAIEmbeddings) EmbedWithUsage(ctx context.Context, texts []string) ([][]float32, Usage, error) {
	return e.embedAll(ctx, texts, inputPassage)
}

// input_type values (sent only with OpenAIEmbeddingOptions.InputType).
const (
	inputPassage = "passage"
	inputQuery   = "query"
)

func (e *OpenAIEmbeddings) embedAll(ctx context.Context, texts []string, inputType string) ([][]float32, Usage, error) {
	if !e.inputType {
		inputType = ""
	}
	out := make([][]float32, 0, len(texts))
	var usage Usage
	for start := 0; start < len(texts); start += e.batch {
		batch := texts[start:min(start+e.batch, len(texts))]
		vecs, u, err := e.embedBatchWithRetries(ctx, batch, inputType)
		if err != nil {
			return nil, Usage{}, fmt.Errorf("embed texts %d–%d of %d: %w", start, start+len(batch)-1, len(texts), err)
		}
		out = append(out, vecs...)
		usage.TokensIn += u.TokensIn
		usage.Estimated = usage.Estimated || u.Estimated
	}
	return out, usage, nil
}

func (e *OpenAIEmbeddings) embedBatchWithRetries(ctx context.Context, batch []string, inputType string) ([][]float32, Usage, error) {
	for a := 0; ; a++ {
		vecs, u, err := e.embedBatch(ctx, batch, inputType)
		if err == nil {
			return vecs, u, nil
		}
		if ctx.Err() != nil || !IsRetryable(err) || a == e.maxRetries {
			if a > 0 {
				err = fmt.Errorf("after %d attempts: %w", a+1, err)
			}
			return nil, Usage{}, err
		}
		if werr := sleepBackoff(ctx, e.baseDelay, e.maxDelay, a); werr != nil {
			return nil, Usage{}, fmt.Errorf("waiting to retry %s: %w (last failure: %v)", e.model, werr, err)
		}
	}
}

type embeddingRequest struct {
	Model     string   `json:"model"`
	Input     []string `json:"input"`
	InputType string   `json:"input_type,omitempty"`
}

type embeddingResponse struct {
	Data []struct {
		Index     *int      `json:"index"`
		Embedding []float32 `json:"embedding"`
	} `json:"data"`
	Usage *struct {
		PromptTokens int `json:"prompt_tokens"`
		TotalTokens  int `json:"total_tokens"`
	} `json:"usage"`
}

// embedBatch makes one request.
func (e *OpenAIEmbeddings) embedBatch(ctx context.Context, batch []string, inputType string) ([][]float32, Usage, error) {
	body, err := json.Marshal(embeddingRequest{Model: e.model, Input: batch, InputType: inputType})
	if err != nil {
		return nil, Usage{}, fmt.Errorf("encode embedding request: %w", err)
	}
	rctx, cancel := ctx, context.CancelFunc(func() {})
	if e.timeout > 0 {
		rctx, cancel = context.WithTimeoutCause(ctx, e.timeout, errCallTimeout)
	}
	defer cancel()
	hreq, err := http.NewRequestWithContext(rctx, http.MethodPost, e.endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, Usage{}, fmt.Errorf("provider %s: build request: %w", e.name, err)
	}
	for k, vs := range e.header {
		hreq.Header[k] = vs
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/json")
	setTraceHeader(ctx, hreq.Header, "") // trace.go
	if e.apiKey != "" {
		hreq.Header.Set("Authorization", "Bearer "+e.apiKey)
	}
	resp, err := e.client.Do(hreq)
	if err != nil {
		return nil, Usage{}, e.transportError("connect", rctx, ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return nil, Usage{}, &UpstreamError{Provider: e.name, Model: e.model, Status: resp.StatusCode,
			Retryable: retryableStatus(resp.StatusCode), Message: errorBodyMessage(resp.StatusCode, raw)}
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxEmbeddingBody+1))
	if err != nil {
		return nil, Usage{}, e.transportError("read response", rctx, ctx, err)
	}
	if len(raw) > maxEmbeddingBody {
		return nil, Usage{}, e.malformed(fmt.Sprintf("response larger than %d bytes", maxEmbeddingBody), nil)
	}
	var r embeddingResponse
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, Usage{}, e.malformed("malformed embeddings response: "+trimMessage(err.Error()), err)
	}
	vecs, err := e.ordered(r, len(batch))
	if err != nil {
		return nil, Usage{}, err
	}
	if r.Usage != nil && (r.Usage.PromptTokens > 0 || r.Usage.TotalTokens > 0) {
		n := r.Usage.PromptTokens
		if n == 0 {
			n = r.Usage.TotalTokens
		}
		return vecs, Usage{TokensIn: n}, nil
	}
	return vecs, Usage{TokensIn: EstimateTokens(batch...), Estimated: true}, nil
}

// ordered places each item at its index and checks that every text got exactly one vector of the
// model's dimension, learning the dimension from the first response.
func (e *OpenAIEmbeddings) ordered(r embeddingResponse, n int) ([][]float32, error) {
	if len(r.Data) != n {
		return nil, e.malformed(fmt.Sprintf("%d embeddings for %d inputs", len(r.Data), n), nil)
	}
	vecs := make([][]float32, n)
	for i, d := range r.Data {
		idx := i // servers that omit the index answer in input order
		if d.Index != nil {
			idx = *d.Index
		}
		if idx < 0 || idx >= n || vecs[idx] != nil {
			return nil, e.malformed(fmt.Sprintf("embedding index %d out of range or repeated (inputs: %d)", idx, n), nil)
		}
		if len(d.Embedding) == 0 {
			return nil, e.malformed(fmt.Sprintf("empty embedding at index %d", idx), nil)
		}
		want := e.dim.Load()
		if want == 0 {
			// The first response teaches the dimension; a concurrent first response may win the race,
			// and then this one is checked against it.
			e.dim.CompareAndSwap(0, int64(len(d.Embedding)))
			want = e.dim.Load()
		}
		if int64(len(d.Embedding)) != want {
			return nil, e.malformed(fmt.Sprintf("embedding at index %d has dimension %d, want %d", idx, len(d.Embedding), want), nil)
		}
		if j := NonFinite(d.Embedding); j >= 0 {
			return nil, e.malformed(fmt.Sprintf("embedding at index %d has a non-finite value at position %d", idx, j), nil)
		}
		vecs[idx] = d.Embedding
	}
	return vecs, nil
}

func (e *OpenAIEmbeddings) malformed(msg string, cause error) error {
	return &UpstreamError{Provider: e.name, Model: e.model, Message: msg, cause: cause}
}

// transportError classifies a failed request: the caller's cancellation is returned as such, our own
// timeout and network failures are retryable upstream errors.
func (e *OpenAIEmbeddings) transportError(what string, rctx, ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("provider %s, model %s: %w", e.name, e.model, context.Cause(ctx))
	}
	if errors.Is(context.Cause(rctx), errCallTimeout) {
		return &UpstreamError{Provider: e.name, Model: e.model, Retryable: true,
			Message: fmt.Sprintf("request exceeded its %s timeout", e.timeout), cause: errCallTimeout}
	}
	// *url.Error names the URL, never the Authorization header.
	return &UpstreamError{Provider: e.name, Model: e.model, Retryable: true,
		Message: what + ": " + trimMessage(err.Error()), cause: err}
}
