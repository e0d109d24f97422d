package config

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Defaults of the optional tenant settings (the README's "Tenant config").
const (
	DefaultWindowSec             = 60
	DefaultSessionRetentionDays  = 30
	DefaultMaxMessagesPerSession = 1000
	// DefaultTenantRateFactor sets the tenant-wide rate ceiling when rateLimit.tenantPerMinute
	// (tenantBurst) is absent: this many times the per-user perMinute (burst). Ten users at their
	// full limit at once still pass; one client cycling through user IDs gets no more than that.
	DefaultTenantRateFactor = 10
	// Default knowledge-base quota of a tenant without "quota" (or with some fields absent).
	DefaultQuotaDocuments   = 10_000
	DefaultQuotaChunks      = 200_000
	DefaultQuotaStoredBytes = 512 << 20
)

// FieldError is one problem in a tenant config file, located by the file and the JSON field
// path ("rateLimit.perMinute", "apiKeys[2]"; empty for the document as a whole).
type FieldError struct {
	File string
	Path string
	Msg  string
}

func (e *FieldError) Error() string {
	if e.Path == "" {
		return e.File + ": " + e.Msg
	}
	return e.File + ": " + e.Path + ": " + e.Msg
}

var (
	namespacePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	hostPattern      = regexp.MustCompile(`^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$`)
)

// ParseTenantConfig decodes and validates one tenant.config.json. Decoding is strict: unknown
// fields, wrong JSON types and trailing data are refused. Defaults are applied, allowed hosts
// are normalized (lower case) and plaintext API keys are replaced by their digests (with a
// warning naming the tenant, never the key). Every problem in the file is reported, each as a
// *FieldError naming file and field path, joined with errors.Join.
func ParseTenantConfig(file string, data []byte) (*TenantConfig, []string, error) {
	cfg, warnings, errs := parseTenant(file, data)
	if len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	return cfg, warnings, nil
}

// parseTenant is ParseTenantConfig returning, beside every error, the config as far as it could
// be decoded (nil when the document is not a JSON object), for the checks that span files.
func parseTenant(file string, data []byte) (*TenantConfig, []string, []error) {
	p := parser{file: file}
	cfg := p.parse(data)
	return cfg, p.warnings, p.errs
}

type parser struct {
	file     string
	errs     []error
	warnings []string
}

func (p *parser) fail(path, format string, args ...any) {
	p.errs = append(p.errs, &FieldError{File: p.file, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (p *parser) warn(path, format string, args ...any) {
	p.warnings = append(p.warnings, (&FieldError{File: p.file, Path: path, Msg: fmt.Sprintf(format, args...)}).Error())
}

func (p *parser) parse(data []byte) *TenantConfig {
	// First pass: a generic tree, to report every unknown field, wrong type and missing field
	// with its path (encoding/json stops at the first and names neither unknown fields' paths
	// nor missing fields).
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tree, err := p.readValue(dec, "", 0)
	if err != nil {
		p.fail("", "invalid JSON: %s", describeJSONError(data, err))
		return nil
	}
	if _, err := dec.Token(); err != io.EOF {
		p.fail("", "unexpected data after the JSON object at byte %d", dec.InputOffset())
		return nil
	}
	root, ok := tree.(map[string]any)
	if !ok {
		p.fail("", "must be a JSON object (got %s)", jsonKind(tree))
		return nil
	}
	// Every check runs, whatever failed before it, so that one run reports every problem: a
	// file fixed after the first report must not fail again on what the first hid.
	p.walk("", tree, reflect.TypeFor[TenantConfig](), false)
	structural := len(p.errs) // duplicate fields, unknown fields, wrong types, missing fields

	// Second pass: the typed decode, strict again so that the two passes cannot disagree.
	var cfg TenantConfig
	dec = json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		if structural == 0 {
			p.fail("", "invalid tenant config: %v", err)
			return nil
		}
		// The first pass named the problem. Decode what is well-typed (encoding/json skips the
		// fields of the wrong type and unknown fields are ignored) to validate the rest.
		cfg = TenantConfig{}
		_ = json.Unmarshal(data, &cfg)
	}
	failed := append([]error(nil), p.errs...)
	p.validate(&cfg, root)
	// A field the first pass refused reads as its zero value here: drop the second complaint
	// about it ("must be a positive integer (got 0)" after "must be an integer (got string)").
	kept := p.errs[:len(failed)]
	for _, err := range p.errs[len(failed):] {
		if !coveredBy(err, failed) {
			kept = append(kept, err)
		}
	}
	p.errs = kept
	return &cfg
}

// coveredBy reports whether err is about a field (or a part or parent of one) that an error
// of failed already names.
func coveredBy(err error, failed []error) bool {
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Path == "" {
		return false
	}
	related := func(a, b string) bool {
		if len(a) < len(b) {
			a, b = b, a
		}
		return a == b || (strings.HasPrefix(a, b) && (a[len(b)] == '.' || a[len(b)] == '['))
	}
	for _, f := range failed {
		var other *FieldError
		if errors.As(f, &other) && other.Path != "" && related(fe.Path, other.Path) {
			return true
		}
	}
	return false
}

// maxDepth bounds nesting; the schema is three levels deep.
const maxDepth = 32

// readValue reads one JSON value into a generic tree (objects as map[string]any, numbers as
// json.Number), reporting duplicate fields: encoding/json silently merges duplicate objects
// into one struct, so a value the first pass never saw could slip past validation.
func (p *parser) readValue(dec *json.Decoder, path string, depth int) (any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("nested deeper than %d levels at %q", maxDepth, path)
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	delim, ok := tok.(json.Delim)
	if !ok {
		return tok, nil // string, json.Number, bool or nil
	}
	switch delim {
	case '{':
		obj := make(map[string]any)
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, err
			}
			key, _ := kt.(string) // the decoder guarantees a string key here
			v, err := p.readValue(dec, joinPath(path, key), depth+1)
			if err != nil {
				return nil, err
			}
			if _, dup := obj[key]; dup {
				p.fail(joinPath(path, key), "duplicate field")
			}
			obj[key] = v
		}
		_, err = dec.Token() // '}'
		return obj, err
	case '[':
		arr := []any{}
		for dec.More() {
			v, err := p.readValue(dec, path+"["+strconv.Itoa(len(arr))+"]", depth+1)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		_, err = dec.Token() // ']'
		return arr, err
	default:
		return nil, fmt.Errorf("unexpected %q", delim)
	}
}

// walk checks v against the Go type t, driven by the json tags: a field without omitempty is
// required, with omitempty it is optional and may be null.
func (p *parser) walk(path string, v any, t reflect.Type, optional bool) {
	if v == nil {
		if !optional {
			p.fail(path, "must be %s (got null)", wantKind(t))
		}
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		p.walk(path, v, t.Elem(), optional)
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			p.fail(path, "must be %s (got %s)", wantKind(t), jsonKind(v))
			return
		}
		fields := make(map[string]reflect.StructField, t.NumField())
		for i := range t.NumField() {
			f := t.Field(i)
			name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			fields[name] = f
			if _, present := obj[name]; !present && !strings.Contains(opts, "omitempty") {
				p.fail(joinPath(path, name), "required field is missing")
			}
		}
		for _, key := range sortedKeys(obj) {
			f, known := fields[key]
			if !known {
				p.fail(joinPath(path, key), "unknown field (tenant configs are decoded strictly; see README.md, Tenant config)")
				continue
			}
			_, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			p.walk(joinPath(path, key), obj[key], f.Type, strings.Contains(opts, "omitempty"))
		}
	case reflect.Map:
		obj, ok := v.(map[string]any)
		if !ok {
			p.fail(path, "must be %s (got %s)", wantKind(t), jsonKind(v))
			return
		}
		for _, key := range sortedKeys(obj) {
			p.walk(joinPath(path, key), obj[key], t.Elem(), false)
		}
	case reflect.Slice:
		arr, ok := v.([]any)
		if !ok {
			p.fail(path, "must be %s (got %s)", wantKind(t), jsonKind(v))
			return
		}
		for i, e := range arr {
			p.walk(path+"["+strconv.Itoa(i)+"]", e, t.Elem(), false)
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			p.fail(path, "must be a string (got %s)", jsonKind(v))
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			p.fail(path, "must be a boolean (got %s)", jsonKind(v))
		}
	case reflect.Int, reflect.Int64:
		n, ok := v.(json.Number)
		if !ok {
			p.fail(path, "must be an integer (got %s)", jsonKind(v))
			return
		}
		if _, err := strconv.ParseInt(n.String(), 10, t.Bits()); err != nil {
			p.fail(path, "must be an integer within %d bits (got %s)", t.Bits(), truncate(n.String()))
		}
	default:
		// The schema has no other kinds; a new field type needs a case here.
		p.fail(path, "unsupported field type %s", t)
	}
}

// validate applies defaults and the semantic rules; root is the generic tree, to tell an
// absent optional number from an explicit 0 (which is refused, not defaulted).
func (p *parser) validate(c *TenantConfig, root map[string]any) {
	present := func(obj any, key string) bool {
		m, _ := obj.(map[string]any)
		v, ok := m[key]
		return ok && v != nil
	}

	switch {
	case c.TenantID == "":
		p.fail("tenantId", "must not be empty")
	case !ValidTenantID(c.TenantID):
		p.fail("tenantId", "must match ^[a-z0-9-]{1,63}$ (got %q): tenant IDs are used in NATS subjects, KV keys and file paths; the original allowed more", truncate(c.TenantID))
	}
	p.nonEmpty("accountId", c.AccountID)
	p.nonEmpty("aiGatewayId", c.AIGatewayID)
	p.nonEmpty("aiModels.chat", c.AIModels.Chat)
	p.nonEmpty("aiModels.embeddings", c.AIModels.Embeddings)
	aiModels := root["aiModels"]
	if present(aiModels, "fallbackChat") {
		p.nonEmpty("aiModels.fallbackChat", c.AIModels.FallbackChat)
	}
	if present(aiModels, "tts") {
		p.nonEmpty("aiModels.tts", c.AIModels.TTS)
	}
	if !namespacePattern.MatchString(c.VectorizeNamespace) {
		p.fail("vectorizeNamespace", "must be 1-64 letters, digits, '-' or '_' (got %q): it names the tenant's vector partition", truncate(c.VectorizeNamespace))
	}

	// Rate limit.
	rl := root["rateLimit"]
	p.positive("rateLimit.perMinute", int64(c.RateLimit.PerMinute))
	p.positive("rateLimit.burst", int64(c.RateLimit.Burst))
	if present(rl, "windowSec") {
		p.positive("rateLimit.windowSec", int64(c.RateLimit.WindowSec))
	} else {
		c.RateLimit.WindowSec = DefaultWindowSec
	}
	if present(rl, "burstWindowSec") {
		p.positive("rateLimit.burstWindowSec", int64(c.RateLimit.BurstWindowSec))
	} else {
		c.RateLimit.BurstWindowSec = max(1, c.RateLimit.WindowSec/6)
	}
	if c.RateLimit.WindowSec > 0 && c.RateLimit.BurstWindowSec > c.RateLimit.WindowSec {
		p.fail("rateLimit.burstWindowSec", "must not exceed rateLimit.windowSec (got %d > %d)", c.RateLimit.BurstWindowSec, c.RateLimit.WindowSec)
	}
	p.tenantRate(c, rl, present)

	// Feature flags, hosts, keys, models.
	for _, name := range sortedKeys(c.FeatureFlags) {
		if strings.TrimSpace(name) == "" {
			p.fail("featureFlags", "flag names must not be empty")
		}
	}
	c.AllowedHosts = p.hosts(c.AllowedHosts)
	c.AllowedOrigins = p.origins(c.AllowedOrigins) // origins.go
	c.APIKeys = p.apiKeys(c.TenantID, c.APIKeys)
	for i, m := range c.AllowedModels {
		p.nonEmpty("allowedModels["+strconv.Itoa(i)+"]", m)
	}
	if len(c.AllowedModels) == 0 {
		c.AllowedModels = nil // absent and [] mean the same; one form round-trips
		if c.Flag("modelAllowList") {
			p.warn("featureFlags.modelAllowList", "tenant %q enables the model allow-list with no allowedModels: every chat request gets 403", c.TenantID)
		}
	}

	// Budgets, retention, cache.
	if tb := c.TokenBudget; tb != nil {
		budget := root["tokenBudget"]
		if present(budget, "daily") {
			p.positive("tokenBudget.daily", tb.Daily)
		}
		if present(budget, "monthly") {
			p.positive("tokenBudget.monthly", tb.Monthly)
		}
		if tb.Daily > 0 && tb.Monthly > 0 && tb.Daily > tb.Monthly {
			p.warn("tokenBudget.daily", "tenant %q has a daily budget (%d) above its monthly budget (%d)", c.TenantID, tb.Daily, tb.Monthly)
		}
	}
	if present(root, "sessionRetentionDays") {
		p.positive("sessionRetentionDays", int64(c.SessionRetentionDays))
	} else {
		c.SessionRetentionDays = DefaultSessionRetentionDays
	}
	if present(root, "maxMessagesPerSession") {
		p.positive("maxMessagesPerSession", int64(c.MaxMessagesPerSession))
	} else {
		c.MaxMessagesPerSession = DefaultMaxMessagesPerSession
	}
	if c.Cache != nil {
		p.positive("cache.ttlSeconds", int64(c.Cache.TTLSeconds))
	}
	p.quota(c, root["quota"], present)
}

// tenantRate validates the tenant-wide rate ceiling and fills in its defaults. A ceiling below
// the per-user limit is allowed (it then binds first) but is worth a warning.
func (p *parser) tenantRate(c *TenantConfig, rl any, present func(any, string) bool) {
	r := &c.RateLimit
	if present(rl, "tenantPerMinute") {
		p.positive("rateLimit.tenantPerMinute", int64(r.TenantPerMinute))
	} else {
		r.TenantPerMinute = DefaultTenantRateFactor * r.PerMinute
	}
	if present(rl, "tenantBurst") {
		p.positive("rateLimit.tenantBurst", int64(r.TenantBurst))
	} else {
		r.TenantBurst = DefaultTenantRateFactor * r.Burst
	}
	if r.TenantPerMinute > 0 && r.TenantPerMinute < r.PerMinute {
		p.warn("rateLimit.tenantPerMinute", "tenant %q has a tenant-wide ceiling (%d) below its per-user limit (%d): the ceiling binds first", c.TenantID, r.TenantPerMinute, r.PerMinute)
	}
}

// quota validates the knowledge-base quota and fills in the defaults of absent fields; a tenant
// without "quota" gets the defaults, so no tenant stores without bound.
func (p *parser) quota(c *TenantConfig, q any, present func(any, string) bool) {
	if c.Quota == nil {
		c.Quota = &Quota{}
	}
	for _, f := range []struct {
		name string
		v    *int64
		def  int64
	}{
		{"documents", &c.Quota.Documents, DefaultQuotaDocuments},
		{"chunks", &c.Quota.Chunks, DefaultQuotaChunks},
		{"storedBytes", &c.Quota.StoredBytes, DefaultQuotaStoredBytes},
	} {
		if present(q, f.name) {
			p.positive("quota."+f.name, *f.v)
		} else {
			*f.v = f.def
		}
	}
}

func (p *parser) nonEmpty(path, s string) {
	if strings.TrimSpace(s) == "" {
		p.fail(path, "must be a non-empty string")
	}
}

func (p *parser) positive(path string, n int64) {
	if n <= 0 {
		p.fail(path, "must be a positive integer (got %d)", n)
	}
}

// hosts normalizes allowedHosts for exact, case-insensitive matching: lower case, no trailing
// dot, IPv6 literals without brackets in canonical form. Duplicates are dropped.
func (p *parser) hosts(in []string) []string {
	out := make([]string, 0, len(in))
	for i, h := range in {
		path := "allowedHosts[" + strconv.Itoa(i) + "]"
		n, msg := normalizeConfigHost(h)
		if msg != "" {
			p.fail(path, "%s (got %q)", msg, truncate(h))
			continue
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

func normalizeConfigHost(h string) (string, string) {
	switch {
	case h == "":
		return "", "must not be empty"
	case strings.Contains(h, "://"):
		return "", "must be a host name without scheme"
	case strings.ContainsAny(h, "/?#"):
		return "", "must be a host name without path"
	case strings.Contains(h, "@"):
		return "", "must be a host name without user information"
	case strings.Contains(h, "*"):
		return "", "must be an exact host name (wildcards are not supported)"
	}
	h = strings.ToLower(h)
	if inner, ok := strings.CutPrefix(h, "["); ok {
		ip, ok := strings.CutSuffix(inner, "]")
		if !ok {
			return "", "must be a host name without port"
		}
		a, err := netip.ParseAddr(ip)
		if err != nil || !a.Is6() {
			return "", "must be a valid IPv6 literal"
		}
		return a.String(), ""
	}
	if a, err := netip.ParseAddr(h); err == nil {
		return a.String(), ""
	}
	if strings.Contains(h, ":") {
		return "", "must be a host name without port (the port is ignored when matching)"
	}
	h = strings.TrimSuffix(h, ".")
	if len(h) > 253 || !hostPattern.MatchString(h) {
		return "", "must be a valid host name"
	}
	return h, ""
}

// apiKeys checks the stored digests and hashes plaintext keys (the original's format).
func (p *parser) apiKeys(tenantID string, in []string) []string {
	out := make([]string, 0, len(in))
	first := make(map[string]int, len(in))
	for i, k := range in {
		path := "apiKeys[" + strconv.Itoa(i) + "]"
		var digest string
		switch {
		case k == "":
			p.fail(path, "must not be empty")
			continue
		case len(k) >= len(digestPrefix) && strings.EqualFold(k[:len(digestPrefix)], digestPrefix):
			h := strings.ToLower(k[len(digestPrefix):])
			if b, err := hex.DecodeString(h); err != nil || len(b) != 32 {
				// The value is not echoed: a malformed entry may be a mistyped secret.
				p.fail(path, "must be %q followed by 64 hex digits, or a plaintext key", digestPrefix)
				continue
			}
			digest = digestPrefix + h
		case strings.TrimSpace(k) != k:
			p.fail(path, "plaintext key must not have leading or trailing spaces")
			continue
		default:
			digest = HashAPIKey(k)
			p.warn(path, "tenant %q has a plaintext API key; it was hashed at load, store its sha256: digest instead", tenantID)
		}
		if j, dup := first[digest]; dup {
			p.fail(path, "duplicates apiKeys[%d]", j)
			continue
		}
		first[digest] = i
		out = append(out, digest)
	}
	return out
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func jsonKind(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case string:
		return "string " + strconv.Quote(truncate(v))
	case bool:
		return "boolean " + strconv.FormatBool(v)
	case json.Number:
		return "number " + truncate(v.String())
	case []any:
		return "array"
	case map[string]any:
		return "object"
	default:
		return fmt.Sprintf("%T", v)
	}
}

func wantKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Pointer:
		return wantKind(t.Elem())
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice:
		return "an array"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int64:
		return "an integer"
	default:
		return t.String()
	}
}

// truncate keeps error messages readable when a field holds a huge value.
func truncate(s string) string {
	const limit = 80
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "…"
}

// describeJSONError adds the line and column to syntax errors.
func describeJSONError(data []byte, err error) string {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		line, col := lineCol(data, syn.Offset)
		return fmt.Sprintf("line %d, column %d: %v", line, col, err)
	}
	if errors.Is(err, io.EOF) {
		return "empty document"
	}
	return err.Error()
}

func lineCol(data []byte, offset int64) (line, col int) {
	offset = min(max(offset, 0), int64(len(data)))
	before := data[:offset]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(offset) - (bytes.LastIndexByte(before, '\n') + 1)
	return line, max(col, 1)
}
