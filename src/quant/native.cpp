#include "quant/native.h"

#include <cstring>

#include "core/error.h"

namespace bitnet {

TernaryMatrix pack_native(const int8_t* w, int64_t n, int64_t k, const float* row_scales) {
  BN_CHECK(n > 0 && k > 0, "empty matrix {}x{}", n, k);
  TernaryMatrix m;
  m.n = n;
  m.k = k;
  m.n_pad = static_cast<int64_t>(round_up(static_cast<size_t>(n), kRowBlock));
  m.k_pad = static_cast<int64_t>(round_up(static_cast<size_t>(k), kKAlign));
  m.packed = AlignedBuffer(static_cast<size_t>(m.n_pad * m.k_pad / 4));
  m.row_scale_buf = AlignedBuffer(static_cast<size_t>(m.n_pad) * sizeof(float));
  m.row_sum_buf = AlignedBuffer(static_cast<size_t>(m.n_pad) * sizeof(int32_t));
  // Start from all codes = 1 (w = 0): 0b01010101 per byte, so padding contributes nothing.
  std::memset(m.packed.data(), 0x55, m.packed.size());
  uint8_t* p = m.packed.data();
  const int64_t chunks = m.k_pad / kChunkK;
  for (int64_t row = 0; row < n; ++row) {
    const int64_t rb = row / kRowBlock, r = row % kRowBlock;
    int32_t sum = 0;
    for (int64_t col = 0; col < k; ++col) {
      const int8_t v = w[row * k + col];
      BN_CHECK(v >= -1 && v <= 1, "value {} at ({}, {}) is not ternary", v, row, col);
      sum += v;
      const int64_t c = col / kChunkK, s = (col % kChunkK) / 4, i = col % 4;
      uint8_t& byte = p[(rb * chunks + c) * kChunkBytes + 4 * r + i];
      byte = static_cast<uint8_t>((byte & ~(3u << (2 * s))) | (static_cast<unsigned>(v + 1) << (2 * s)));
    }
    m.row_scale_buf.as<float>()[row] = row_scales[row];
    m.row_sum_buf.as<int32_t>()[row] = sum;
  }
  return m;
}

TernaryMatrix pack_native(const int8_t* w, int64_t n, int64_t k, float scale) {
  std::vector<float> s(static_cast<size_t>(n), scale);
  return pack_native(w, n, k, s.data());
}

void unpack_native(const TernaryMatrix& m, int8_t* w) {
  const int64_t chunks = m.k_pad / kChunkK;
  for (int64_t row = 0; row < m.n; ++row) {
    const int64_t rb = row / kRowBlock, r = row % kRowBlock;
    for (int64_t col = 0; col < m.k; ++col) {
      const int64_t c = col / kChunkK, s = (col % kChunkK) / 4, i = col % 4;
      const uint8_t byte = m.packed.data()[(rb * chunks + c) * kChunkBytes + 4 * r + i];
      w[row * m.k + col] = static_cast<int8_t>(static_cast<int>((byte >> (2 * s)) & 3) - 1);
    }
  }
}

TernaryMatrix concat_rows(const std::vector<const TernaryMatrix*>& parts) {
  BN_CHECK(!parts.empty());
  const int64_t k = parts[0]->k;
  int64_t n = 0;
  for (const auto* p : parts) {
    BN_CHECK(p->k == k, "concat of matrices with k {} and {}", k, p->k);
    n += p->n;
  }
  std::vector<int8_t> w(static_cast<size_t>(n * k));
  std::vector<float> scales;
  int64_t off = 0;
  for (const auto* p : parts) {
    unpack_native(*p, w.data() + off * k);
    scales.insert(scales.end(), p->row_scale(), p->row_scale() + p->n);
    off += p->n;
  }
  return pack_native(w.data(), n, k, scales.data());
}

}  // namespace bitnet
