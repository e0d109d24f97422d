package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/store"
)

// TenantMetricsDeps are the /metrics/* routes' dependencies. These live on the tenant listener;
// the operator's Prometheus /metrics is on the admin listener, a different handler, so the paths
// never meet.
type TenantMetricsDeps struct {
	Reader store.MetricsReader // required
	// Alerts stores alert rules; nil: /metrics/alerts is not registered.
	Alerts store.AlertRuleStore
	// Prices prices tokens (gateway.Router); nil: gateway.DefaultPricePer1K for every model.
	Prices ModelPricer
}

func (s *Server) metricsRoutes(e *echo.Echo) {
	e.GET("/metrics/cost", s.getMetricsCost)
	e.GET("/metrics/search-cache", s.getMetricsSearchCache)
	e.GET("/metrics/tools/execution", s.getMetricsTools)
	e.GET("/metrics/slis", s.getMetricsSLIs)
	e.GET("/metrics/anomalies", s.getMetricsAnomalies)
	e.GET("/metrics/overview", s.getMetricsOverview)
	if s.analytics.HasAlerts() {
		e.GET("/metrics/alerts", s.getAlerts)
		e.POST("/metrics/alerts", s.postAlert)
		e.DELETE("/metrics/alerts", s.deleteAlert)
		e.DELETE("/metrics/alerts/:id", s.deleteAlert)
	}
}

// newAnalytics builds the store's analytics over d; a model's price is the routing table's (the
// price its model_call events were recorded at), or the default for an unknown model.
func newAnalytics(d *TenantMetricsDeps, now func() time.Time) *store.Analytics {
	price := func(model string) (in, out float64) {
		if d.Prices == nil {
			return gateway.DefaultPricePer1K, gateway.DefaultPricePer1K
		}
		info, err := d.Prices.Describe(model)
		if err != nil {
			return gateway.DefaultPricePer1K, gateway.DefaultPricePer1K
		}
		return info.PricePer1KIn, info.PricePer1KOut
	}
	return store.NewAnalytics(d.Reader, d.Alerts, price, now)
}

// analyticsError maps the analytics' errors: a refusal of client input is 400 with its message,
// anything else means the read model is unavailable.
func analyticsError(err error) *Error {
	if errors.Is(err, store.ErrInvalid) {
		return errInvalidRequest("%s", strings.TrimPrefix(err.Error(), store.ErrInvalid.Error()+": "))
	}
	return Wrap(http.StatusServiceUnavailable, CodeUnavailable, "metrics are unavailable, retry shortly", err)
}

func (s *Server) window(c echo.Context) (store.Window, error) {
	w, err := s.analytics.WindowOf(c.QueryParam("period"))
	if err != nil {
		return w, analyticsError(err)
	}
	return w, nil
}

// withWindow returns the window's fields plus fields, one JSON object.
func withWindow(w store.Window, fields map[string]any) map[string]any {
	out := map[string]any{"period": w.Period, "from": w.From.Format(time.RFC3339Nano), "to": w.To.Format(time.RFC3339Nano)}
	for k, v := range fields {
		out[k] = v
	}
	return out
}

// structFields turns a flat JSON-tagged struct into a map, so it can share an object with the
// window's fields.
func structFields(v any) map[string]any {
	b, _ := json.Marshal(v) // the summaries are plain numbers and maps
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

// windowed answers a GET /metrics/* route whose data is one summary over the period.
func (s *Server) windowed(c echo.Context, summary func(ctx context.Context, tenant string, w store.Window) (map[string]any, error)) error {
	w, err := s.window(c)
	if err != nil {
		return err
	}
	fields, err := summary(c.Request().Context(), tenantOf(c).TenantID, w)
	if err != nil {
		return analyticsError(err)
	}
	return ok(c, http.StatusOK, withWindow(w, fields))
}

func (s *Server) getMetricsCost(c echo.Context) error {
	return s.windowed(c, func(ctx context.Context, tenant string, w store.Window) (map[string]any, error) {
		cs, err := s.analytics.Cost(ctx, tenant, w)
		return map[string]any{"totalCost": cs.TotalCost, "totalTokens": cs.TotalTokens, "totalRequests": cs.TotalRequests, "byModel": cs.ByModel}, err
	})
}

func (s *Server) getMetricsSearchCache(c echo.Context) error {
	return s.windowed(c, func(ctx context.Context, tenant string, w store.Window) (map[string]any, error) {
		v, err := s.analytics.SearchCache(ctx, tenant, w)
		return structFields(v), err
	})
}

func (s *Server) getMetricsTools(c echo.Context) error {
	return s.windowed(c, func(ctx context.Context, tenant string, w store.Window) (map[string]any, error) {
		v, err := s.analytics.Tools(ctx, tenant, w)
		return structFields(v), err
	})
}

func (s *Server) getMetricsSLIs(c echo.Context) error {
	return s.windowed(c, func(ctx context.Context, tenant string, w store.Window) (map[string]any, error) {
		v, err := s.analytics.SLIs(ctx, tenant, w)
		return structFields(v), err
	})
}

func (s *Server) getMetricsAnomalies(c echo.Context) error {
	return s.windowed(c, func(ctx context.Context, tenant string, w store.Window) (map[string]any, error) {
		rep, err := s.analytics.Anomalies(ctx, tenant, w)
		return map[string]any{
			"bucket": "1h", "historyHours": store.AnomalyHistory, "minHistoryPoints": store.AnomalyMinHistory, "sigmas": store.AnomalySigmas,
			"hours": rep.Hours, "metrics": rep.Metrics, "anomalousMetrics": rep.Anomalous, "anomalies": rep.Anomalies,
		}, err
	})
}

func (s *Server) getAlerts(c echo.Context) error {
	ctx := c.Request().Context()
	tenant := tenantOf(c).TenantID
	rules, err := s.analytics.Rules(ctx, tenant)
	if err != nil {
		return analyticsError(err)
	}
	ev, err := s.analytics.Evaluate(ctx, tenant, rules)
	if err != nil {
		return analyticsError(err)
	}
	return ok(c, http.StatusOK, map[string]any{
		"rules": ev, "firing": store.FiringCount(ev), "evaluatedAt": s.now().UTC().Format(time.RFC3339Nano),
		"metrics": store.AlertMetrics,
	})
}

func (s *Server) postAlert(c echo.Context) error {
	var req store.AlertRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	rule, err := req.Validate()
	if err != nil {
		return analyticsError(err)
	}
	ev, err := s.analytics.AddRule(c.Request().Context(), tenantOf(c).TenantID, rule)
	if err != nil {
		return analyticsError(err)
	}
	return ok(c, http.StatusCreated, ev)
}

// deleteAlert is DELETE /metrics/alerts/:id or DELETE /metrics/alerts?id=.
func (s *Server) deleteAlert(c echo.Context) error {
	id := c.Param("id")
	if id == "" {
		id = c.QueryParam("id")
	}
	if id == "" {
		return errInvalidRequest("id: required (DELETE /metrics/alerts/:id or ?id=)")
	}
	err := s.analytics.DeleteRule(c.Request().Context(), tenantOf(c).TenantID, id)
	if errors.Is(err, store.ErrNotFound) {
		return NewError(http.StatusNotFound, CodeNotFound, "no alert rule with this id")
	}
	if err != nil {
		return analyticsError(err)
	}
	return ok(c, http.StatusOK, map[string]any{"id": id, "deleted": true})
}

func (s *Server) getMetricsOverview(c echo.Context) error {
	w, err := s.window(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	tenant := tenantOf(c).TenantID
	a := s.analytics
	cs, err := a.Cost(ctx, tenant, w)
	if err != nil {
		return analyticsError(err)
	}
	sc, err := a.SearchCache(ctx, tenant, w)
	if err != nil {
		return analyticsError(err)
	}
	ts, err := a.Tools(ctx, tenant, w)
	if err != nil {
		return analyticsError(err)
	}
	sl, err := a.SLIs(ctx, tenant, w)
	if err != nil {
		return analyticsError(err)
	}
	an, err := a.Anomalies(ctx, tenant, w)
	if err != nil {
		return analyticsError(err)
	}
	out := withWindow(w, map[string]any{
		"cost":        map[string]any{"totalCost": cs.TotalCost, "totalTokens": cs.TotalTokens, "totalRequests": cs.TotalRequests},
		"searchCache": sc,
		"tools": map[string]any{
			"totalExecutions": ts.TotalExecutions, "successCount": ts.SuccessCount, "errorCount": ts.ErrorCount,
			"errorRate": ts.ErrorRate, "avgDurationMs": ts.AvgDurationMs,
		},
		"slis":      sl,
		"anomalies": map[string]any{"count": len(an.Anomalies), "metrics": an.Anomalous},
	})
	if a.HasAlerts() {
		rules, err := a.Rules(ctx, tenant)
		if err != nil {
			return analyticsError(err)
		}
		ev, err := a.Evaluate(ctx, tenant, rules)
		if err != nil {
			return analyticsError(err)
		}
		firing := []string{}
		for _, r := range ev {
			if r.Firing {
				firing = append(firing, r.ID)
			}
		}
		out["alerts"] = map[string]any{"rules": len(ev), "firing": len(firing), "firingIds": firing}
	}
	return ok(c, http.StatusOK, out)
}

// recordSearch appends the search event GET /metrics/search-cache reads: cache is
// store.SearchCacheHit, SearchCacheMiss or SearchCacheOff; failed, when not nil, is the answer the
// client got. The append runs in the background (metering.Meter.Record), so it never delays the
// answer; call it before the response is written.
func (s *Server) recordSearch(c echo.Context, cache string, started time.Time, failed *Error) {
	ev := store.Event{
		Kind: store.KindSearch, TenantID: tenantOf(c).TenantID, TraceID: traceID(c), Subject: "search",
		LatencyMs: time.Since(started).Milliseconds(), Outcome: "ok", Detail: map[string]any{"cache": cache},
	}
	if failed != nil {
		ev.Outcome, ev.ErrorCode = "error", failed.Code
	}
	s.recordEvent(c.Request().Context(), ev)
}
