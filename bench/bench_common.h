#pragma once
// Shared set-up for the kernel benchmarks: BitNet b1.58 2B4T matrix shapes, random ternary
// weights packed in the native layout, quantized random activations.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/arena.h"
#include "quant/gemm.h"
#include "quant/random_data.h"

namespace bitnet::bench {

struct Shape {
  const char* name;
  int64_t n, k;
};
// Per layer: q/o 2560x2560, k/v 640x2560, gate/up 6912x2560, down 2560x6912; fused q|k|v and
// gate|up as the engine stores them.
inline constexpr Shape kShapes[] = {{"q_o", 2560, 2560},     {"k_v", 640, 2560},
                                    {"gate_up", 6912, 2560}, {"down", 2560, 6912},
                                    {"qkv", 3840, 2560},     {"gate|up", 13824, 2560}};

// Enough copies of the matrix that one pass over them (>= 256 MB) cannot be served from cache:
// decode reads every weight once per token, so GEMV figures must come from DRAM.
inline std::vector<TernaryMatrix> weight_copies(const Shape& s, double min_total_bytes) {
  auto w = random_ternary(static_cast<size_t>(s.n * s.k), 42);
  std::vector<TernaryMatrix> ws;
  ws.push_back(pack_native(w.data(), s.n, s.k, 1.0f));
  const int copies = std::max(1, static_cast<int>(min_total_bytes / static_cast<double>(ws[0].bytes())) + 1);
  for (int i = 1; i < copies; ++i) ws.push_back(pack_native(w.data(), s.n, s.k, 1.0f));
  return ws;
}

inline QuantizedActs random_acts(Arena& arena, int64_t m, int64_t k) {
  auto x = random_floats(static_cast<size_t>(m * k), 7);
  auto a = alloc_quantized_acts(arena, m, k);
  quantize_acts(x.data(), k, a);
  return a;
}

}  // namespace bitnet::bench
