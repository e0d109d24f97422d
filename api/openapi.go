package api

import (
	_ "embed"
	"net/http"

	"github.com/labstack/echo/v4"
)

// openAPIDoc is the OpenAPI 3.1 description of every route of both listeners. docs/api.md says
// the same in prose; openapi_test.go checks that every registered route is in it and that real
// answers validate against it.
//
//go:embed openapi.json
var openAPIDoc []byte

// OpenAPIPath is where the tenant listener serves openAPIDoc.
const OpenAPIPath = "/openapi.json"

// withPublicRoutes registers the routes that need no tenant (GET /openapi.json) on e and returns
// resolve wrapped so that those routes skip it: a client must be able to read the description
// before it knows which tenant, host or key to use. Every other route still runs resolve.
func withPublicRoutes(e *echo.Echo, resolve echo.MiddlewareFunc) echo.MiddlewareFunc {
	e.GET(OpenAPIPath, func(c echo.Context) error {
		return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, openAPIDoc)
	})
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		resolved := resolve(next)
		return func(c echo.Context) error {
			if c.Path() == OpenAPIPath && c.Request().Method == http.MethodGet {
				return next(c)
			}
			return resolved(c)
		}
	}
}
