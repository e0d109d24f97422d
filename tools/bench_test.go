package tools

import (
	"context"
	"encoding/json"
	"testing"
)

func BenchmarkEvaluate(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Evaluate("round(sqrt(2 ^ 10) * (3.5 - -1.25) / max(1, 2, 3) % 7, 2)"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkExecute measures the dispatcher's own cost (validate, permission, goroutine, audit) around
// a trivial tool.
func BenchmarkExecute(b *testing.B) {
	r := NewRegistry(WithAudit(func(context.Context, AuditRecord) {}))
	if err := r.Register(Calculate()); err != nil {
		b.Fatal(err)
	}
	req := ExecuteRequest{Tenant: tenant(nil), Tool: "calculate", Params: json.RawMessage(`{"expression":"1+2*3"}`)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Execute(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}
