package speech

import (
	"context"
	"testing"
)

// BenchmarkEspeakWAV is one short synthesis end to end (process start included).
func BenchmarkEspeakWAV(b *testing.B) {
	if err := NewEspeak(EspeakOptions{}).Check(); err != nil {
		b.Skip(err)
	}
	e := NewEspeak(EspeakOptions{})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Synthesize(context.Background(), Request{Text: "Hello, this is a benchmark.", Format: FormatWAV}); err != nil {
			b.Fatal(err)
		}
	}
}
