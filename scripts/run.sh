#!/usr/bin/env bash
# The README's main-job command: builds bitnet, writes the embedded default model (a synthetic
# BitNet b1.58 model with random ternary weights, made deterministically by `bitnet synth`: its
# text is meaningless until the project trains its own small model) and generates from it.
# Extra arguments go to `bitnet run` (e.g. -p "your prompt" -n 64).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Same configuration as the test command (so the two share one build), but only the CLI is built.
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j"$(nproc)" --target bitnet
bin=build/release/tools/bitnet/bitnet
model=build/default-tiny-i2_s.gguf
[ -f "$model" ] || "$bin" synth -o "$model" --shape tiny --type i2_s --seed 1
"$bin" info
echo "== bitnet run (synthetic default model: random weights, meaningless text)"
if [ $# -eq 0 ]; then set -- -p "Once upon a time" -n 48 --seed 1; fi
"$bin" run -m "$model" -t "${THREADS:-2}" "$@"
