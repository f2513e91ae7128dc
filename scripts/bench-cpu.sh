#!/usr/bin/env bash
# The CPU-speed figures of docs/PERFORMANCE.md in one go, on the synthetic 2B4T model that
# `bitnet bench --synthetic` generates (so anyone with the repo can repeat them):
#   the machine's limits (read bandwidth, int8 dot-product peak), the head kernels, then
#   pp128/pp512/tg64 for each head type at each thread count, and decode at 1k/4k context.
# Usage: scripts/bench-cpu.sh [BUILD_DIR] [THREADS...]     (default: build/release, 1 2)
# Set PIN="taskset -c 0,1" to pin to cores, REPS to change the repetitions (default 5).
set -euo pipefail
cd "$(dirname "$0")/.."
b=${1:-build/release}
shift || true
threads=${*:-1 2}
reps=${REPS:-5}
pin=${PIN:-}
[ -x "$b/tools/bitnet/bitnet" ] || { echo "no $b/tools/bitnet/bitnet: build first (scripts/build.sh $b -DCMAKE_BUILD_TYPE=Release)" >&2; exit 1; }
$b/tools/bitnet/bitnet info | head -3
$pin $b/bench/bench_limits --benchmark_repetitions=3 --benchmark_report_aggregates_only=true 2>&1 | grep -E 'median'
$pin $b/bench/bench_head --benchmark_filter='BM_Head/[023]/' --benchmark_repetitions=3 --benchmark_report_aggregates_only=true 2>&1 | grep -E 'median'
for e in f16 q8_0 q6_k; do
  for t in $threads; do
    $pin $b/tools/bitnet/bitnet bench --synthetic 2b4t --embd-type "$e" -p 128,512 -n 64 -r "$reps" -t "$t"
  done
done
$pin $b/tools/bitnet/bitnet bench --synthetic 2b4t --embd-type q6_k -p 0 -n 64 -d 1024,4096 -r 3 -t 2
$pin $b/bench/bench_limits --benchmark_filter=Read --benchmark_repetitions=3 --benchmark_report_aggregates_only=true 2>&1 | grep -E 'median'
