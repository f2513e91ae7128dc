#!/usr/bin/env bash
# The README's main-job command. Until the inference engine lands (issue: "Inference engine"),
# the main job is the kernel self-check and timing on the BitNet b1.58 2B4T shapes: no model file
# is needed yet.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh build/release -DCMAKE_BUILD_TYPE=Release -DBITNET_TESTS=OFF -DBITNET_BENCH=OFF
build/release/tools/bitnet/bitnet info
build/release/tools/bitnet/bitnet selftest -t "${THREADS:-2}" "$@"
