#!/usr/bin/env bash
# The README's test command (CI runs exactly this): installs dependencies, then builds and runs
# every test twice: a Release build, and a build with AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
jobs=$(nproc)

echo "== release build + tests"
scripts/build.sh build/release -DCMAKE_BUILD_TYPE=Release
ctest --test-dir build/release -j"$jobs" --output-on-failure

echo "== address + undefined-behavior sanitizer build + tests"
scripts/build.sh build/asan -DCMAKE_BUILD_TYPE=Debug -DBITNET_SANITIZE=ON -DBITNET_BENCH=OFF
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build/asan -j"$jobs" --output-on-failure

echo "== aarch64 NEON dotprod kernel under qemu-user (bit-exactness only)"
scripts/test-neon-qemu.sh
