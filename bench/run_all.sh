#!/usr/bin/env bash
# Runs the kernel benchmarks (median of 5 repetitions each) and prints the markdown tables used in
# docs/PERFORMANCE.md. Usage: bench/run_all.sh [build-dir]   (default build/release)
set -euo pipefail
cd "$(dirname "$0")/.."
b=${1:-build/release}
out=$(mktemp -d)
common=(--benchmark_repetitions=5 --benchmark_report_aggregates_only=true --benchmark_format=json)
"$b/bench/bench_limits" "${common[@]}" >"$out/limits.json"
"$b/bench/bench_gemv" "${common[@]}" >"$out/gemv.json"
"$b/bench/bench_gemm" "${common[@]}" --benchmark_filter='BM_Gemm/[0-5]/(128|512)/2' >"$out/gemm2.json"
"$b/bench/bench_gemm" "${common[@]}" --benchmark_filter='BM_Gemm/[02]/128/1' >"$out/gemm1.json"
"$b/bench/bench_threadpool" "${common[@]}" >"$out/pool.json"
python3 - "$out" <<'PY'
import json, sys, os
d = sys.argv[1]
def med(f):
    rows = {}
    for b in json.load(open(os.path.join(d, f)))["benchmarks"]:
        if b.get("aggregate_name") == "median":
            rows[b["run_name"]] = b
    return rows
lim = med("limits.json")
bw = {t: lim[f"BM_ReadBandwidth/{t}/0/real_time"]["GB/s"] for t in (1, 2)}
peak = {t: lim.get(f"BM_Int8PeakVnni/{t}/real_time", {}).get("GMAC/s", float("nan")) for t in (1, 2)}
print("| limit | 1 thread | 2 threads |\n|---|---:|---:|")
print(f"| read bandwidth (GB/s) | {bw[1]:.1f} | {bw[2]:.1f} |")
print(f"| AVX-512 VNNI peak (int8 GMAC/s) | {peak[1]:.0f} | {peak[2]:.0f} |\n")
print("| GEMV N x K | kernel | threads | us | weight GB/s | % of read bandwidth |\n|---|---|---:|---:|---:|---:|")
for name, b in med("gemv.json").items():
    t = int(name.split("/")[2])
    gbs = b["weight_GB/s"]
    print(f"| {b['label']} | | {t} | {b['real_time']:.1f} | {gbs:.1f} | {100*gbs/bw[t]:.0f} % |")
print("\n| GEMM shape, M | kernel | threads | ms | GMAC/s | % of VNNI peak |\n|---|---|---:|---:|---:|---:|")
for f in ("gemm2.json", "gemm1.json"):
    for name, b in med(f).items():
        _, s, m, t, _ = name.split("/")
        g = b["GMAC/s"]
        print(f"| {b['label']}, M={m} | | {t} | {b['real_time']:.2f} | {g:.0f} | {100*g/peak[int(t)]:.0f} % |")
print("\n| thread pool | ns per dispatch+join |\n|---|---:|")
for name, b in med("pool.json").items():
    print(f"| {name.replace('/real_time','')} | {b['real_time']:.0f} |")
PY
