package config

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Index answers the per-request questions about tenants in O(1): which tenant a request is for
// (Resolve) and whether it may reach it (Authenticate). It is built once from a complete set of
// configs and never changes; a reload builds a new Index and swaps it in (atomic.Pointer).
// The configs it returns are shared and must be treated as read-only.
type Index struct {
	all      []*TenantConfig
	byID     map[string]*TenantConfig
	hosts    map[string]string        // normalized host → tenant ID
	keys     map[[32]byte]keyOwner    // API key digest → owner
	own      map[string][]apiKeyEntry // tenant ID → its digests, compared in constant time
	warnings []string
}

type keyOwner struct {
	tenantID string
	keyID    string
}

type apiKeyEntry struct {
	digest [32]byte
	keyID  string
}

// Sources of a Resolution (docs/api.md "Tenant resolution").
const (
	SourceHeader = "header"
	SourceHost   = "host"
	SourceAPIKey = "apiKey"
)

// ResolveInput is what tenant resolution looks at in a request.
type ResolveInput struct {
	TenantHeader string // x-tenant-id
	Host         string // the request's Host, port allowed
	APIKey       string // from APIKeyFromHeaders
}

// Resolution is the tenant a request names and how. TenantID is empty when nothing resolved
// (→ 400 tenant_required); a non-empty TenantID that ByID does not know → 404 tenant_unknown.
type Resolution struct {
	TenantID string
	Source   string // SourceHeader, SourceHost, SourceAPIKey or "" when nothing resolved
}

// AuthResult is the outcome of Authenticate. The zero value denies.
type AuthResult int

const (
	AuthUnauthorized AuthResult = iota // 401 unauthorized
	AuthForbidden                      // 403 forbidden: a valid key of another tenant
	AuthOK
)

func (r AuthResult) String() string {
	switch r {
	case AuthOK:
		return "ok"
	case AuthForbidden:
		return "forbidden"
	default:
		return "unauthorized"
	}
}

// Auth is the outcome of Authenticate. KeyID (the first 12 hex digits of the key's digest)
// identifies the key in logs and audit records without revealing it. Reason is for the log, not
// for the client.
type Auth struct {
	Result AuthResult
	KeyID  string
	Reason string
}

// NewIndex indexes cfgs (as returned by ParseTenantConfig or LoadTenants). It refuses a
// tenant ID configured twice, and a host or API key claimed by two tenants, naming both:
// either would make resolution depend on load order.
func NewIndex(cfgs []*TenantConfig) (*Index, error) {
	ix := &Index{
		byID:  make(map[string]*TenantConfig, len(cfgs)),
		hosts: make(map[string]string),
		keys:  make(map[[32]byte]keyOwner),
		own:   make(map[string][]apiKeyEntry, len(cfgs)),
	}
	var errs []error
	for i, c := range cfgs {
		if c == nil {
			errs = append(errs, fmt.Errorf("tenant config %d is nil", i))
			continue
		}
		if _, dup := ix.byID[c.TenantID]; dup {
			errs = append(errs, fmt.Errorf("tenant %q is configured twice", c.TenantID))
			continue
		}
		ix.byID[c.TenantID] = c
		ix.all = append(ix.all, c)
		for _, h := range c.AllowedHosts {
			n, msg := normalizeConfigHost(h)
			if msg != "" {
				errs = append(errs, fmt.Errorf("tenant %q: allowedHosts: %s (got %q)", c.TenantID, msg, h))
				continue
			}
			if other, taken := ix.hosts[n]; taken && other != c.TenantID {
				errs = append(errs, fmt.Errorf("host %q is claimed by tenants %q and %q", n, other, c.TenantID))
				continue
			}
			ix.hosts[n] = c.TenantID
		}
		entries, err := parseDigests(c)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, e := range entries {
			if other, taken := ix.keys[e.digest]; taken && other.tenantID != c.TenantID {
				errs = append(errs, fmt.Errorf("API key %s is claimed by tenants %q and %q", e.keyID, other.tenantID, c.TenantID))
				continue
			}
			ix.keys[e.digest] = keyOwner{tenantID: c.TenantID, keyID: e.keyID}
		}
		ix.own[c.TenantID] = entries
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	slices.SortFunc(ix.all, func(a, b *TenantConfig) int { return strings.Compare(a.TenantID, b.TenantID) })
	for _, c := range ix.all {
		switch {
		case len(c.APIKeys) == 0 && !c.Public:
			ix.warnings = append(ix.warnings, fmt.Sprintf("tenant %q has no apiKeys and is not public: every request gets 401", c.TenantID))
		case len(c.APIKeys) > 0 && c.Public:
			ix.warnings = append(ix.warnings, fmt.Sprintf("tenant %q is public but has apiKeys: one of its keys is still required", c.TenantID))
		}
	}
	return ix, nil
}

// parseDigests decodes a config's "sha256:<hex>" entries.
func parseDigests(c *TenantConfig) ([]apiKeyEntry, error) {
	entries := make([]apiKeyEntry, 0, len(c.APIKeys))
	for i, k := range c.APIKeys {
		h, ok := strings.CutPrefix(k, digestPrefix)
		var e apiKeyEntry
		if n, err := hex.Decode(e.digest[:], []byte(h)); !ok || err != nil || n != len(e.digest) || len(h) != 2*len(e.digest) {
			return nil, fmt.Errorf("tenant %q: apiKeys[%d] is not a %q digest (load configs with ParseTenantConfig, which hashes plaintext keys)", c.TenantID, i, digestPrefix)
		}
		e.keyID = keyID(e.digest)
		entries = append(entries, e)
	}
	return entries, nil
}

func keyID(digest [32]byte) string { return hex.EncodeToString(digest[:6]) }

// ByID returns the tenant's config.
func (ix *Index) ByID(id string) (*TenantConfig, bool) {
	c, ok := ix.byID[id]
	return c, ok
}

// All returns every tenant, sorted by ID.
func (ix *Index) All() []*TenantConfig { return slices.Clone(ix.all) }

// Len is the number of tenants.
func (ix *Index) Len() int { return len(ix.all) }

// Warnings lists configurations that load but are probably not what the operator meant; the
// server logs them at start.
func (ix *Index) Warnings() []string { return slices.Clone(ix.warnings) }

// Resolve names the tenant a request is for (docs/api.md "Tenant resolution"): a non-empty
// x-tenant-id (trimmed) wins even when no such tenant exists — a bogus header beats a valid host
// and ends in 404 — then the host (exact match in allowedHosts, port ignored, case-insensitive),
// then the API key.
func (ix *Index) Resolve(in ResolveInput) Resolution {
	if id := strings.TrimSpace(in.TenantHeader); id != "" {
		return Resolution{TenantID: id, Source: SourceHeader}
	}
	if h := requestHost(in.Host); h != "" {
		if id, ok := ix.hosts[h]; ok {
			return Resolution{TenantID: id, Source: SourceHost}
		}
	}
	if in.APIKey != "" {
		if o, ok := ix.keys[sha256.Sum256([]byte(in.APIKey))]; ok {
			return Resolution{TenantID: o.tenantID, Source: SourceAPIKey}
		}
	}
	return Resolution{}
}

// requestHost reduces a Host header to the form allowedHosts are stored in: no port, lower
// case, no trailing dot, IPv6 literals without brackets and canonical. It allocates only for
// upper-case hosts and IPv6 literals.
func requestHost(h string) string {
	h = strings.TrimSpace(h)
	if h == "" {
		return ""
	}
	if inner, ok := strings.CutPrefix(h, "["); ok { // [v6] or [v6]:port
		end := strings.IndexByte(inner, ']')
		if end < 0 {
			return ""
		}
		return canonicalIPv6(inner[:end])
	}
	switch strings.Count(h, ":") {
	case 0:
	case 1:
		h = h[:strings.IndexByte(h, ':')]
	default: // a bare IPv6 literal (not valid in Host, but seen behind some proxies)
		return canonicalIPv6(h)
	}
	h = strings.TrimSuffix(h, ".")
	for i := range len(h) {
		if c := h[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}

func canonicalIPv6(s string) string {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return ""
	}
	return a.String()
}

// APIKeyFromHeaders returns the presented API key: x-api-key, else the token of an
// "Authorization: Bearer <key>" header (scheme case-insensitive), else "".
func APIKeyFromHeaders(xAPIKey, authorization string) string {
	if k := strings.TrimSpace(xAPIKey); k != "" {
		return k
	}
	scheme, token, ok := strings.Cut(strings.TrimSpace(authorization), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// Authenticate decides whether presentedKey may reach cfg (docs/api.md "Authentication"):
// a tenant with keys needs one of them (missing or wrong → Unauthorized, another tenant's valid
// key → Forbidden); a tenant without keys is open only when it is public. The presented key's
// digest is compared with every one of the tenant's digests in constant time.
func (ix *Index) Authenticate(cfg *TenantConfig, presentedKey string) Auth {
	own := ix.own[cfg.TenantID]
	if ix.byID[cfg.TenantID] != cfg {
		// A config from outside this index (e.g. mid-reload): use its own keys.
		var err error
		if own, err = parseDigests(cfg); err != nil {
			return Auth{Result: AuthUnauthorized, Reason: err.Error()}
		}
	}
	if len(own) == 0 {
		if cfg.Public {
			// Anyone may call a public tenant, but not with another tenant's key: that client
			// meant the other tenant, and answering as this one would hide its mistake.
			if presentedKey != "" {
				if o, ok := ix.keys[sha256.Sum256([]byte(presentedKey))]; ok && o.tenantID != cfg.TenantID {
					return Auth{Result: AuthForbidden, KeyID: o.keyID, Reason: "API key belongs to another tenant"}
				}
			}
			return Auth{Result: AuthOK}
		}
		return Auth{Result: AuthUnauthorized, Reason: "tenant has no apiKeys and is not public"}
	}
	if presentedKey == "" {
		return Auth{Result: AuthUnauthorized, Reason: "missing API key"}
	}
	sum := sha256.Sum256([]byte(presentedKey))
	match := -1
	for i := range own {
		// No early exit: the time taken does not depend on which key matched.
		if subtle.ConstantTimeCompare(sum[:], own[i].digest[:]) == 1 {
			match = i
		}
	}
	if match >= 0 {
		return Auth{Result: AuthOK, KeyID: own[match].keyID}
	}
	if o, ok := ix.keys[sum]; ok && o.tenantID != cfg.TenantID {
		return Auth{Result: AuthForbidden, KeyID: o.keyID, Reason: "API key belongs to another tenant"}
	}
	return Auth{Result: AuthUnauthorized, Reason: "invalid API key"}
}
