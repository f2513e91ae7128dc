#include "quant/native.h"

#include <cstring>

#include "core/error.h"

namespace bitnet {
TernaryMatrix alloc_native(int64_t n, int64_t k) {
  BN_CHECK(n > 0 && k > 0, "empty matrix {}x{}", n, k);
  TernaryMatrix m;
  m.n = n;
  m.k = k;
  m.n_pad = static_cast<int64_t>(round_up(static_cast<size_t>(n), kRowBlock));
  m.k_pad = static_cast<int64_t>(round_up(static_cast<size_t>(k), kKAlign));
  m.packed = AlignedBuffer(static_cast<size_t>(m.n_pad * m.k_pad / 4), false);  // filled below
  m.row_scale_buf = AlignedBuffer(static_cast<size_t>(m.n_pad) * sizeof(float));
  // All codes 1 (w = 0): 0b01010101 per byte, so padding contributes nothing.
  std::memset(m.packed.data(), 0x55, m.packed.size());
  return m;
}

void pack_native_rows(TernaryMatrix& m, int64_t row0, const int8_t* w, int64_t rows, const float* row_scales) {
  BN_CHECK(row0 >= 0 && rows >= 0 && row0 + rows <= m.n, "rows {}+{} of {}", row0, rows, m.n);
  uint8_t* p = m.packed.data();
  const int64_t k = m.k, chunks = m.k_pad / kChunkK, full = k / kChunkK;
  for (int64_t j = 0; j < rows; ++j) {
    const int64_t row = row0 + j, rb = row / kRowBlock, r = row % kRowBlock;
    const int8_t* src = w + j * k;
    uint8_t* dst = p + rb * chunks * kChunkBytes + 4 * r;
    unsigned bad = 0;
    // Byte i of a row's 4-byte group in chunk c holds columns 16c + 4s + i at bits 2s.
    for (int64_t c = 0; c < full; ++c) {
      const int8_t* v = src + c * kChunkK;
      for (int i = 0; i < 4; ++i) {
        unsigned byte = 0;
        for (int s = 0; s < 4; ++s) {
          const unsigned code = static_cast<unsigned>(v[4 * s + i] + 1);
          bad |= code > 2;
          byte |= (code & 3) << (2 * s);
        }
        dst[c * kChunkBytes + i] = static_cast<uint8_t>(byte);
      }
    }
    for (int64_t col = full * kChunkK; col < k; ++col) {  // a partial last chunk
      const unsigned code = static_cast<unsigned>(src[col] + 1);
      bad |= code > 2;
      const int64_t c = col / kChunkK, s = (col % kChunkK) / 4, i = col % 4;
      uint8_t& byte = dst[c * kChunkBytes + i];
      byte = static_cast<uint8_t>((byte & ~(3u << (2 * s))) | ((code & 3) << (2 * s)));
    }
    BN_CHECK(!bad, "row {} holds a value that is not ternary", row);
    m.row_scale_buf.as<float>()[row] = row_scales[j];
  }
}

TernaryMatrix pack_native(const int8_t* w, int64_t n, int64_t k, const float* row_scales) {
  TernaryMatrix m = alloc_native(n, k);
  pack_native_rows(m, 0, w, n, row_scales);
  return m;
}

TernaryMatrix pack_native(const int8_t* w, int64_t n, int64_t k, float scale) {
  std::vector<float> s(static_cast<size_t>(n), scale);
  return pack_native(w, n, k, s.data());
}

TernaryMatrix random_native(int64_t n, int64_t k, uint64_t seed, float scale) {
  TernaryMatrix m = alloc_native(n, k);
  // The 81 bytes whose four 2-bit fields are all valid codes (0, 1, 2).
  uint8_t valid[81];
  for (int i = 0; i < 81; ++i) valid[i] = static_cast<uint8_t>(i % 3 | (i / 3 % 3) << 2 | (i / 9 % 3) << 4 | (i / 27) << 6);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  uint8_t* p = m.packed.data();
  for (size_t i = 0; i < m.packed.size(); ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;  // xorshift64
    p[i] = valid[(x >> 32) % 81];
  }
  // Padding rows and columns must hold code 1 (w = 0).
  const int64_t chunks = m.k_pad / kChunkK;
  for (int64_t row = 0; row < m.n_pad; ++row)
    for (int64_t col = row < n ? k : 0; col < m.k_pad; ++col) {
      const int64_t c = col / kChunkK, s = (col % kChunkK) / 4, i = col % 4;
      uint8_t& byte = p[((row / kRowBlock) * chunks + c) * kChunkBytes + 4 * (row % kRowBlock) + i];
      byte = static_cast<uint8_t>((byte & ~(3u << (2 * s))) | (1u << (2 * s)));
    }
  for (int64_t row = 0; row < n; ++row) m.row_scale_buf.as<float>()[row] = scale;
  return m;
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
