package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
)

// Limits of the calculate parser: the expression is data, so its size and depth are bounded.
const (
	MaxExpressionLength = 1000
	MaxExpressionDepth  = 64
)

// CalcError is an expression that cannot be evaluated; Code is the tool failure code.
type CalcError struct {
	Code string // INVALID_EXPRESSION, DIVISION_BY_ZERO, MATH_ERROR
	Msg  string
}

func (e *CalcError) Error() string { return e.Msg }

func calcErr(code, format string, args ...any) *CalcError {
	return &CalcError{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// Evaluate parses and evaluates an arithmetic expression: numbers (decimals, 1e3), + - * / % ^
// (^ is right-associative and binds tighter than unary minus: -2^2 = -4), parentheses, the constants
// pi and e, and the functions sqrt, abs, min, max, round, floor, ceil. Nothing else: no variables,
// no assignment, no code.
func Evaluate(expr string) (float64, error) {
	if len(expr) > MaxExpressionLength {
		return 0, calcErr("INVALID_EXPRESSION", "expression longer than %d characters", MaxExpressionLength)
	}
	p := &calcParser{src: expr}
	p.next()
	v, err := p.expr(0)
	if err != nil {
		return 0, err
	}
	if p.tok.kind != tokEOF {
		return 0, calcErr("INVALID_EXPRESSION", "unexpected %s at position %d", p.tok, p.tok.pos+1)
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, calcErr("MATH_ERROR", "result is not a finite number")
	}
	return v, nil
}

type tokKind int

const (
	tokEOF tokKind = iota
	tokNum
	tokIdent
	tokOp // one of + - * / % ^ ( ) ,
	tokBad
)

type token struct {
	kind tokKind
	pos  int
	text string
	num  float64
}

func (t token) String() string {
	switch t.kind {
	case tokEOF:
		return "end of expression"
	case tokNum:
		return "number " + t.text
	}
	return fmt.Sprintf("%q", t.text)
}

type calcParser struct {
	src string
	pos int
	tok token
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' }

func (p *calcParser) next() {
	for p.pos < len(p.src) && (p.src[p.pos] == ' ' || p.src[p.pos] == '\t' || p.src[p.pos] == '\n' || p.src[p.pos] == '\r') {
		p.pos++
	}
	start := p.pos
	if p.pos >= len(p.src) {
		p.tok = token{kind: tokEOF, pos: start}
		return
	}
	c := p.src[p.pos]
	switch {
	case isDigit(c) || c == '.':
		for p.pos < len(p.src) && (isDigit(p.src[p.pos]) || p.src[p.pos] == '.') {
			p.pos++
		}
		// An exponent only when digits follow, so "2e" stays 2 followed by the constant e.
		if p.pos < len(p.src) && (p.src[p.pos] == 'e' || p.src[p.pos] == 'E') {
			q := p.pos + 1
			if q < len(p.src) && (p.src[q] == '+' || p.src[q] == '-') {
				q++
			}
			if q < len(p.src) && isDigit(p.src[q]) {
				for q < len(p.src) && isDigit(p.src[q]) {
					q++
				}
				p.pos = q
			}
		}
		text := p.src[start:p.pos]
		f, err := strconv.ParseFloat(text, 64)
		if err != nil {
			p.tok = token{kind: tokBad, pos: start, text: text}
			return
		}
		p.tok = token{kind: tokNum, pos: start, text: text, num: f}
	case isAlpha(c):
		for p.pos < len(p.src) && (isAlpha(p.src[p.pos]) || isDigit(p.src[p.pos])) {
			p.pos++
		}
		p.tok = token{kind: tokIdent, pos: start, text: p.src[start:p.pos]}
	case c == '+' || c == '-' || c == '*' || c == '/' || c == '%' || c == '^' || c == '(' || c == ')' || c == ',':
		p.pos++
		p.tok = token{kind: tokOp, pos: start, text: string(c)}
	default:
		p.pos++
		p.tok = token{kind: tokBad, pos: start, text: string(c)}
	}
}

func (p *calcParser) isOp(s string) bool { return p.tok.kind == tokOp && p.tok.text == s }

func (p *calcParser) unexpected() error {
	if p.tok.kind == tokBad {
		return calcErr("INVALID_EXPRESSION", "invalid character or number %q at position %d", p.tok.text, p.tok.pos+1)
	}
	return calcErr("INVALID_EXPRESSION", "unexpected %s at position %d", p.tok, p.tok.pos+1)
}

// expr := term (('+'|'-') term)*
func (p *calcParser) expr(depth int) (float64, error) {
	if depth > MaxExpressionDepth {
		return 0, calcErr("INVALID_EXPRESSION", "expression nested deeper than %d", MaxExpressionDepth)
	}
	v, err := p.term(depth)
	if err != nil {
		return 0, err
	}
	for p.isOp("+") || p.isOp("-") {
		op := p.tok.text
		p.next()
		r, err := p.term(depth)
		if err != nil {
			return 0, err
		}
		if op == "+" {
			v += r
		} else {
			v -= r
		}
	}
	return v, nil
}

// term := unary (('*'|'/'|'%') unary)*
func (p *calcParser) term(depth int) (float64, error) {
	v, err := p.unary(depth)
	if err != nil {
		return 0, err
	}
	for p.isOp("*") || p.isOp("/") || p.isOp("%") {
		op := p.tok.text
		p.next()
		r, err := p.unary(depth)
		if err != nil {
			return 0, err
		}
		switch op {
		case "*":
			v *= r
		case "/":
			if r == 0 {
				return 0, calcErr("DIVISION_BY_ZERO", "division by zero")
			}
			v /= r
		case "%":
			if r == 0 {
				return 0, calcErr("DIVISION_BY_ZERO", "modulo by zero")
			}
			v = math.Mod(v, r)
		}
	}
	return v, nil
}

// unary := ('-'|'+') unary | power
func (p *calcParser) unary(depth int) (float64, error) {
	if depth > MaxExpressionDepth {
		return 0, calcErr("INVALID_EXPRESSION", "expression nested deeper than %d", MaxExpressionDepth)
	}
	if p.isOp("-") || p.isOp("+") {
		neg := p.isOp("-")
		p.next()
		v, err := p.unary(depth + 1)
		if neg {
			v = -v
		}
		return v, err
	}
	return p.power(depth)
}

// power := primary ('^' unary)?  — right-associative through unary.
func (p *calcParser) power(depth int) (float64, error) {
	base, err := p.primary(depth)
	if err != nil {
		return 0, err
	}
	if !p.isOp("^") {
		return base, nil
	}
	p.next()
	exp, err := p.unary(depth + 1)
	if err != nil {
		return 0, err
	}
	return math.Pow(base, exp), nil
}

// primary := number | constant | func '(' args ')' | '(' expr ')'
func (p *calcParser) primary(depth int) (float64, error) {
	switch {
	case p.tok.kind == tokNum:
		v := p.tok.num
		p.next()
		return v, nil
	case p.isOp("("):
		p.next()
		v, err := p.expr(depth + 1)
		if err != nil {
			return 0, err
		}
		if !p.isOp(")") {
			return 0, p.unexpectedWant(")")
		}
		p.next()
		return v, nil
	case p.tok.kind == tokIdent:
		name := p.tok.text
		pos := p.tok.pos
		p.next()
		switch name {
		case "pi":
			return math.Pi, nil
		case "e":
			return math.E, nil
		}
		fn, ok := calcFuncs[name]
		if !ok {
			return 0, calcErr("INVALID_EXPRESSION", "unknown name %q at position %d", name, pos+1)
		}
		if !p.isOp("(") {
			return 0, p.unexpectedWant("(")
		}
		p.next()
		var args []float64
		if !p.isOp(")") {
			for {
				a, err := p.expr(depth + 1)
				if err != nil {
					return 0, err
				}
				args = append(args, a)
				if len(args) > 100 {
					return 0, calcErr("INVALID_EXPRESSION", "too many arguments to %s", name)
				}
				if !p.isOp(",") {
					break
				}
				p.next()
			}
		}
		if !p.isOp(")") {
			return 0, p.unexpectedWant(")")
		}
		p.next()
		return fn(name, args)
	}
	return 0, p.unexpected()
}

func (p *calcParser) unexpectedWant(want string) error {
	if p.tok.kind == tokBad {
		return p.unexpected()
	}
	return calcErr("INVALID_EXPRESSION", "expected %q but found %s at position %d", want, p.tok, p.tok.pos+1)
}

type calcFunc func(name string, args []float64) (float64, error)

func arity(name string, args []float64, min, max int) error {
	if len(args) < min || len(args) > max {
		if min == max {
			return calcErr("INVALID_EXPRESSION", "%s takes %d argument(s), got %d", name, min, len(args))
		}
		return calcErr("INVALID_EXPRESSION", "%s takes %d to %d arguments, got %d", name, min, max, len(args))
	}
	return nil
}

func unaryFunc(f func(float64) float64) calcFunc {
	return func(name string, args []float64) (float64, error) {
		if err := arity(name, args, 1, 1); err != nil {
			return 0, err
		}
		return f(args[0]), nil
	}
}

var calcFuncs = map[string]calcFunc{
	"sqrt": func(name string, args []float64) (float64, error) {
		if err := arity(name, args, 1, 1); err != nil {
			return 0, err
		}
		if args[0] < 0 {
			return 0, calcErr("MATH_ERROR", "square root of a negative number")
		}
		return math.Sqrt(args[0]), nil
	},
	"abs":   unaryFunc(math.Abs),
	"floor": unaryFunc(math.Floor),
	"ceil":  unaryFunc(math.Ceil),
	"round": func(name string, args []float64) (float64, error) {
		if err := arity(name, args, 1, 2); err != nil {
			return 0, err
		}
		if len(args) == 1 {
			return math.Round(args[0]), nil
		}
		digits := args[1]
		if digits != math.Trunc(digits) || digits < 0 || digits > 15 {
			return 0, calcErr("INVALID_EXPRESSION", "round's digits must be an integer from 0 to 15")
		}
		scale := math.Pow(10, digits)
		return math.Round(args[0]*scale) / scale, nil
	},
	"min": func(name string, args []float64) (float64, error) {
		if err := arity(name, args, 1, 100); err != nil {
			return 0, err
		}
		m := args[0]
		for _, a := range args[1:] {
			m = math.Min(m, a)
		}
		return m, nil
	},
	"max": func(name string, args []float64) (float64, error) {
		if err := arity(name, args, 1, 100); err != nil {
			return 0, err
		}
		m := args[0]
		for _, a := range args[1:] {
			m = math.Max(m, a)
		}
		return m, nil
	},
}

// Calculate is the calculate tool.
func Calculate() Tool {
	return Tool{
		Name:        "calculate",
		Description: "Evaluate an arithmetic expression: + - * / % ^, parentheses, decimals, pi, e and sqrt, abs, min, max, round, floor, ceil.",
		Parameters: json.RawMessage(fmt.Sprintf(`{"type":"object","properties":{
			"expression":{"type":"string","description":"The expression, e.g. (2 + 3) * sqrt(16)","minLength":1,"maxLength":%d}},
			"required":["expression"],"additionalProperties":false}`, MaxExpressionLength)),
		Timeout: 2 * MinTimeout,
		Run: func(ctx context.Context, call Call) (any, error) {
			var p struct {
				Expression string `json:"expression"`
			}
			if err := call.Decode(&p); err != nil {
				return nil, err
			}
			v, err := Evaluate(p.Expression)
			var ce *CalcError
			if errors.As(err, &ce) {
				return nil, &ToolFailure{Code: ce.Code, Message: ce.Msg}
			}
			if err != nil {
				return nil, err
			}
			return map[string]any{"expression": p.Expression, "result": v}, nil
		},
	}
}
