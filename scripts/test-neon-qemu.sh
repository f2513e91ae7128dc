#!/usr/bin/env bash
# Cross-compiles the NEON dotprod kernel check for aarch64 and runs it under qemu-user, so the ARM
# kernel is tested for bit-exactness on this project's x86-64 machines (speed is not measured).
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/neon
mkdir -p "$out/inc"
ln -sfn /usr/include/fmt "$out/inc/fmt"  # header-only fmt; nothing else from the host's /usr/include
srcs=(src/core/error.cpp src/core/cpu.cpp src/core/memory.cpp src/core/arena.cpp src/core/thread_pool.cpp
      src/quant/act_quant.cpp src/quant/dispatch.cpp src/quant/native.cpp src/quant/gemm.cpp src/quant/gemm_ref.cpp
      src/quant/gemm_neon.cpp tests/neon/neon_check.cpp)
aarch64-linux-gnu-g++ -std=c++20 -O2 -Wall -Wextra -Werror -Wno-unused-parameter \
  -march=armv8.2-a+dotprod -DFMT_HEADER_ONLY -DBITNET_HAVE_NEON_KERNELS=1 \
  -Isrc -isystem "$out/inc" "${srcs[@]}" -static -o "$out/neon_check"
qemu-aarch64 "$out/neon_check"
