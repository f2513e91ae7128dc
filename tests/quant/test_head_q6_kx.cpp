// The Q6_KX head kernels (16 rows across the lanes, quant/q6_kx.h): every variant gives the scalar
// reference's bits, on row counts with a last group of fewer than 16 rows, token counts 1 - 16,
// and the extreme codes, scales and activations; the reference stays within float rounding of
// Q6_K's.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "core/half.h"
#include "quant/dequant.h"
#include "quant/head_dot.h"
#include "quant/q6_kx.h"
#include "quant/quantize_rows.h"
#include "quant/random_data.h"

namespace bitnet {
namespace {

struct Table {
  std::vector<uint8_t> q6, q6x;  // the same rows as Q6_K and as Q6_KX
  std::vector<float> wf;         // dequantized
};

Table from_q6(std::vector<uint8_t> q6, int64_t rows, int64_t n) {
  Table t;
  t.q6 = std::move(q6);
  t.q6x.resize(t.q6.size());
  repack_q6_kx_rows(t.q6.data(), rows, n, t.q6x.data());
  t.wf.resize(static_cast<size_t>(rows * n));
  for (int64_t r = 0; r < rows; ++r)
    dequantize_row(DType::Q6_K, t.q6.data() + r * row_bytes(DType::Q6_K, n), n, t.wf.data() + r * n);
  return t;
}

Table random_table(int64_t rows, int64_t n, uint64_t seed) {
  auto f = random_floats(static_cast<size_t>(rows * n), seed);
  return from_q6(quantize_rows(DType::Q6_K, f.data(), rows, n), rows, n);
}

std::vector<float> run(const HeadVariant& v, DType t, const std::vector<uint8_t>& w,
                       const std::vector<float>& x, int64_t rows, int64_t n, int64_t m) {
  HeadActs a;
  head_prepare(t, x.data(), m, n, a);
  std::vector<float> y(static_cast<size_t>(m * rows), NAN);
  head_matvec_with(v, nullptr, w.data(), row_bytes(t, n), rows, a, y.data());
  return y;
}

std::vector<float> random_acts(int64_t m, int64_t n, uint64_t seed) {
  auto x = random_floats(static_cast<size_t>(m * n), seed);
  for (size_t i = 0; i < x.size(); i += 7) x[i] *= 9.0f;  // uneven block maxima
  return x;
}

// Every variant equals the reference bit for bit (the same integer sums, the same fmas in each
// lane), and the reference is within float rounding of Q6_K's (only the order of the float
// combination differs).
TEST(HeadQ6_KX, EveryVariantGivesTheReferenceBits) {
  const HeadVariant& ref = head_variants()[0];
  for (int64_t n : {256, 768}) {
    for (int64_t rows : {1, 15, 16, 17, 37, 50}) {
      const Table w = random_table(rows, n, static_cast<uint64_t>(rows * 31 + n));
      for (int64_t m = 1; m <= 16; ++m) {
        if (rows != 37 && m % 4 != 1 && m != 8 && m != 16) continue;  // every m on one shape
        const auto x = random_acts(m, n, static_cast<uint64_t>(m * 7 + n));
        const auto want = run(ref, DType::Q6_KX, w.q6x, x, rows, n, m);
        const auto q6 = run(ref, DType::Q6_K, w.q6, x, rows, n, m);
        for (int64_t t = 0; t < m; ++t)
          for (int64_t r = 0; r < rows; ++r) {
            double mag = 0;
            for (int64_t i = 0; i < n; ++i) mag += std::fabs(w.wf[r * n + i] * x[t * n + i]);
            const size_t at = static_cast<size_t>(t * rows + r);
            ASSERT_NEAR(want[at], q6[at], 2e-6 * mag + 1e-30) << "n=" << n << " rows=" << rows << " m=" << m;
          }
        for (const HeadVariant& v : head_variants()) {
          if (!v.cpu_ok() || !v.supports(DType::Q6_KX)) continue;
          const auto got = run(v, DType::Q6_KX, w.q6x, x, rows, n, m);
          ASSERT_EQ(std::memcmp(got.data(), want.data(), got.size() * 4), 0)
              << v.name << " n=" << n << " rows=" << rows << " m=" << m;
        }
      }
    }
  }
}

// A token's logits are the same bits alone as in a pass of 1 - 16 tokens.
TEST(HeadQ6_KX, TokenCountDoesNotChangeTheResult) {
  const int64_t n = 512, rows = 37;
  const Table w = random_table(rows, n, 11);
  for (const HeadVariant& v : head_variants()) {
    if (!v.cpu_ok() || !v.supports(DType::Q6_KX)) continue;
    for (int64_t m = 2; m <= 16; ++m) {
      const auto x = random_acts(m, n, static_cast<uint64_t>(m));
      const auto all = run(v, DType::Q6_KX, w.q6x, x, rows, n, m);
      for (int64_t t = 0; t < m; ++t) {
        const std::vector<float> one(x.begin() + t * n, x.begin() + (t + 1) * n);
        const auto alone = run(v, DType::Q6_KX, w.q6x, one, rows, n, 1);
        ASSERT_EQ(std::memcmp(alone.data(), all.data() + t * rows, alone.size() * 4), 0)
            << v.name << " m=" << m << " token " << t;
      }
    }
  }
}

// Rows [r0, r1) that start and end inside groups: those rows are written (the same bits as in a
// whole pass), no other.
// Also with 8 and 13 tokens (a second pass of tokens over each group).
TEST(HeadQ6_KX, PartRangesWriteOnlyTheirRows) {
  const int64_t n = 256, rows = 50;
  const Table w = random_table(rows, n, 5);
  for (int64_t m : {3, 8, 13})
    for (const HeadVariant& v : head_variants()) {
      const auto x = random_acts(m, n, 6);
      if (!v.cpu_ok() || !v.supports(DType::Q6_KX)) continue;
      const auto whole = run(v, DType::Q6_KX, w.q6x, x, rows, n, m);
      HeadActs a;
      head_prepare(DType::Q6_KX, x.data(), m, n, a);
      for (auto [r0, r1] : {std::pair<int64_t, int64_t>{5, 30},
                            {16, 17},
                            {33, 37},
                            {0, 3},
                            {5, 50},
                            {17, 48},
                            {31, 33},
                            {0, 50}}) {
        std::vector<float> y(static_cast<size_t>(m * rows), NAN);
        v.fn(w.q6x.data(), row_bytes(DType::Q6_KX, n), rows, r0, r1, a, y.data(), rows);
        for (int64_t t = 0; t < m; ++t)
          for (int64_t r = 0; r < rows; ++r) {
            const size_t at = static_cast<size_t>(t * rows + r);
            if (r < r0 || r >= r1)
              ASSERT_TRUE(std::isnan(y[at])) << v.name << " [" << r0 << ", " << r1 << ") wrote row " << r;
            else
              ASSERT_EQ(std::memcmp(&y[at], &whole[at], 4), 0) << v.name << " row " << r;
          }
      }
    }
}

// Extreme stored values: codes 0 and 63 (values -32 and 31) and between, sub-scales -128 and 127
// (the largest block sums, |sum| near 2^27), d a power of two, rows of zeros (code 32, or scale
// 0); activations at +-127 and a token of zeros. Every product is exact in float, so every
// variant must give the hand-computed sums (to the final rounding), and the reference's bits.
TEST(HeadQ6_KX, ExtremeStoredValues) {
  // 37 rows (a last group of 5) and 6 tokens (two of each pattern).
  const int64_t n = 512, nb = 2, rows = 37, m = 6;
  std::vector<uint8_t> q6(static_cast<size_t>(rows * nb * 210), 0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t b = 0; b < nb; ++b) {
      uint8_t* blk = &q6[static_cast<size_t>((r * nb + b) * 210)];
      const int kind = static_cast<int>(r % 7);
      // ql / qh bytes: all codes 0; all 63; 0, 48, 15, 63 mixed; all 32 (zero); per-value varied.
      const uint8_t ql = kind == 0 ? 0x00 : kind == 1 ? 0xFF : kind == 2 ? 0xF0 : kind == 3 ? 0x00 : 0x5A;
      const uint8_t qh = kind == 0 ? 0x00 : kind == 1 ? 0xFF : kind == 2 ? 0xCC : kind == 3 ? 0xAA : 0x93;
      for (int i = 0; i < 128; ++i) blk[i] = static_cast<uint8_t>(ql + (kind >= 4 ? i * 37 : 0));
      for (int i = 0; i < 64; ++i) blk[128 + i] = static_cast<uint8_t>(qh + (kind >= 4 ? i * 11 : 0));
      for (int j = 0; j < 16; ++j) {
        int8_t sc = (j + r) % 2 ? 127 : -128;
        if (kind == 5) sc = 0;  // a row of zeros through its scales
        if (kind == 6) sc = static_cast<int8_t>(j * 17 - 128);
        blk[192 + j] = static_cast<uint8_t>(sc);
      }
      const uint16_t dh = f32_to_f16(std::ldexp(1.0f, -10 - static_cast<int>(b)));
      std::memcpy(blk + 208, &dh, 2);
    }
  const Table w = from_q6(q6, rows, n);
  std::vector<float> x(static_cast<size_t>(m * n));
  for (int64_t t0 = 0; t0 < m; t0 += 3)
    for (int64_t i = 0; i < n; ++i) {
      x[static_cast<size_t>(t0 * n + i)] = 1.0f;                               // all +127
      x[static_cast<size_t>((t0 + 1) * n + i)] = (i % 3 == 0) ? -1.0f : 1.0f;  // +-127
      x[static_cast<size_t>((t0 + 2) * n + i)] = 0.0f;                         // all zero: dx = 0
    }
  const HeadVariant& ref = head_variants()[0];
  const auto want_bits = run(ref, DType::Q6_KX, w.q6x, x, rows, n, m);
  for (const HeadVariant& v : head_variants()) {
    if (!v.cpu_ok() || !v.supports(DType::Q6_KX)) continue;
    const auto got = run(v, DType::Q6_KX, w.q6x, x, rows, n, m);
    ASSERT_EQ(std::memcmp(got.data(), want_bits.data(), got.size() * 4), 0) << v.name;
    for (int64_t t = 0; t < m; ++t)
      for (int64_t r = 0; r < rows; ++r) {
        double want = 0;
        for (int64_t i = 0; i < n; ++i)
          want += w.wf[static_cast<size_t>(r * n + i)] * x[static_cast<size_t>(t * n + i)];
        EXPECT_NEAR(got[static_cast<size_t>(t * rows + r)], want, 1e-6 * std::fabs(want) + 1e-6)
            << v.name << " token " << t << " row " << r;
        if (r % 7 == 3 || r % 7 == 5 || t % 3 == 2) {
          EXPECT_EQ(got[static_cast<size_t>(t * rows + r)], 0.0f) << r;
        }
      }
  }
}

}  // namespace
}  // namespace bitnet
