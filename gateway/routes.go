package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"
)

// Routes is the routing table file (--routes / CRISPY_ROUTES), JSON:
//
//	{"providers": [{"name": "vllm", "baseUrl": "http://10.0.0.5:8000/v1", "apiKeyEnv": "VLLM_KEY",
//	                "models": ["llama-3.1-8b", "qwen*"], "pricePer1KIn": 0.0001, "pricePer1KOut": 0.0002,
//	                "timeoutMs": 60000, "embeddings": ["bge-m3"]}],
//	 "cloudflare": {"apiTokenEnv": "CF_TOKEN", "accountId": "…"}}
//
// It is decoded strictly: an unknown field is an error naming the file and the field's path, so a typo
// never silently drops a setting. Keys are never in the file, only the names of the variables that hold
// them.
type Routes struct {
	Providers  []RouteProvider  `json:"providers"`
	Cloudflare *RouteCloudflare `json:"cloudflare,omitempty"`
}

// RouteProvider is one provider of the routing table file.
type RouteProvider struct {
	Name      string   `json:"name"`
	BaseURL   string   `json:"baseUrl"`
	APIKeyEnv string   `json:"apiKeyEnv,omitempty"`
	Models    []string `json:"models,omitempty"`
	// Prices per 1K tokens; 0 means DefaultPricePer1K.
	PricePer1KIn  float64 `json:"pricePer1KIn,omitempty"`
	PricePer1KOut float64 `json:"pricePer1KOut,omitempty"`
	// TimeoutMs bounds one call; 0 means the router's default.
	TimeoutMs int `json:"timeoutMs,omitempty"`
	// Embeddings are the embedding model IDs (or prefixes ending in "*") served on /v1/embeddings.
	Embeddings []string `json:"embeddings,omitempty"`
	// EmbeddingDimensions fixes the dimension of listed embedding models (exact IDs).
	EmbeddingDimensions map[string]int `json:"embeddingDimensions,omitempty"`
	// EmbeddingBatchSize is the most texts per embeddings request; 0 means DefaultEmbeddingBatchSize.
	EmbeddingBatchSize int `json:"embeddingBatchSize,omitempty"`
	// EmbeddingInputType sends OpenAI's input_type ("query" for search queries, "passage" for
	// documents) with every embeddings request, for models trained with that distinction (E5).
	EmbeddingInputType bool `json:"embeddingInputType,omitempty"`
}

// RouteCloudflare configures Workers AI for @cf/ models.
type RouteCloudflare struct {
	// APITokenEnv names the variable holding the API token.
	APITokenEnv string `json:"apiTokenEnv"`
	// AccountID is the account for @cf/ embeddings requested without a tenant (Router.Embedder).
	AccountID string `json:"accountId,omitempty"`
}

// LoadRoutes reads and validates a routing table file.
func LoadRoutes(path string) (Routes, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Routes{}, fmt.Errorf("routes file: %w", err)
	}
	return ParseRoutes(path, data)
}

// ParseRoutes decodes and validates a routing table; name (the file's path) prefixes every error.
func ParseRoutes(name string, data []byte) (Routes, error) {
	var rt Routes
	if err := decodeRoutes(data, &rt); err != nil {
		return Routes{}, fmt.Errorf("routes file %s: %w", name, err)
	}
	if err := rt.validate(); err != nil {
		return Routes{}, fmt.Errorf("routes file %s: %w", name, err)
	}
	return rt, nil
}

// decodeRoutes decodes strictly. encoding/json's own unknown-field error names the field but not
// where it is, so objects are walked here with a path ("providers[1].timeoutMs").
func decodeRoutes(data []byte, rt *Routes) error {
	var top map[string]json.RawMessage
	if err := unmarshalAt(data, "", &top); err != nil {
		return err
	}
	if top == nil {
		return errors.New("the top level must be an object")
	}
	if err := checkFields("", top, "providers", "cloudflare"); err != nil {
		return err
	}
	if raw, ok := top["providers"]; ok {
		var items []json.RawMessage
		if err := unmarshalAt(raw, "providers", &items); err != nil {
			return err
		}
		for i, item := range items {
			path := fmt.Sprintf("providers[%d]", i)
			var fields map[string]json.RawMessage
			if err := unmarshalAt(item, path, &fields); err != nil {
				return err
			}
			if err := checkFields(path, fields, "name", "baseUrl", "apiKeyEnv", "models", "pricePer1KIn",
				"pricePer1KOut", "timeoutMs", "embeddings", "embeddingDimensions", "embeddingBatchSize", "embeddingInputType"); err != nil {
				return err
			}
			var p RouteProvider
			if err := unmarshalFields(path, fields, &p); err != nil {
				return err
			}
			rt.Providers = append(rt.Providers, p)
		}
	}
	if raw, ok := top["cloudflare"]; ok {
		var fields map[string]json.RawMessage
		if err := unmarshalAt(raw, "cloudflare", &fields); err != nil {
			return err
		}
		if err := checkFields("cloudflare", fields, "apiTokenEnv", "accountId"); err != nil {
			return err
		}
		var cf RouteCloudflare
		if err := unmarshalFields("cloudflare", fields, &cf); err != nil {
			return err
		}
		rt.Cloudflare = &cf
	}
	return nil
}

// unmarshalAt decodes raw into v, naming path in errors and the line and column of syntax errors.
func unmarshalAt(raw []byte, path string, v any) error {
	err := json.Unmarshal(raw, v)
	if err == nil {
		return nil
	}
	where := path
	if where == "" {
		where = "top level"
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line, col := lineCol(raw, se.Offset)
		return fmt.Errorf("%s: invalid JSON at line %d, column %d: %w", where, line, col, err)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("%s: must be %s, not a JSON %s", where, jsonKind(te.Type.Kind().String()), te.Value)
	}
	return fmt.Errorf("%s: %w", where, err)
}

// unmarshalFields decodes each known field separately so that a type error names its path.
func unmarshalFields(path string, fields map[string]json.RawMessage, v any) error {
	// Each field goes through a one-field object, so the struct's json tags still do the mapping.
	for _, k := range sortedKeys(fields) {
		one, _ := json.Marshal(map[string]json.RawMessage{k: fields[k]}) // raw messages always re-encode
		if err := json.Unmarshal(one, v); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) {
				return fmt.Errorf("%s.%s: must be %s, not a JSON %s", path, k, jsonKind(te.Type.Kind().String()), te.Value)
			}
			return fmt.Errorf("%s.%s: %w", path, k, err)
		}
	}
	return nil
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "slice":
		return "an array"
	case "map", "struct":
		return "an object"
	case "float64", "float32":
		return "a number"
	case "int", "int64", "int32":
		return "an integer"
	}
	return "a " + goKind
}

// checkFields refuses keys that are not in allowed.
func checkFields(path string, fields map[string]json.RawMessage, allowed ...string) error {
	for _, k := range sortedKeys(fields) {
		ok := false
		for _, a := range allowed {
			ok = ok || k == a
		}
		if !ok {
			at := k
			if path != "" {
				at = path + "." + k
			}
			return fmt.Errorf("%s: unknown field (known: %s)", at, strings.Join(allowed, ", "))
		}
	}
	return nil
}

func sortedKeys(m map[string]json.RawMessage) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func lineCol(data []byte, offset int64) (line, col int) {
	if offset > int64(len(data)) {
		offset = int64(len(data))
	}
	before := data[:offset]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(offset) - (bytes.LastIndexByte(before, '\n') + 1)
	return line, col
}

// validate reports every problem of the table at once.
func (rt Routes) validate() error {
	var errs []error
	names := map[string]int{}
	for i, p := range rt.Providers {
		at := fmt.Sprintf("providers[%d]", i)
		if p.Name == "" {
			errs = append(errs, fmt.Errorf("%s.name: required", at))
		} else if j, dup := names[p.Name]; dup {
			errs = append(errs, fmt.Errorf("%s.name: %q is also providers[%d]'s name", at, p.Name, j))
		} else {
			names[p.Name] = i
		}
		if u, err := url.Parse(p.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("%s.baseUrl: must be an http(s) URL (got %q)", at, p.BaseURL))
		}
		if len(p.Models) == 0 && len(p.Embeddings) == 0 {
			errs = append(errs, fmt.Errorf("%s: serves nothing (models and embeddings are both empty)", at))
		}
		errs = append(errs, validPatterns(at+".models", p.Models)...)
		errs = append(errs, validPatterns(at+".embeddings", p.Embeddings)...)
		if p.PricePer1KIn < 0 || p.PricePer1KOut < 0 {
			errs = append(errs, fmt.Errorf("%s: prices must not be negative", at))
		}
		if p.TimeoutMs < 0 {
			errs = append(errs, fmt.Errorf("%s.timeoutMs: must not be negative (got %d)", at, p.TimeoutMs))
		}
		if p.EmbeddingBatchSize < 0 {
			errs = append(errs, fmt.Errorf("%s.embeddingBatchSize: must not be negative (got %d)", at, p.EmbeddingBatchSize))
		}
		for _, m := range sortedDimKeys(p.EmbeddingDimensions) {
			if d := p.EmbeddingDimensions[m]; d <= 0 {
				errs = append(errs, fmt.Errorf("%s.embeddingDimensions[%q]: must be positive (got %d)", at, m, d))
			}
			if !contains(p.Embeddings, m) {
				errs = append(errs, fmt.Errorf("%s.embeddingDimensions[%q]: not listed in embeddings", at, m))
			}
		}
	}
	if rt.Cloudflare != nil && rt.Cloudflare.APITokenEnv == "" {
		errs = append(errs, errors.New("cloudflare.apiTokenEnv: required (the name of the variable holding the token)"))
	}
	return errors.Join(errs...)
}

// validPatterns checks model IDs and prefixes: non-empty, "*" only at the end.
func validPatterns(at string, patterns []string) []error {
	var errs []error
	for j, m := range patterns {
		if strings.TrimSpace(m) != m || m == "" {
			errs = append(errs, fmt.Errorf("%s[%d]: must be a non-empty model ID without surrounding spaces (got %q)", at, j, m))
		} else if strings.Contains(strings.TrimSuffix(m, "*"), "*") {
			errs = append(errs, fmt.Errorf("%s[%d]: '*' may only end a prefix (got %q)", at, j, m))
		}
	}
	return errs
}

func sortedDimKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// ProviderConfigs turns the table into router rows, reading each key from its variable once, here.
// A provider whose key variable is named but empty is still used (some servers need no key) and gets
// a warning, since a forgotten export otherwise shows up only as 401s.
func (rt Routes) ProviderConfigs(getenv func(string) string) ([]ProviderConfig, []string) {
	var pcs []ProviderConfig
	var warnings []string
	for _, p := range rt.Providers {
		pc := ProviderConfig{
			Name: p.Name, BaseURL: p.BaseURL, APIKeyEnv: p.APIKeyEnv,
			Models:       append([]string(nil), p.Models...),
			PricePer1KIn: p.PricePer1KIn, PricePer1KOut: p.PricePer1KOut,
			Timeout:             time.Duration(p.TimeoutMs) * time.Millisecond,
			Embeddings:          append([]string(nil), p.Embeddings...),
			EmbeddingDimensions: p.EmbeddingDimensions,
			EmbeddingBatchSize:  p.EmbeddingBatchSize,
			EmbeddingInputType:  p.EmbeddingInputType,
		}
		if p.APIKeyEnv != "" {
			pc.APIKey = getenv(p.APIKeyEnv)
			if pc.APIKey == "" {
				warnings = append(warnings, fmt.Sprintf("routes: provider %q: its key variable %s is empty or unset; calls go without a key",
					p.Name, p.APIKeyEnv))
			}
		}
		pcs = append(pcs, pc)
	}
	return pcs, warnings
}
