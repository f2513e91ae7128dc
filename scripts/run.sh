#!/usr/bin/env bash
# The README's main-job command: builds bitnet and generates text with the project's own model,
# models/bitnet-en.gguf (a BitNet b1.58 model trained by `bitnet train`: models/README.md), which
# `bitnet run` uses when no -m is given. Extra arguments go to `bitnet run` (e.g. -p "your prompt").
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Same configuration as the test command (so the two share one build), but only the CLI is built.
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j"$(nproc)" --target bitnet
bin=build/release/tools/bitnet/bitnet
"$bin" info
if [ $# -eq 0 ]; then set -- -p "And the king said" -n 200 --seed 1; fi
echo "== bitnet run $*"
"$bin" run -t "${THREADS:-2}" "$@"
