package config

import (
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// AnyOrigin in allowedOrigins allows every origin; the API then answers CORS with
// Access-Control-Allow-Origin: * and never with credentials.
const AnyOrigin = "*"

// origins normalizes allowedOrigins to the form browsers send in the Origin header:
// scheme://host[:port], lower case, without a default port. "*" must stand alone.
func (p *parser) origins(in []string) []string {
	var out []string
	for i, o := range in {
		path := "allowedOrigins[" + strconv.Itoa(i) + "]"
		if o == AnyOrigin {
			if len(in) > 1 {
				p.fail(path, `"*" must be the only entry: it already allows every origin`)
			}
			return []string{AnyOrigin}
		}
		n, ok := NormalizeOrigin(o)
		if !ok {
			p.fail(path, "must be an origin like https://app.example.com (scheme, host, optional port; no path) (got %q)", truncate(o))
			continue
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// NormalizeOrigin returns an http(s) origin in canonical form, ok=false for anything else (a path,
// a query, user info, another scheme, "null").
func NormalizeOrigin(o string) (string, bool) {
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(o, "?") {
		return "", false
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if (u.Scheme == "http" && port == "80") || (u.Scheme == "https" && port == "443") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	return u.Scheme + "://" + host, true
}

// AllowsOrigin reports whether a browser page from origin may call the tenant's API, and whether
// that is by the wildcard (which never comes with credentials).
func (c *TenantConfig) AllowsOrigin(origin string) (allowed, wildcard bool) {
	if len(c.AllowedOrigins) == 0 || origin == "" {
		return false, false
	}
	if c.AllowedOrigins[0] == AnyOrigin {
		return true, true
	}
	n, ok := NormalizeOrigin(origin)
	return ok && slices.Contains(c.AllowedOrigins, n), false
}
