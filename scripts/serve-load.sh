#!/usr/bin/env bash
# `bitnet serve` under load, two ways (the server is started here on a free loopback port):
#   scripts/serve-load.sh soak [SECONDS=600] [CLIENTS=64]
#       the load test's long form: CLIENTS streaming clients for SECONDS against the project's
#       model; fails on any error or on RSS growth over 64 MB after the first quarter.
#   scripts/serve-load.sh bench [STREAMS=1,2,4,8,16] [MAX_TOKENS=128] [THREADS=2]
#       decode throughput and time to first token per concurrent stream count, on a synthetic
#       model of the BitNet b1.58 2B4T shape (written once by `bitnet synth` to build/serve-2b4t.gguf).
# Needs a build (BITNET_BIN, default build/dev/tools/bitnet/bitnet), node and the npm packages of
# tests/server/js (installed here when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BITNET_BIN:-build/dev/tools/bitnet/bitnet}
js=tests/server/js
[ -d "$js/node_modules" ] || (cd "$js" && npm ci --no-audit --no-fund --loglevel=error)
mode=${1:-soak}
case "$mode" in
  soak)
    BITNET_BIN=$bin node "$js/load.mjs" --seconds "${2:-600}" --clients "${3:-64}"
    ;;
  bench)
    streams=${2:-1,2,4,8,16}
    max_tokens=${3:-128}
    threads=${4:-2}
    model=build/serve-2b4t.gguf
    [ -f "$model" ] || "$bin" synth -o "$model" --shape 2b4t --type i2_s --embd-type q6_k
    parallel=$(tr ',' '\n' <<<"$streams" | sort -n | tail -1)
    log=$(mktemp)
    "$bin" serve -m "$model" --port 0 -t "$threads" --parallel "$parallel" -c $((max_tokens + 64)) >"$log" 2>&1 &
    pid=$!
    trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$log"' EXIT
    for _ in $(seq 600); do grep -q "listening on" "$log" && break; sleep 0.1; done
    url=$(grep -o 'http://[0-9.]*:[0-9]*' "$log" | head -1)
    [ -n "$url" ] || { cat "$log"; exit 1; }
    echo "server: $(grep 'listening on' "$log")"
    node "$js/bench.mjs" --url "$url" --streams "$streams" --max-tokens "$max_tokens"
    ;;
  *)
    echo "usage: $0 soak [SECONDS] [CLIENTS] | bench [STREAMS] [MAX_TOKENS] [THREADS]" >&2
    exit 2
    ;;
esac
