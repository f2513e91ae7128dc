#!/usr/bin/env bash
# Usage: scripts/build.sh DIR [cmake options...]  -- configure (once) and build with Ninja.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$1
shift
cmake -S . -B "$dir" -G Ninja "$@" >/dev/null
cmake --build "$dir" -j"$(nproc)"
