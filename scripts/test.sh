#!/usr/bin/env bash
# The README's test command (CI runs exactly this): installs dependencies, then builds and runs
# every test twice: a Release build (with the CUDA backend where nvcc is found; its GPU tests skip
# without a GPU), and a CPU-only build with AddressSanitizer + UndefinedBehaviorSanitizer;
# then builds the libFuzzer targets with clang and runs each for FUZZ_SECONDS (30) on its seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
jobs=$(nproc)

echo "== release build + tests"
scripts/build.sh build/release -DCMAKE_BUILD_TYPE=Release
ctest --test-dir build/release -j"$jobs" --output-on-failure

echo "== address + undefined-behavior sanitizer build + tests (CPU only: this also checks the build without CUDA)"
scripts/build.sh build/asan -DCMAKE_BUILD_TYPE=Debug -DBITNET_SANITIZE=ON -DBITNET_BENCH=OFF -DBITNET_CUDA=OFF
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build/asan -j"$jobs" --output-on-failure

echo "== libFuzzer targets (clang + ASan/UBSan), ${FUZZ_SECONDS:-30} s each from fuzz/corpus/<name>/"
CC=clang CXX=clang++ scripts/build.sh build/fuzz -DCMAKE_BUILD_TYPE=Release -DBITNET_TESTS=OFF \
  -DBITNET_BENCH=OFF -DBITNET_FUZZ=ON
for exe in build/fuzz/fuzz/fuzz_*; do
  [ -f "$exe" ] && [ -x "$exe" ] || continue
  name=${exe##*/fuzz_}
  work=build/fuzz/corpus/$name  # new inputs go here; the committed seeds stay as they are
  mkdir -p "$work" "fuzz/corpus/$name"
  echo "fuzz_$name"
  if ! UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 "$exe" -max_total_time="${FUZZ_SECONDS:-30}" \
      -timeout=10 -rss_limit_mb=2048 -artifact_prefix="build/fuzz/crash_${name}_" \
      "$work" "fuzz/corpus/$name" >"build/fuzz/fuzz_$name.log" 2>&1; then
    tail -n 60 "build/fuzz/fuzz_$name.log"
    echo "fuzz_$name failed: reproduce with $exe build/fuzz/crash_${name}_*"
    exit 1
  fi
  grep -E '^Done [0-9]+ runs' "build/fuzz/fuzz_$name.log" || true
done

echo "== aarch64 NEON dotprod kernel under qemu-user (bit-exactness only)"
scripts/test-neon-qemu.sh
