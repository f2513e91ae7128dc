#include "quant/shard.h"

#include <vector>

#include "core/error.h"
#include "quant/gemm.h"

namespace bitnet {

namespace {

std::vector<int8_t> unpacked(const TernaryMatrix& m) {
  std::vector<int8_t> w(static_cast<size_t>(m.n * m.k));
  unpack_native(m, w.data());
  return w;
}

void check_range(const char* what, int64_t a, int64_t b, int64_t n) {
  if (a < 0 || b > n || a >= b)
    fail("shard: {} [{}, {}) is not a non-empty range within [0, {})", what, a, b, n);
}

}  // namespace

TernaryMatrix shard_rows(const TernaryMatrix& m, int64_t r0, int64_t r1) {
  check_range("rows", r0, r1, m.n);
  const std::vector<int8_t> w = unpacked(m);
  return pack_native(w.data() + r0 * m.k, r1 - r0, m.k, m.row_scale() + r0);
}

TernaryMatrix shard_row_ranges(const TernaryMatrix& m,
                               const std::vector<std::pair<int64_t, int64_t>>& ranges) {
  if (ranges.empty()) fail("shard: no row ranges");
  const std::vector<int8_t> w = unpacked(m);
  std::vector<int8_t> s;
  std::vector<float> scales;
  for (const auto& [r0, r1] : ranges) {
    check_range("rows", r0, r1, m.n);
    s.insert(s.end(), w.begin() + r0 * m.k, w.begin() + r1 * m.k);
    scales.insert(scales.end(), m.row_scale() + r0, m.row_scale() + r1);
  }
  return pack_native(s.data(), static_cast<int64_t>(scales.size()), m.k, scales.data());
}

TernaryMatrix shard_cols(const TernaryMatrix& m, int64_t c0, int64_t c1) {
  check_range("columns", c0, c1, m.k);
  const std::vector<int8_t> w = unpacked(m);
  const int64_t kc = c1 - c0;
  std::vector<int8_t> s(static_cast<size_t>(m.n * kc));
  for (int64_t r = 0; r < m.n; ++r)
    for (int64_t c = 0; c < kc; ++c)
      s[static_cast<size_t>(r * kc + c)] = w[static_cast<size_t>(r * m.k + c0 + c)];
  return pack_native(s.data(), m.n, kc, m.row_scale());
}

QuantizedActs shard_acts(Arena& arena, const QuantizedActs& x, int64_t c0, int64_t c1) {
  check_range("activation columns", c0, c1, x.k);
  QuantizedActs s = alloc_quantized_acts(arena, x.m, c1 - c0);
  for (int64_t t = 0; t < x.m; ++t) {
    const int8_t* from = x.q + t * x.k_pad + c0;
    int8_t* to = s.q + t * s.k_pad;
    int32_t sum = 0;
    for (int64_t c = 0; c < s.k; ++c) sum += to[c] = from[c];
    for (int64_t c = s.k; c < s.k_pad; ++c) to[c] = 0;
    s.sum[t] = sum;
    s.scale[t] = x.scale[t];
    s.dq[t] = x.dq[t];
  }
  return s;
}

void ternary_epilogue(const int32_t* acc, int64_t ld_acc, const TernaryMatrix& w, const QuantizedActs& x,
                      float* y, int64_t ld_y) {
  for (int64_t t = 0; t < x.m; ++t)
    for (int64_t r = 0; r < w.n; ++r)
      y[t * ld_y + r] = gemm_scale(acc[t * ld_acc + r], w.row_scale()[r], x.dq[t]);
}

}  // namespace bitnet
