package api

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/tools"
)

// ToolRunner is the tool registry as the HTTP layer uses it: every execution goes through Execute,
// which looks the tool up, validates, checks permissions and runs it under its timeout.
type ToolRunner interface {
	Execute(ctx context.Context, req tools.ExecuteRequest) (tools.Result, *tools.Error)
	List(cfg *config.TenantConfig) []tools.Descriptor
}

var _ ToolRunner = (*tools.Registry)(nil)

// ToolsDeps are the tool routes' dependencies; /tools/execute is rate limited by Deps.Meter.
type ToolsDeps struct {
	Registry ToolRunner
}

func (s *Server) toolRoutes(e *echo.Echo) {
	e.GET("/schema/tools", s.getToolSchema)
	e.POST("/tools/execute", s.postToolExecute)
}

// getToolSchema lists only the tools this caller may run (CONTRACT.md "Tools", ours).
func (s *Server) getToolSchema(c echo.Context) error {
	list := s.tools.Registry.List(tenantOf(c))
	if list == nil {
		list = []tools.Descriptor{} // an empty list, never null
	}
	return ok(c, http.StatusOK, map[string]any{"tools": list})
}

// toolExecuteRequest is CONTRACT.md's POST /tools/execute body. Params stay raw: the registry
// validates them against the tool's schema (and refuses anything that is not an object).
type toolExecuteRequest struct {
	ToolName *string         `json:"tool_name"`
	Params   json.RawMessage `json:"params"`
	UserID   string          `json:"user_id"`
}

// toolExecuteData is the success envelope's data; Error is present when Success is false.
type toolExecuteData struct {
	Success  bool               `json:"success"`
	Data     any                `json:"data"`
	Error    *tools.ToolFailure `json:"error,omitempty"`
	Metadata toolMetadata       `json:"metadata"`
}

type toolMetadata struct {
	DurationMs int64 `json:"durationMs"`
}

func (s *Server) postToolExecute(c echo.Context) error {
	var req toolExecuteRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	switch {
	case req.ToolName == nil || *req.ToolName == "":
		return errInvalidRequest("tool_name: required")
	case len(req.UserID) > maxUserIDLen:
		return errInvalidRequest("user_id: must be at most %d characters", maxUserIDLen)
	}
	if err := s.checkRateLimit(c, req.UserID); err != nil {
		return err
	}
	res, terr := s.tools.Registry.Execute(c.Request().Context(), tools.ExecuteRequest{
		Tenant: tenantOf(c), Tool: *req.ToolName, Params: req.Params,
		RequestID: traceID(c), UserID: req.UserID,
	})
	s.countTool(tenantOf(c).TenantID, *req.ToolName, res, terr)
	if terr != nil {
		return toolError(terr)
	}
	return ok(c, http.StatusOK, toolExecuteData{
		Success: res.Success, Data: res.Data, Error: res.Error, Metadata: toolMetadata{DurationMs: res.DurationMs},
	})
}

// toolError maps a dispatch failure to the envelope: the registry's status and CONTRACT.md code
// (TOOL_NOT_FOUND, VALIDATION_FAILED, PERMISSION_DENIED, EXECUTION_TIMEOUT, EXECUTION_ERROR) and its
// client-safe message; the cause goes to the log only.
func toolError(e *tools.Error) *Error {
	status := e.Status
	if status < 400 || status > 599 {
		status = http.StatusInternalServerError
	}
	return Wrap(status, e.Code, e.Message, e.Cause)
}

// countTool counts one execution by outcome: ok, failed (ran, success:false) or the dispatch error
// code. An unknown tool's name is never a label value (bounded cardinality; names are client input).
func (s *Server) countTool(tenant, tool string, r tools.Result, e *tools.Error) {
	outcome := "ok"
	switch {
	case e != nil:
		outcome = e.Code
		if e.Code == tools.CodeToolNotFound {
			tool = "unknown"
		}
	case !r.Success:
		outcome = "failed"
	}
	s.metrics.ToolExecutions.WithLabelValues(tenant, tool, outcome).Inc()
}
