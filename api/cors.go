package api

import (
	"net/http"
	"regexp"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/crispy-enigma/crispy/config"
)

// CORS per tenant (config allowedOrigins). A preflight carries neither the API key nor custom
// headers, so it is answered before authentication: for the tenant its host names, else for any
// tenant that allows the origin. The actual request is then answered with CORS headers only when
// its own tenant allows the origin, so the browser hands the answer to no other tenant's page. An
// explicit origin is echoed with credentials allowed; "*" answers * and never allows credentials.

// corsMaxAge lets browsers cache a preflight for ten minutes.
const corsMaxAge = "600"

// corsExposed are the response headers a page may read.
const corsExposed = "x-trace-id, x-request-id, x-model-id, x-ratelimit-limit, x-ratelimit-remaining, x-ratelimit-reset, " +
	"retry-after, x-tokens-in, x-tokens-out, x-tokens-total, x-ai-latency-ms"

// requestHeadersPattern is what a preflight may ask for: header names, comma separated (and at
// most maxRequestHeaders bytes).
var requestHeadersPattern = regexp.MustCompile(`^[A-Za-z0-9!#$%&'*+.^_|~ ,-]*$`)

const maxRequestHeaders = 1024

func (s *Server) cors(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		origin := req.Header.Get("Origin")
		if origin == "" {
			return next(c)
		}
		h := c.Response().Header()
		h.Add("Vary", "Origin")
		if req.Method == http.MethodOptions && req.Header.Get("Access-Control-Request-Method") != "" {
			return s.preflight(c, origin)
		}
		c.Response().Before(func() {
			st := state(c)
			if st == nil || st.tenant == nil {
				return
			}
			if allowed, wildcard := st.tenant.AllowsOrigin(origin); allowed {
				setAllowOrigin(h, origin, wildcard)
				h.Set("Access-Control-Expose-Headers", corsExposed)
			}
		})
		return next(c)
	}
}

// preflight answers an OPTIONS preflight: 204, with the CORS headers when some tenant the request
// may be for allows the origin, else without them (the browser then refuses the request).
func (s *Server) preflight(c echo.Context, origin string) error {
	req := c.Request()
	h := c.Response().Header()
	h.Add("Vary", "Access-Control-Request-Method")
	h.Add("Vary", "Access-Control-Request-Headers")
	ix := s.tenants.Load()
	candidates := ix.All()
	if res := ix.Resolve(config.ResolveInput{Host: req.Host}); res.TenantID != "" {
		if t, ok := ix.ByID(res.TenantID); ok {
			candidates = []*config.TenantConfig{t}
		}
	}
	allowed, wildcard := false, true
	for _, t := range candidates {
		if a, w := t.AllowsOrigin(origin); a {
			// An explicit listing wins over a wildcard: it is the one that allows credentials.
			allowed, wildcard = true, wildcard && w
		}
	}
	if !allowed {
		return c.NoContent(http.StatusNoContent)
	}
	setAllowOrigin(h, origin, wildcard)
	h.Set("Access-Control-Allow-Methods", "GET, HEAD, POST, DELETE, OPTIONS")
	if asked := req.Header.Get("Access-Control-Request-Headers"); asked != "" && len(asked) <= maxRequestHeaders && requestHeadersPattern.MatchString(asked) {
		h.Set("Access-Control-Allow-Headers", strings.ToLower(asked))
	}
	h.Set("Access-Control-Max-Age", corsMaxAge)
	return c.NoContent(http.StatusNoContent)
}

func setAllowOrigin(h http.Header, origin string, wildcard bool) {
	if wildcard {
		h.Set("Access-Control-Allow-Origin", "*")
		return
	}
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Credentials", "true")
}
