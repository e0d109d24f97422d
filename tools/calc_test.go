package tools

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
)

func TestEvaluate(t *testing.T) {
	tests := []struct {
		expr string
		want float64
		why  string
	}{
		{"1 + 2 * 3", 7, "* binds tighter than +"},
		{"(1 + 2) * 3", 9, ""},
		{"10 - 4 - 3", 3, "- is left-associative"},
		{"100 / 10 / 5", 2, "/ is left-associative"},
		{"2 ^ 3 ^ 2", 512, "^ is right-associative: 2^(3^2)"},
		{"-2 ^ 2", -4, "unary minus binds looser than ^"},
		{"2 ^ -1", 0.5, "unary minus in an exponent"},
		{"--3", 3, ""},
		{"+4", 4, ""},
		{"7 % 3", 1, ""},
		{"-7 % 3", -1, "sign of the dividend, like Go and JavaScript"},
		{"1.5 * .5", 0.75, "decimals"},
		{"1e3 + 2E-1", 1000.2, "scientific notation"},
		{"2e", 2 * math.E, "no exponent digits: 2 then the constant e? no implicit multiplication"},
		{"sqrt(16) + abs(-2)", 6, ""},
		{"min(3, 1, 2) + max(4, 9)", 10, ""},
		{"round(2.5) + floor(1.9) + ceil(1.1)", 3 + 1 + 2, ""},
		{"round(3.14159, 2)", 3.14, ""},
		{"pi", math.Pi, ""},
		{"e", math.E, ""},
		{"2 * pi * 10", 20 * math.Pi, ""},
		{" ( ( 1 ) ) ", 1, "whitespace and redundant parentheses"},
	}
	for _, tc := range tests {
		t.Run(tc.expr, func(t *testing.T) {
			if tc.expr == "2e" {
				// "2e" is 2 followed by the constant e, which is a syntax error (no implicit product).
				if _, err := Evaluate(tc.expr); err == nil {
					t.Fatal("2e evaluated; want an error (no implicit multiplication)")
				}
				return
			}
			got, err := Evaluate(tc.expr)
			if err != nil {
				t.Fatalf("Evaluate(%q): %v", tc.expr, err)
			}
			if math.Abs(got-tc.want) > 1e-9 {
				t.Errorf("Evaluate(%q) = %v, want %v (%s)", tc.expr, got, tc.want, tc.why)
			}
		})
	}
}

func TestEvaluateErrors(t *testing.T) {
	tests := []struct {
		expr     string
		wantCode string
	}{
		{"1 / 0", "DIVISION_BY_ZERO"},
		{"1 % 0", "DIVISION_BY_ZERO"},
		{"1 / (2 - 2)", "DIVISION_BY_ZERO"},
		{"sqrt(-1)", "MATH_ERROR"},
		{"10 ^ 400", "MATH_ERROR"},
		{"", "INVALID_EXPRESSION"},
		{"1 +", "INVALID_EXPRESSION"},
		{"(1 + 2", "INVALID_EXPRESSION"},
		{"1 + 2)", "INVALID_EXPRESSION"},
		{"2 3", "INVALID_EXPRESSION"},
		{"foo(1)", "INVALID_EXPRESSION"},
		{"x", "INVALID_EXPRESSION"},
		{"sqrt", "INVALID_EXPRESSION"},
		{"sqrt(1, 2)", "INVALID_EXPRESSION"},
		{"min()", "INVALID_EXPRESSION"},
		{"round(1, 2.5)", "INVALID_EXPRESSION"},
		{"1..2", "INVALID_EXPRESSION"},
		{"process.exit(1)", "INVALID_EXPRESSION"},
		{"require('fs')", "INVALID_EXPRESSION"},
		{"1; 2", "INVALID_EXPRESSION"},
		{"1 = 1", "INVALID_EXPRESSION"},
		{strings.Repeat("(", 100) + "1" + strings.Repeat(")", 100), "INVALID_EXPRESSION"},
		{strings.Repeat("-", 100) + "1", "INVALID_EXPRESSION"},
		{strings.Repeat("1+", 600) + "1", "INVALID_EXPRESSION"},
	}
	for _, tc := range tests {
		name := tc.expr
		if len(name) > 30 {
			name = name[:30] + "…"
		}
		t.Run(name, func(t *testing.T) {
			_, err := Evaluate(tc.expr)
			var ce *CalcError
			if !errors.As(err, &ce) {
				t.Fatalf("Evaluate(%q) err = %v, want a CalcError", tc.expr, err)
			}
			if ce.Code != tc.wantCode {
				t.Errorf("code = %s (%s), want %s", ce.Code, ce.Msg, tc.wantCode)
			}
		})
	}
}

func TestCalculateTool(t *testing.T) {
	r := mustRegistry(t, Calculate())
	res, err := r.Execute(context.Background(), ExecuteRequest{Tenant: tenant(nil), Tool: "calculate", Params: json.RawMessage(`{"expression":"(2+3)*4"}`)})
	if err != nil || !res.Success {
		t.Fatalf("Execute = %+v, %v", res, err)
	}
	if got := res.Data.(map[string]any)["result"]; got != 20.0 {
		t.Errorf("result = %v, want 20", got)
	}
	res, err = r.Execute(context.Background(), ExecuteRequest{Tenant: tenant(nil), Tool: "calculate", Params: json.RawMessage(`{"expression":"1/0"}`)})
	if err != nil || res.Success || res.Error.Code != "DIVISION_BY_ZERO" {
		t.Fatalf("1/0: Execute = %+v, %v; want a DIVISION_BY_ZERO tool failure", res, err)
	}
	_, err = r.Execute(context.Background(), ExecuteRequest{Tenant: tenant(nil), Tool: "calculate", Params: json.RawMessage(`{"expression":"` + strings.Repeat("1", MaxExpressionLength+1) + `"}`)})
	if err == nil || err.Code != CodeValidationFailed {
		t.Fatalf("too long: err = %+v, want VALIDATION_FAILED", err)
	}
}

// FuzzEvaluate: the parser never panics, never recurses without bound, and any value it returns is
// finite.
func FuzzEvaluate(f *testing.F) {
	for _, s := range []string{"1+2*3", "2^3^2", "-(1.5e3 % 7)", "min(1,max(2,3))", "round(pi, 3)", "((((1))))", "1/0", "sqrt(-", ".e5", "1e+", "ceil(floor(abs(-2.5)))"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := Evaluate(s)
		if err == nil && (math.IsNaN(v) || math.IsInf(v, 0)) {
			t.Fatalf("Evaluate(%q) = %v without error", s, v)
		}
		var ce *CalcError
		if err != nil && !errors.As(err, &ce) {
			t.Fatalf("Evaluate(%q) err %T, want *CalcError", s, err)
		}
	})
}
