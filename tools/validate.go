package tools

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// compileParams checks that schema is an object schema, adds additionalProperties:false when the
// schema does not decide, and compiles it. It returns the schema as stored and the compiled form.
func compileParams(name string, schema json.RawMessage) (json.RawMessage, *jsonschema.Schema, error) {
	if len(bytes.TrimSpace(schema)) == 0 {
		schema = json.RawMessage(`{"type":"object","properties":{}}`)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema))
	if err != nil {
		return nil, nil, fmt.Errorf("parameters schema is not JSON: %w", err)
	}
	obj, ok := doc.(map[string]any)
	if !ok || obj["type"] != "object" {
		return nil, nil, errors.New(`parameters schema must have "type": "object"`)
	}
	if _, set := obj["additionalProperties"]; !set {
		obj["additionalProperties"] = false
	}
	stored, err := json.Marshal(obj)
	if err != nil {
		return nil, nil, fmt.Errorf("re-encode parameters schema: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	loc := "mem://tools/" + name + ".json"
	if err := c.AddResource(loc, obj); err != nil {
		return nil, nil, fmt.Errorf("add parameters schema: %w", err)
	}
	sch, err := c.Compile(loc)
	if err != nil {
		return nil, nil, fmt.Errorf("compile parameters schema: %w", err)
	}
	return stored, sch, nil
}

// validateParams decodes raw, checks it against sch and returns the canonical JSON of the parameters
// (keys sorted, numbers as written) and the docs/api.md messages of every violation.
func validateParams(sch *jsonschema.Schema, raw json.RawMessage) ([]byte, []string) {
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = json.RawMessage(`{}`)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, []string{"Parameters must be an object"}
	}
	obj, ok := doc.(map[string]any)
	if !ok {
		return nil, []string{"Parameters must be an object"}
	}
	canonical, err := json.Marshal(obj)
	if err != nil {
		return nil, []string{"Parameters must be an object"}
	}
	var msgs []string
	// A JavaScript client's own __proto__ key would reach a prototype there; here it is just
	// refused, even when a schema allows additional properties.
	if _, bad := obj["__proto__"]; bad {
		msgs = append(msgs, "Unexpected parameter: __proto__")
	}
	if err := sch.Validate(doc); err != nil {
		var verr *jsonschema.ValidationError
		if errors.As(err, &verr) {
			msgs = append(msgs, flatten(verr)...)
		} else {
			msgs = append(msgs, "Parameters are invalid")
		}
	}
	return canonical, dedupeSorted(msgs)
}

// messageRank orders messages: missing, then unexpected, then per-parameter problems.
func messageRank(m string) int {
	switch {
	case strings.HasPrefix(m, "Missing required parameter: "):
		return 0
	case strings.HasPrefix(m, "Unexpected parameter: "):
		return 1
	}
	return 2
}

func dedupeSorted(msgs []string) []string {
	if len(msgs) == 0 {
		return nil
	}
	sort.SliceStable(msgs, func(i, j int) bool {
		ri, rj := messageRank(msgs[i]), messageRank(msgs[j])
		if ri != rj {
			return ri < rj
		}
		return msgs[i] < msgs[j]
	})
	out := msgs[:1]
	for _, m := range msgs[1:] {
		if m != out[len(out)-1] {
			out = append(out, m)
		}
	}
	return out
}

func joinMessages(msgs []string) string { return strings.Join(msgs, "; ") }

var printer = message.NewPrinter(language.English)

// flatten walks the error tree and maps each leaf to a plain message.
func flatten(e *jsonschema.ValidationError) []string {
	if len(e.Causes) > 0 {
		var out []string
		for _, c := range e.Causes {
			out = append(out, flatten(c)...)
		}
		return out
	}
	return describe(e)
}

func paramName(loc []string, child string) string {
	parts := append(append([]string(nil), loc...), child)
	var nonEmpty []string
	for _, p := range parts {
		if p != "" {
			nonEmpty = append(nonEmpty, p)
		}
	}
	return strings.Join(nonEmpty, ".")
}

func describe(e *jsonschema.ValidationError) []string {
	key := paramName(e.InstanceLocation, "")
	param := func(format string, args ...any) []string {
		if key == "" {
			return []string{"Parameters " + fmt.Sprintf(format, args...)}
		}
		return []string{fmt.Sprintf("Parameter '%s': ", key) + fmt.Sprintf(format, args...)}
	}
	switch k := e.ErrorKind.(type) {
	case *kind.Required:
		out := make([]string, 0, len(k.Missing))
		for _, m := range k.Missing {
			out = append(out, "Missing required parameter: "+paramName(e.InstanceLocation, m))
		}
		return out
	case *kind.AdditionalProperties:
		out := make([]string, 0, len(k.Properties))
		for _, p := range k.Properties {
			out = append(out, "Unexpected parameter: "+paramName(e.InstanceLocation, p))
		}
		return out
	case *kind.Type:
		if key == "" {
			return []string{"Parameters must be an object"}
		}
		if len(k.Want) == 1 && k.Want[0] == "integer" && k.Got == "number" {
			return param("must be an integer")
		}
		return param("expected %s, got %s", strings.Join(k.Want, " or "), k.Got)
	case *kind.MinLength:
		return param("minimum length is %d", k.Want)
	case *kind.MaxLength:
		return param("maximum length is %d", k.Want)
	case *kind.MinItems:
		return param("minimum length is %d", k.Want)
	case *kind.MaxItems:
		return param("maximum length is %d", k.Want)
	case *kind.Enum:
		vals := make([]string, 0, len(k.Want))
		for _, w := range k.Want {
			vals = append(vals, fmt.Sprint(w))
		}
		return param("must be one of %s", strings.Join(vals, ", "))
	case *kind.Const:
		return param("must be %v", k.Want)
	case *kind.Minimum:
		return param("minimum value is %s", ratString(k.Want))
	case *kind.Maximum:
		return param("maximum value is %s", ratString(k.Want))
	case *kind.ExclusiveMinimum:
		return param("must be greater than %s", ratString(k.Want))
	case *kind.ExclusiveMaximum:
		return param("must be less than %s", ratString(k.Want))
	case *kind.MultipleOf:
		return param("must be a multiple of %s", ratString(k.Want))
	case *kind.Pattern:
		return param("does not match the required pattern")
	case *kind.Format:
		return param("must be a valid %s", k.Want)
	case *kind.FalseSchema:
		if len(e.InstanceLocation) > 0 {
			return []string{"Unexpected parameter: " + key}
		}
	}
	return param("%s", e.ErrorKind.LocalizedString(printer))
}

func ratString(r *big.Rat) string {
	if r == nil {
		return "?"
	}
	if r.IsInt() {
		return r.Num().String()
	}
	f, _ := r.Float64()
	return fmt.Sprint(f)
}
