// Q6_KX (quant/q6_kx.h): Q6_K with 16 rows interleaved for the head kernels, byte for byte.
#include <gtest/gtest.h>

#include <cstring>

#include "core/error.h"
#include "quant/dequant.h"
#include "quant/q6_kx.h"
#include "quant/quantize_rows.h"
#include "quant/random_data.h"

namespace bitnet {
namespace {

// Value v of a Q6_K block, as dequant.h documents it.
int q6_code(const uint8_t* blk, int v) {
  const int h = v / 128, quarter = v % 128 / 32, l = v % 32;
  const int ql = blk[64 * h + l + 32 * (quarter & 1)] >> (4 * (quarter >> 1)) & 15;
  const int qh = blk[128 + 32 * h + l] >> (2 * quarter) & 3;
  return ql | qh << 4;
}

// The documented layout, read out by hand from a table of 19 rows (a group of 16 and one of 3).
TEST(Q6_KX, LayoutIsTheDocumentedOne) {
  const int64_t rows = 19, n = 512, nb = 2, rb = 420;
  auto f = random_floats(static_cast<size_t>(rows * n), 3);
  const auto q6 = quantize_rows(DType::Q6_K, f.data(), rows, n);
  std::vector<uint8_t> x(q6.size(), 0xEE);
  repack_q6_kx_rows(q6.data(), rows, n, x.data());
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t g0 = r / 16 * 16, R = r < 16 ? 16 : 3, l = r - g0;
    const uint8_t* g = x.data() + g0 * rb;
    for (int64_t b = 0; b < nb; ++b) {  // nb = 2: one pair, codes | scales | d
      const uint8_t* blk = q6.data() + r * rb + b * 210;
      EXPECT_EQ(std::memcmp(g + 2 * 208 * R + b * 2 * R + 2 * l, blk + 208, 2), 0) << r;
      for (int64_t j = 0; j < 16; ++j) {
        EXPECT_EQ(g[2 * 192 * R + (b * 16 + j) * R + l], blk[192 + j]) << r;
        for (int64_t i = 0; i < 4; ++i) {
          int code3 = 0;
          for (int64_t c = 0; c < 3; ++c) {
            const uint8_t byte = g[((b * 16 + j) * 3 + c) * 4 * R + 4 * l + i];
            EXPECT_EQ(byte & 63, q6_code(blk, static_cast<int>(16 * j + 4 * c + i)))
                << r << " " << b << " " << j;
            code3 |= (byte >> 6) << (2 * c);
          }
          EXPECT_EQ(code3, q6_code(blk, static_cast<int>(16 * j + 12 + i))) << r << " " << b << " " << j;
        }
      }
    }
  }
}

// Regrouping moves bits only: every row reads back as its Q6_K bytes, for row counts with and
// without a last group of fewer than 16 rows, and a table repacked in slices of whole groups is
// the table repacked at once.
TEST(Q6_KX, ReadsBackAsQ6_K) {
  for (int64_t n : {256, 768}) {
    for (int64_t rows : {1, 5, 16, 17, 37, 64}) {
      auto f = random_floats(static_cast<size_t>(rows * n), static_cast<uint64_t>(n + rows));
      const auto q6 = quantize_rows(DType::Q6_K, f.data(), rows, n);
      ASSERT_EQ(row_bytes(DType::Q6_KX, n), row_bytes(DType::Q6_K, n));
      std::vector<uint8_t> x(q6.size()), back(q6.size()), one(row_bytes(DType::Q6_K, n));
      repack_q6_kx_rows(q6.data(), rows, n, x.data());
      unpack_q6_kx_rows(x.data(), rows, n, back.data());
      ASSERT_EQ(back, q6) << "n=" << n << " rows=" << rows;
      for (int64_t r = 0; r < rows; ++r) {
        q6_kx_row_to_q6_k(x.data(), rows, n, r, one.data());
        ASSERT_EQ(std::memcmp(one.data(), q6.data() + r * one.size(), one.size()), 0) << r;
      }
      std::vector<uint8_t> sliced(q6.size());
      const size_t rb = one.size();
      for (int64_t r0 = 0; r0 < rows; r0 += 32)
        repack_q6_kx_rows(q6.data() + r0 * rb, std::min<int64_t>(32, rows - r0), n, sliced.data() + r0 * rb);
      ASSERT_EQ(sliced, x);
    }
  }
}

TEST(Q6_KX, RowsOfPartSuperblocksAreErrors) {
  std::vector<uint8_t> a(210 * 2), b(a.size());
  EXPECT_THROW(repack_q6_kx_rows(a.data(), 1, 300, b.data()), Error);
  EXPECT_THROW(q6_kx_row_to_q6_k(a.data(), 1, 100, 0, b.data()), Error);
}

}  // namespace
}  // namespace bitnet
