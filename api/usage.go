package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/store"
)

// UsageReader answers GET /usage from the tenant's read model (store.TenantDBs).
type UsageReader interface {
	Usage(ctx context.Context, tenantID string, from, to time.Time, groupBy string) ([]store.UsageRow, error)
}

// ModelPricer says who serves a model and at what price (gateway.Router.Describe).
type ModelPricer interface {
	Describe(model string) (gateway.ModelInfo, error)
}

var _ ModelPricer = (*gateway.Router)(nil)

// sessionStored records session_created after the first exchange of a session was stored.
func (s *Server) sessionStored(ctx context.Context, ex *exchange) {
	if !ex.newSession {
		return
	}
	s.recordEvent(ctx, store.Event{
		Kind: store.KindSessionCreated, TenantID: ex.tenant.TenantID, TraceID: ex.traceID,
		SessionID: ex.sessionID, UserID: ex.userID,
	})
}

// sessionCleared records session_cleared after DELETE /chat/:sessionId.
func (s *Server) sessionCleared(c echo.Context, sessionID string) {
	s.recordEvent(c.Request().Context(), store.Event{
		Kind: store.KindSessionCleared, TenantID: tenantOf(c).TenantID, TraceID: traceID(c), SessionID: sessionID,
	})
}

// defaultUsageWindow is GET /usage's range when from is absent.
const defaultUsageWindow = 30 * 24 * time.Hour

// usageTotals sums the rows of GET /usage.
type usageTotals struct {
	Requests  int64   `json:"requests"`
	TokensIn  int64   `json:"tokensIn"`
	TokensOut int64   `json:"tokensOut"`
	Cost      float64 `json:"cost"`
	Cached    int64   `json:"cached"`
	Estimated int64   `json:"estimated"`
}

// getUsage is GET /usage?from=&to=&groupBy=day|model (CONTRACT.md "Tenant metrics", ours): the
// calling tenant's model calls from its own read model. from and to are RFC 3339 dates
// ("2026-01-02", a whole UTC day: to's day is included), RFC 3339 times (to exclusive) or epoch
// milliseconds. Defaults: to = now, from = to − 30 days, groupBy = day.
func (s *Server) getUsage(c echo.Context) error {
	t := tenantOf(c)
	now := s.now().UTC()
	to := now
	if v := c.QueryParam("to"); v != "" {
		ts, dateOnly, err := parseUsageTime(v)
		if err != nil {
			return errInvalidRequest("to: must be an RFC 3339 date or time, or epoch milliseconds")
		}
		to = ts
		if dateOnly {
			to = ts.AddDate(0, 0, 1)
		}
	}
	from := to.Add(-defaultUsageWindow)
	if v := c.QueryParam("from"); v != "" {
		ts, _, err := parseUsageTime(v)
		if err != nil {
			return errInvalidRequest("from: must be an RFC 3339 date or time, or epoch milliseconds")
		}
		from = ts
	}
	if !from.Before(to) {
		return errInvalidRequest("from: must be before to")
	}
	groupBy := c.QueryParam("groupBy")
	switch groupBy {
	case "":
		groupBy = "day"
	case "day", "model":
	default:
		return errInvalidRequest("groupBy: must be day or model")
	}
	rows, err := s.usage.Usage(c.Request().Context(), t.TenantID, from, to, groupBy)
	if err != nil {
		return Wrap(http.StatusServiceUnavailable, CodeUnavailable, "usage is unavailable, retry shortly", err)
	}
	if rows == nil {
		rows = []store.UsageRow{}
	}
	var tot usageTotals
	for _, r := range rows {
		tot.Requests += r.Requests
		tot.TokensIn += r.TokensIn
		tot.TokensOut += r.TokensOut
		tot.Cost += r.Cost
		tot.Cached += r.Cached
		tot.Estimated += r.Estimated
	}
	return ok(c, http.StatusOK, map[string]any{
		"from": from.Format(time.RFC3339Nano), "to": to.Format(time.RFC3339Nano), "groupBy": groupBy,
		"rows": rows, "totals": tot,
	})
}

// parseUsageTime reads epoch milliseconds, an RFC 3339 date or an RFC 3339 time, in UTC.
func parseUsageTime(v string) (t time.Time, dateOnly bool, err error) {
	if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
		if ms < 0 {
			return time.Time{}, false, errors.New("negative epoch")
		}
		return time.UnixMilli(ms).UTC(), false, nil
	}
	if d, err := time.Parse(time.DateOnly, v); err == nil {
		return d.UTC(), true, nil
	}
	ts, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, false, err
	}
	return ts.UTC(), false, nil
}
