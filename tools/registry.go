// Package tools is the tool registry of docs/api.md "Tools": named tools with a JSON Schema for their
// parameters, a timeout and declared permissions; one dispatcher that looks a tool up, validates the
// parameters, checks the tenant's feature flags and runs the tool under its timeout; and the built-ins.
//
// The HTTP layer calls Registry.Execute and Registry.List; it never runs a tool directly, so every
// execution goes through the same gate and the same audit hook (the chat tool loop included).
package tools

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"runtime/debug"
	"sort"
	"sync"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/crispy-enigma/crispy/config"
)

// Timeouts of docs/api.md: default 10 s, a per-tool override clamped to 1–60 s.
const (
	DefaultTimeout = 10 * time.Second
	MinTimeout     = 1 * time.Second
	MaxTimeout     = 60 * time.Second
)

// Error codes of docs/api.md "Tools".
const (
	CodeToolNotFound     = "TOOL_NOT_FOUND"
	CodeValidationFailed = "VALIDATION_FAILED"
	CodePermissionDenied = "PERMISSION_DENIED"
	CodeExecutionTimeout = "EXECUTION_TIMEOUT"
	CodeExecutionError   = "EXECUTION_ERROR"
)

var namePattern = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// Tool is one registered tool. Run receives parameters that already passed Parameters' schema.
type Tool struct {
	Name        string
	Description string
	// Parameters is a JSON Schema (draft 2020-12 unless it says otherwise) whose top level must be
	// `"type": "object"`. When it does not say `additionalProperties`, Register adds
	// `"additionalProperties": false`: unknown parameters are refused unless a schema allows them.
	Parameters json.RawMessage
	// Timeout is clamped to MinTimeout–MaxTimeout; zero means DefaultTimeout.
	Timeout time.Duration
	// Permissions are feature flags that must be true for the caller's tenant.
	Permissions []string
	// Run executes the tool. It returns the data of a successful result, a *ToolFailure for a tool
	// that ran but failed (HTTP 200, success:false), or any other error for a crash (HTTP 500
	// EXECUTION_ERROR). It must honour ctx: the dispatcher stops waiting at the timeout, but a Run that
	// ignores ctx keeps its goroutine until it returns.
	Run func(ctx context.Context, call Call) (any, error)
}

// Call is what a running tool knows about its invocation.
type Call struct {
	Tenant    *config.TenantConfig
	RequestID string
	UserID    string
	// Params is the validated parameter object as JSON; decode it with Decode.
	Params json.RawMessage
}

// TenantID is the calling tenant's ID.
func (c Call) TenantID() string {
	if c.Tenant == nil {
		return ""
	}
	return c.Tenant.TenantID
}

// Decode unmarshals the validated parameters into v.
func (c Call) Decode(v any) error {
	if err := json.Unmarshal(c.Params, v); err != nil {
		return fmt.Errorf("decode tool params: %w", err)
	}
	return nil
}

// ToolFailure is a tool that ran and failed in a way the caller should see (docs/api.md: still 200
// with success:false), e.g. NO_CONTENT or DIVISION_BY_ZERO. Message is client-safe; Cause is for logs.
type ToolFailure struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Cause   error  `json:"-"`
}

func (f *ToolFailure) Error() string {
	if f.Cause != nil {
		return f.Code + ": " + f.Message + ": " + f.Cause.Error()
	}
	return f.Code + ": " + f.Message
}

func (f *ToolFailure) Unwrap() error { return f.Cause }

// Fail builds a *ToolFailure.
func Fail(code, format string, args ...any) *ToolFailure {
	return &ToolFailure{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Result is the outcome of a tool that ran (HTTP 200).
type Result struct {
	Success    bool         `json:"success"`
	Data       any          `json:"data"`
	Error      *ToolFailure `json:"error,omitempty"`
	DurationMs int64        `json:"durationMs"`
}

// Error is a dispatch failure: the tool did not run, or crashed, or timed out. Status is the HTTP
// status, Code the docs/api.md code, Message client-safe; Details lists every validation message;
// Cause (never shown to clients) says what really happened.
type Error struct {
	Status  int
	Code    string
	Message string
	Details []string
	Cause   error
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Cause)
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Cause }

// ExecuteRequest is one execution.
type ExecuteRequest struct {
	Tenant *config.TenantConfig
	Tool   string
	// Params must be a JSON object; empty (absent) means {}, JSON null does not.
	Params    json.RawMessage
	RequestID string
	UserID    string
}

// AuditRecord is one execution for the ledger. Params are kept only as the sha256 of their canonical
// JSON (keys sorted, no insignificant whitespace).
type AuditRecord struct {
	TenantID     string    `json:"tenantId"`
	Tool         string    `json:"tool"`
	RequestID    string    `json:"requestId"`
	UserID       string    `json:"userId,omitempty"`
	ParamsSHA256 string    `json:"paramsSha256"`
	Success      bool      `json:"success"`
	DurationMs   int64     `json:"durationMs"`
	ErrorCode    string    `json:"errorCode,omitempty"`
	Time         time.Time `json:"time"`
}

// AuditFunc receives every execution, refused ones included. It is called synchronously before
// Execute returns, so it should be quick (e.g. publish to the ledger stream).
type AuditFunc func(ctx context.Context, rec AuditRecord)

// Descriptor is what GET /schema/tools lists for one tool.
type Descriptor struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Parameters  json.RawMessage `json:"parameters"`
	TimeoutMs   int64           `json:"timeout"`
	Permissions []string        `json:"permissions,omitempty"`
}

// OpenAITool is the descriptor in the OpenAI chat `tools` format, for the chat tool loop.
func (d Descriptor) OpenAITool() map[string]any {
	return map[string]any{
		"type": "function",
		"function": map[string]any{
			"name":        d.Name,
			"description": d.Description,
			"parameters":  d.Parameters,
		},
	}
}

// Option configures a Registry.
type Option func(*Registry)

// WithAudit sets the audit hook.
func WithAudit(fn AuditFunc) Option { return func(r *Registry) { r.audit = fn } }

// WithClock replaces time.Now for audit timestamps and durations (tests).
func WithClock(now func() time.Time) Option { return func(r *Registry) { r.now = now } }

// Registry holds the tools. Register at start-up; Execute and List are safe for concurrent use.
type Registry struct {
	mu    sync.RWMutex
	tools map[string]*entry
	audit AuditFunc
	now   func() time.Time
}

type entry struct {
	tool   Tool
	schema *jsonschema.Schema
}

// NewRegistry returns an empty registry.
func NewRegistry(opts ...Option) *Registry {
	r := &Registry{tools: map[string]*entry{}, now: time.Now}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Register adds a tool. It refuses a bad name, a duplicate, a missing Run and a schema that does not
// compile or is not an object schema.
func (r *Registry) Register(t Tool) error {
	if !namePattern.MatchString(t.Name) {
		return fmt.Errorf("register tool %q: name must match %s", t.Name, namePattern)
	}
	if t.Run == nil {
		return fmt.Errorf("register tool %q: Run is nil", t.Name)
	}
	params, sch, err := compileParams(t.Name, t.Parameters)
	if err != nil {
		return fmt.Errorf("register tool %q: %w", t.Name, err)
	}
	t.Parameters = params
	t.Timeout = clampTimeout(t.Timeout)
	t.Permissions = append([]string(nil), t.Permissions...)

	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.tools[t.Name]; dup {
		return fmt.Errorf("register tool %q: already registered", t.Name)
	}
	r.tools[t.Name] = &entry{tool: t, schema: sch}
	return nil
}

func clampTimeout(d time.Duration) time.Duration {
	switch {
	case d == 0:
		return DefaultTimeout
	case d < MinTimeout:
		return MinTimeout
	case d > MaxTimeout:
		return MaxTimeout
	}
	return d
}

func (r *Registry) lookup(name string) (*entry, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.tools[name]
	return e, ok
}

// Names returns every registered tool's name, in no order (the bounded metric labels).
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.tools))
	for name := range r.tools {
		names = append(names, name)
	}
	return names
}

// List returns the tools cfg's tenant may run, sorted by name (docs/api.md: only those).
func (r *Registry) List(cfg *config.TenantConfig) []Descriptor {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Descriptor, 0, len(r.tools))
	for _, e := range r.tools {
		if checkPermission(e.tool, cfg) != "" {
			continue
		}
		out = append(out, Descriptor{
			Name:        e.tool.Name,
			Description: e.tool.Description,
			Parameters:  e.tool.Parameters,
			TimeoutMs:   e.tool.Timeout.Milliseconds(),
			Permissions: e.tool.Permissions,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// checkPermission returns why cfg may not run t, or "" when it may. An absent tools_enabled allows
// (docs/api.md only says tools_enabled:false denies all, as the original did); a declared permission
// must be explicitly true.
func checkPermission(t Tool, cfg *config.TenantConfig) string {
	if cfg == nil {
		return "No tenant"
	}
	if v, ok := cfg.FeatureFlags["tools_enabled"]; ok && !v {
		return "Tools are disabled for this tenant"
	}
	if v, ok := cfg.FeatureFlags["tool_"+t.Name]; ok && !v {
		return fmt.Sprintf("Tool '%s' is disabled for this tenant", t.Name)
	}
	for _, p := range t.Permissions {
		if !cfg.Flag(p) {
			return "Missing required permission: " + p
		}
	}
	return ""
}

// Execute runs one tool: look-up → validate → permission → run with timeout. A *Error means the tool
// did not produce a Result (404, 400, 403, 500); otherwise the Result says success or tool failure.
// Every call is passed to the audit hook.
func (r *Registry) Execute(ctx context.Context, req ExecuteRequest) (Result, *Error) {
	start := r.now()
	res, canonical, derr := r.execute(ctx, req, start)
	if r.audit != nil {
		rec := AuditRecord{
			Tool:         req.Tool,
			RequestID:    req.RequestID,
			UserID:       req.UserID,
			ParamsSHA256: paramsDigest(canonical, req.Params),
			Success:      derr == nil && res.Success,
			DurationMs:   r.now().Sub(start).Milliseconds(),
			Time:         start.UTC(),
		}
		if req.Tenant != nil {
			rec.TenantID = req.Tenant.TenantID
		}
		switch {
		case derr != nil:
			rec.ErrorCode = derr.Code
		case res.Error != nil:
			rec.ErrorCode = res.Error.Code
		}
		r.audit(ctx, rec)
	}
	return res, derr
}

func paramsDigest(canonical []byte, raw json.RawMessage) string {
	b := canonical
	if b == nil {
		b = raw
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func (r *Registry) execute(ctx context.Context, req ExecuteRequest, start time.Time) (Result, []byte, *Error) {
	e, ok := r.lookup(req.Tool)
	if !ok {
		// The name is never echoed back: names like "a<script>" are simply unknown.
		return Result{}, nil, &Error{Status: 404, Code: CodeToolNotFound, Message: "Tool not found"}
	}
	canonical, msgs := validateParams(e.schema, req.Params)
	if len(msgs) > 0 {
		return Result{}, canonical, &Error{Status: 400, Code: CodeValidationFailed, Message: joinMessages(msgs), Details: msgs}
	}
	if why := checkPermission(e.tool, req.Tenant); why != "" {
		return Result{}, canonical, &Error{Status: 403, Code: CodePermissionDenied, Message: why}
	}
	call := Call{Tenant: req.Tenant, RequestID: req.RequestID, UserID: req.UserID, Params: canonical}
	data, err := r.run(ctx, e.tool, call)
	dur := r.now().Sub(start).Milliseconds()
	if err == nil {
		return Result{Success: true, Data: data, DurationMs: dur}, canonical, nil
	}
	var fail *ToolFailure
	if errors.As(err, &fail) {
		return Result{Success: false, Error: fail, DurationMs: dur}, canonical, nil
	}
	var derr *Error
	if errors.As(err, &derr) {
		return Result{}, canonical, derr
	}
	return Result{}, canonical, &Error{Status: 500, Code: CodeExecutionError, Message: "Tool execution failed", Cause: err}
}

// errPanic marks a recovered panic.
type panicError struct {
	value any
	stack []byte
}

func (p *panicError) Error() string { return fmt.Sprintf("tool panicked: %v\n%s", p.value, p.stack) }

// run runs the tool in its own goroutine so that the timeout holds even for a tool that ignores ctx,
// and recovers a panic into EXECUTION_ERROR.
func (r *Registry) run(ctx context.Context, t Tool, call Call) (any, error) {
	tctx, cancel := context.WithTimeout(ctx, t.Timeout)
	defer cancel()

	type outcome struct {
		data any
		err  error
	}
	done := make(chan outcome, 1) // buffered: a late tool never blocks on a reader that left
	go func() {
		defer func() {
			if v := recover(); v != nil {
				done <- outcome{err: &Error{Status: 500, Code: CodeExecutionError, Message: "Tool execution failed",
					Cause: &panicError{value: v, stack: debug.Stack()}}}
			}
		}()
		data, err := t.Run(tctx, call)
		done <- outcome{data: data, err: err}
	}()

	select {
	case o := <-done:
		if o.err != nil && tctx.Err() != nil && ctx.Err() == nil && errors.Is(o.err, context.DeadlineExceeded) {
			return nil, timeoutError(t)
		}
		return o.data, o.err
	case <-tctx.Done():
		if ctx.Err() != nil {
			return nil, &Error{Status: 500, Code: CodeExecutionError, Message: "Tool execution cancelled", Cause: ctx.Err()}
		}
		return nil, timeoutError(t)
	}
}

func timeoutError(t Tool) *Error {
	return &Error{Status: 500, Code: CodeExecutionTimeout,
		Message: fmt.Sprintf("Tool execution timed out after %dms", t.Timeout.Milliseconds())}
}
