package milvus

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// ErrInvalidFilter is returned for a filter value that is not a string,
// number or boolean, or a key that cannot be expressed safely.
var ErrInvalidFilter = errors.New("invalid search filter")

// quote writes s as a Milvus expression string literal. The 2.3 parser
// unquotes literals the way Go does, so strconv.Quote's escapes (\" \\ \n
// \u…) are read back exactly and no input can end the literal early.
func quote(s string) string { return strconv.Quote(s) }

// tenantExpr is the guard every insert, query, search and delete carries,
// whatever partition it names.
func tenantExpr(tenant string) string { return fieldTenant + " == " + quote(tenant) }

// filterExpr translates a rag filter (metadata key → scalar, "docId" →
// the doc_id field) into a Milvus boolean expression over the JSON meta
// field, ANDed after the tenant guard. Keys are sorted so the same filter
// always yields the same expression.
func filterExpr(tenant string, filter map[string]any) (string, error) {
	var b strings.Builder
	b.WriteString(tenantExpr(tenant))
	keys := make([]string, 0, len(filter))
	for k := range filter {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		lit, err := literal(filter[k])
		if err != nil {
			return "", fmt.Errorf("%w: key %q: %v", ErrInvalidFilter, k, err)
		}
		b.WriteString(" && ")
		if k == "docId" {
			if _, ok := filter[k].(string); !ok {
				// A non-string docId can match no document.
				b.WriteString("false")
				continue
			}
			b.WriteString(fieldDocID + " == " + lit)
			continue
		}
		if k == "" || strings.ContainsAny(k, "\"\\") || strings.ContainsFunc(k, isControl) {
			// Milvus 2.3 takes a JSON key's text between the brackets
			// without unescaping it, so a key needing escapes cannot be
			// matched exactly: refuse it rather than match something else.
			return "", fmt.Errorf("%w: key %q: quotes, backslashes and control characters are not supported", ErrInvalidFilter, k)
		}
		b.WriteString(fieldMeta + `["` + k + `"] == ` + lit)
	}
	return b.String(), nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// literal renders a filter value. Integral numbers are written as integers
// because encoding/json stores 2023.0 as 2023, and Milvus compares a JSON
// integer with an integer literal exactly.
func literal(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return quote(x), nil
	case bool:
		return strconv.FormatBool(x), nil
	case json.Number:
		f, err := x.Float64()
		if err != nil {
			return "", err
		}
		return number(f)
	case float64:
		return number(x)
	case float32:
		return number(float64(x))
	case int:
		return strconv.FormatInt(int64(x), 10), nil
	case int32:
		return strconv.FormatInt(int64(x), 10), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case uint32:
		return strconv.FormatUint(uint64(x), 10), nil
	case uint:
		return strconv.FormatUint(uint64(x), 10), nil
	case uint64:
		return strconv.FormatUint(x, 10), nil
	}
	return "", fmt.Errorf("value of type %T is not a string, number or boolean", v)
}

func number(f float64) (string, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "", fmt.Errorf("number %v is not finite", f)
	}
	if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
		return strconv.FormatInt(int64(f), 10), nil
	}
	return strconv.FormatFloat(f, 'g', -1, 64), nil
}
