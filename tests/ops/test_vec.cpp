#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "ops/vec.h"
#include "quant/dequant.h"
#include "quant/quantize_rows.h"
#include "quant/random_data.h"

namespace bitnet {

TEST(Vec, DotAndAxpyMatchReferenceOnOddSizes) {
  for (int64_t n : {1, 15, 16, 17, 63, 64, 65, 1000, 2561}) {
    auto a = random_floats(static_cast<size_t>(n), 1), b = random_floats(static_cast<size_t>(n), 2);
    double exact = 0, mag = 0;
    for (int64_t i = 0; i < n; ++i) exact += static_cast<double>(a[i]) * b[i], mag += std::fabs(a[i] * b[i]);
    EXPECT_NEAR(dot_f32(a.data(), b.data(), n), exact, 1e-6 * mag + 1e-7) << n;
    auto y = random_floats(static_cast<size_t>(n), 3);
    auto y2 = y;
    axpy_f32(0.5f, a.data(), y.data(), n);
    for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(y[i], y2[i] + 0.5f * a[i], 1e-6f) << n;
  }
}

TEST(Vec, SumSquaresAndScaleMulMatchThePlainLoops) {
  for (int64_t n : {1, 7, 8, 15, 16, 17, 100, 2560, 6913}) {
    auto x = random_floats(static_cast<size_t>(n), 11), w = random_floats(static_cast<size_t>(n), 12);
    double ss = 0;
    for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
    EXPECT_NEAR(sum_squares_f64(x.data(), n), ss, static_cast<double>(n) * std::ldexp(1.0, -53) * ss)
        << n;  // summation-order bound
    std::vector<float> r(static_cast<size_t>(n));
    relu2_mul(x.data(), w.data(), r.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      const float g = x[i] > 0 ? x[i] : 0.0f, want = g * g * w[i];
      ASSERT_EQ(std::memcmp(&r[i], &want, 4), 0) << n << " " << i;
    }
    std::vector<float> y(static_cast<size_t>(n)), z = x;
    scale_mul_f32(x.data(), 0.37f, w.data(), y.data(), n);
    scale_mul_f32(z.data(), 0.37f, w.data(), z.data(), n);  // in place
    for (int64_t i = 0; i < n; ++i) {
      const float want = x[i] * 0.37f * w[i];
      ASSERT_EQ(std::memcmp(&y[i], &want, 4), 0) << n << " " << i;
      ASSERT_EQ(std::memcmp(&z[i], &want, 4), 0) << n << " " << i;
    }
  }
}

// Keys [rows][n] (row-major halves) -> the tiled, transposed layout dot_f16_tiles reads:
// key j's value i at (j / 16) * 16 * n + i * 16 + j % 16; lanes past `rows` hold `pad`.
static std::vector<uint16_t> tile_keys(const std::vector<uint16_t>& k, int64_t rows, int64_t n,
                                       uint16_t pad) {
  const int64_t tiles = (rows + kKeyTile - 1) / kKeyTile;
  std::vector<uint16_t> t(static_cast<size_t>(tiles * kKeyTile * n), pad);
  for (int64_t j = 0; j < rows; ++j)
    for (int64_t i = 0; i < n; ++i)
      t[static_cast<size_t>((j / 16) * 16 * n + i * 16 + j % 16)] = k[static_cast<size_t>(j * n + i)];
  return t;
}

// Scores over tiled half keys: bit-identical to the plain fma chains for key counts with tails,
// head sizes with tails and any number of queries; a query's scores are independent of G and of
// where the key range starts (at a tile boundary); lanes past the last key (even NaN) are not
// stored.
TEST(Vec, TiledKeyScoresAreExactFmaChains) {
  for (int64_t n : {1, 16, 64, 80, 128, 130}) {
    for (int64_t rows : {1, 15, 16, 17, 31, 32, 33, 37, 100, 129}) {
      for (int G : {1, 2, 3, 4, 5, 8, 9, 13}) {
        std::vector<uint16_t> k(static_cast<size_t>(rows * n));
        auto f = random_floats(k.size(), static_cast<uint64_t>(n * 131 + rows));
        for (size_t i = 0; i < k.size(); ++i) k[i] = f32_to_f16(f[i]);
        const std::vector<uint16_t> kt = tile_keys(k, rows, n, 0x7E00);  // pad with NaN
        auto q = random_floats(static_cast<size_t>(G * n), static_cast<uint64_t>(G));
        const int64_t lds = rows + 3;
        std::vector<float> s(static_cast<size_t>(G * lds), -1.0f), want = s;
        dot_f16_tiles(kt.data(), rows, q.data(), n, G, n, 0.125f, s.data(), lds);
        dot_f16_tiles_ref(kt.data(), rows, q.data(), n, G, n, 0.125f, want.data(), lds);
        ASSERT_EQ(std::memcmp(s.data(), want.data(), s.size() * 4), 0) << n << " " << rows << " " << G;
        for (int g = 0; g < G; ++g)
          for (int64_t j = 0; j < rows; ++j) {
            float c = 0;  // the chain written out from the row-major keys
            for (int64_t i = 0; i < n; ++i)
              c = std::fma(q[static_cast<size_t>(g * n + i)], f16_to_f32(k[static_cast<size_t>(j * n + i)]),
                           c);
            ASSERT_EQ(s[static_cast<size_t>(g * lds + j)], c * 0.125f)
                << n << " " << rows << " " << G << " " << j;
          }
        for (int g = 0; g < G; ++g) ASSERT_EQ(s[static_cast<size_t>(g * lds + rows)], -1.0f);  // untouched
        // one query alone, keys from the second tile on: the same values
        if (rows > 16) {
          std::vector<float> one(static_cast<size_t>(rows - 16));
          dot_f16_tiles(kt.data() + 16 * n, rows - 16, q.data() + (G - 1) * n, n, 1, n, 0.125f, one.data(),
                        rows);
          ASSERT_EQ(std::memcmp(one.data(), s.data() + (G - 1) * lds + 16, one.size() * 4), 0)
              << n << " " << rows;
        }
      }
    }
  }
}

// Values as rows: the grouped pass equals one axpy_f16 per row, in order, for any G.
TEST(Vec, GroupedHalfValueRows) {
  for (int64_t n : {16, 64, 80, 128, 130}) {
    for (int G : {1, 3, 4, 5, 8, 9, 13}) {
      const int64_t rows = 37, ld = n + 8;
      std::vector<uint16_t> kv(static_cast<size_t>(rows * ld));
      auto f = random_floats(kv.size(), static_cast<uint64_t>(n + G));
      for (size_t i = 0; i < kv.size(); ++i) kv[i] = f32_to_f16(f[i]);
      auto p = random_floats(static_cast<size_t>(G * rows), 4, 0.0f, 1.0f);
      std::vector<float> o(static_cast<size_t>(G * n), 0.25f), o1 = o;
      axpy_f16_rows(p.data(), rows, kv.data(), ld, rows, G, n, o.data(), n);
      for (int g = 0; g < G; ++g)
        for (int64_t j = 0; j < rows; ++j)
          axpy_f16(p[static_cast<size_t>(g * rows + j)], kv.data() + j * ld, o1.data() + g * n, n);
      for (size_t i = 0; i < o.size(); ++i) ASSERT_NEAR(o[i], o1[i], 1e-5f) << n << " " << G << " " << i;
    }
  }
}

// The dispatched log-sum-exp (polynomial exp on AVX-512) against std::exp: the sum's relative
// error is that of one exp (< 2^-23), so log Z is within about 1.2e-7 absolute of the
// reference's; extreme spreads (terms underflowing to 0) and huge logits included.
TEST(Vec, LogSumExpMatchesReference) {
  for (int64_t n : {1, 2, 15, 16, 17, 100, 1000, 128256}) {
    for (float spread : {0.0f, 0.01f, 5.0f, 60.0f, 300.0f}) {
      auto x = random_floats(static_cast<size_t>(n), static_cast<uint64_t>(n) + 7, -spread, spread);
      if (n > 2) x[static_cast<size_t>(n / 2)] = 1e30f;  // one huge logit: log Z is that logit
      const double got = log_sum_exp_row(x.data(), n), want = log_sum_exp_row_ref(x.data(), n);
      ASSERT_NEAR(got, want, 2e-7 * std::max(1.0, std::fabs(want))) << n << " " << spread;
      if (n > 2) {
        EXPECT_EQ(got, static_cast<double>(1e30f));
      }
      // exact where every term is 1: log n
      if (spread == 0.0f && n <= 2) {
        EXPECT_NEAR(got, std::log(static_cast<double>(n)), 1e-12) << n;
      }
    }
  }
}

// The dispatched softmax (polynomial exp on AVX-512) against std::exp: within a few float ulps,
// probabilities summing to 1, masked tails untouched, extreme spreads (underflow to 0) handled.
TEST(Vec, SoftmaxMatchesReference) {
  for (int64_t n : {1, 2, 15, 16, 17, 100, 1000}) {
    for (float spread : {0.01f, 5.0f, 60.0f, 300.0f}) {
      auto x = random_floats(static_cast<size_t>(n + 1), static_cast<uint64_t>(n), -spread, spread);
      x[static_cast<size_t>(n)] = 12345.0f;  // past the end: must stay
      for (bool half : {false, true}) {
        auto a = x, b = x;
        softmax_row(a.data(), n, half);
        softmax_row_ref(b.data(), n, half);
        double sum = 0;
        for (int64_t j = 0; j < n; ++j) {
          const float got = a[static_cast<size_t>(j)], want = b[static_cast<size_t>(j)];
          sum += got;
          ASSERT_GE(got, 0.0f);
          // float: a few ulps (exp's error and the sum's rounding); half: at most one half ulp step.
          // Terms below exp(-86) (4.4e-38) are 0 on AVX-512, not subnormal (vec_avx512.cpp exp_neg).
          const float tol = half ? std::max(want * 0x1p-10f, 0x1p-24f) : std::max(want * 4e-7f, 4.5e-38f);
          ASSERT_NEAR(got, want, tol) << n << " " << spread << " " << half << " " << j;
        }
        EXPECT_NEAR(sum, 1.0, half ? 1e-3 * std::sqrt(static_cast<double>(n)) : 1e-5) << n << " " << spread;
        EXPECT_EQ(a[static_cast<size_t>(n)], 12345.0f);
      }
    }
  }
}

// Terms far below the largest give exactly 0, never subnormal values (which cost microcode
// assists on Intel cores), and leave the others as they are.
TEST(Vec, SoftmaxTermsBelowExpMinus86AreZero) {
  std::vector<float> x = {0.0f, -1.0f, -90.0f, -100.0f, -1000.0f, 0.0f, -2.0f, -87.5f, -120.0f, 0.5f,
                          -3.0f, -95.0f, -60.0f, -4.0f, -200.0f, -5.0f, -101.0f};
  auto y = x;
  softmax_row(y.data(), static_cast<int64_t>(y.size()), false);
  for (size_t j = 0; j < x.size(); ++j) {
    if (x[j] - 0.5f < -86.0f) {
      EXPECT_EQ(y[j], 0.0f) << j;
    }
    EXPECT_TRUE(y[j] == 0.0f || std::fpclassify(y[j]) == FP_NORMAL) << j;
  }
  const double lse = log_sum_exp_row(x.data(), static_cast<int64_t>(x.size()));
  EXPECT_NEAR(lse, log_sum_exp_row_ref(x.data(), static_cast<int64_t>(x.size())), 1e-6);
}

TEST(Vec, RopeMatchesTheReferenceBitForBit) {
  for (bool neox : {true, false})
    for (int64_t rd : {2, 6, 16, 30, 34, 64, 100, 128}) {
      const int64_t hd = rd + (rd % 3) * 2, heads = 3, half = rd / 2;
      auto x = random_floats(static_cast<size_t>(heads * hd), 21 + rd);
      auto ang = random_floats(static_cast<size_t>(half), 22 + rd, -3.0f, 3.0f);
      std::vector<float> cs(static_cast<size_t>(half)), sn(static_cast<size_t>(half));
      for (int64_t i = 0; i < half; ++i) cs[i] = std::cos(ang[i]), sn[i] = std::sin(ang[i]);
      auto got = x, want = x;
      rope_rotate(got.data(), heads, hd, rd, cs.data(), sn.data(), neox);
      rope_rotate_ref(want.data(), heads, hd, rd, cs.data(), sn.data(), neox);
      ASSERT_EQ(std::memcmp(got.data(), want.data(), got.size() * 4), 0) << neox << " " << rd;
      for (int64_t h = 0; h < heads; ++h)  // values past rope_dim are left alone
        for (int64_t i = rd; i < hd; ++i) ASSERT_EQ(got[h * hd + i], x[h * hd + i]);
      // One pair by hand: a' = a c - b s, b' = a s + b c.
      const int64_t a = neox ? 1 % half : 2 * (1 % half), b = neox ? a + half : a + 1;
      const float c = cs[1 % half], si = sn[1 % half];
      EXPECT_NEAR(want[a], x[a] * c - x[b] * si, 1e-6f);
      EXPECT_NEAR(want[b], x[a] * si + x[b] * c, 1e-6f);
    }
}

TEST(Vec, StridedHalfStoreMatchesScalarConversion) {
  for (int64_t n : {1, 63, 64, 65, 130}) {
    auto x = random_floats(static_cast<size_t>(n), 5, -70000.0f, 70000.0f);
    std::vector<uint16_t> dst(static_cast<size_t>(n * 16), 0xABCD);
    f32_to_f16_strided(x.data(), dst.data(), 16, n);
    for (int64_t i = 0; i < n * 16; ++i)
      ASSERT_EQ(dst[i], i % 16 ? 0xABCD : f32_to_f16(x[i / 16])) << n << " " << i;
  }
}

TEST(Vec, HalfConversionsAreExact) {
  std::vector<uint16_t> h(1000);
  for (size_t i = 0; i < h.size(); ++i) h[i] = static_cast<uint16_t>(i * 65 + 7);
  std::vector<float> f(h.size()), g(h.size());
  f16_to_f32_row(h.data(), f.data(), 999);
  bf16_to_f32_row(h.data(), g.data(), 999);
  for (size_t i = 0; i < 999; ++i) {
    const float want = f16_to_f32(h[i]), wantb = bf16_to_f32(h[i]);
    EXPECT_EQ(std::memcmp(&f[i], &want, 4), 0) << i;
    EXPECT_EQ(std::memcmp(&g[i], &wantb, 4), 0) << i;
  }
}

TEST(Dequant, KnownBlocks) {
  // Q8_0: d = 0.5 (fp16 0x3800), qs = -3, 4, 0...
  uint8_t q8[34] = {0x00, 0x38, 0xFD, 0x04};
  float y[256];
  dequantize_row(DType::Q8_0, q8, 32, y);
  EXPECT_EQ(y[0], -1.5f);
  EXPECT_EQ(y[1], 2.0f);
  EXPECT_EQ(y[2], 0.0f);
  // Q4_0: d = 2.0 (0x4000), qs[0] = 0x9F: low nibble 15 -> (15-8)*2 = 14 at y[0], high 9 -> 2 at y[16].
  uint8_t q4[18] = {0x00, 0x40, 0x9F};
  dequantize_row(DType::Q4_0, q4, 32, y);
  EXPECT_EQ(y[0], 14.0f);
  EXPECT_EQ(y[16], 2.0f);
  EXPECT_EQ(y[1], -16.0f);  // nibble 0 -> -8 * 2
  // Q6_K: d = 1.0 (0x3C00 at byte 208), scales[0] = 2, scales[2] = -1; ql[0] = 0x21, qh[0] = 0b00000110
  // -> q1 = (1 | (2 << 4)) - 32 = 1 -> y[0] = 2;  q3 = (2 | (0 << 4)) - 32 = -30 -> y[64] = scales[4] * -30.
  uint8_t q6[210] = {};
  q6[0] = 0x21;
  q6[128] = 0b00000110;
  q6[192] = 2;
  q6[194] = static_cast<uint8_t>(-1);
  q6[196] = 3;
  q6[208] = 0x00;
  q6[209] = 0x3C;
  dequantize_row(DType::Q6_K, q6, 256, y);
  EXPECT_EQ(y[0], 2.0f);    // 1 * scales[0]=2 * 1
  EXPECT_EQ(y[32], 16.0f);  // q2 = (ql[32] & 15) | (qh[0] >> 2 & 3) << 4 = 16 -> -16 * scales[2] (-1)
  EXPECT_EQ(y[64], 3.0f * -30.0f);
}

}  // namespace bitnet

namespace bitnet {

TEST(QuantizeRows, RoundTripWithinEachTypesStep) {
  const int64_t rows = 3, cols = 512;
  auto x = random_floats(static_cast<size_t>(rows * cols), 17, -2.0f, 2.0f);
  for (int i = 0; i < 16; ++i) x[static_cast<size_t>(300 + i)] = 0.0f;  // an all-zero Q6_K sub-block
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q6_K}) {
    const auto bytes = quantize_rows(t, x.data(), rows, cols);
    ASSERT_EQ(bytes.size(), row_bytes(t, cols) * rows);
    std::vector<float> y(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r) {
      dequantize_row(t, bytes.data() + static_cast<size_t>(r) * row_bytes(t, cols), cols, y.data());
      for (int64_t i = 0; i < cols; ++i) {
        const float xi = x[static_cast<size_t>(r * cols + i)], yi = y[static_cast<size_t>(i)];
        float bound = 0;
        if (t == DType::F16) bound = std::fabs(xi) * 0x1p-11f;
        if (t == DType::BF16) bound = std::fabs(xi) * 0x1p-8f;
        if (t == DType::Q8_0) {  // half a step of the block's d, plus fp16 rounding of d times |q| <= 127
          const uint8_t* blk =
              bytes.data() + static_cast<size_t>(r) * row_bytes(t, cols) + static_cast<size_t>(i / 32) * 34;
          uint16_t h;
          std::memcpy(&h, blk, 2);
          bound = 0.5f * f16_to_f32(h) + 127.0f * f16_to_f32(h) * 0x1p-10f;
        }
        if (t == DType::Q4_0) {  // q - 8 spans [-8, 7]: values near -max/... clip to 7, so up to one
                                 // step |d| (ggml's asymmetric range), plus fp16 rounding of d times 8
          const uint8_t* blk =
              bytes.data() + static_cast<size_t>(r) * row_bytes(t, cols) + static_cast<size_t>(i / 32) * 18;
          uint16_t h;
          std::memcpy(&h, blk, 2);
          const float d = std::fabs(f16_to_f32(h));
          bound = d * 1.001f + 8.0f * d * 0x1p-10f;
        }
        if (t == DType::Q6_K) {  // half a step of the sub-block: d * scale / 2
          const uint8_t* blk =
              bytes.data() + static_cast<size_t>(r) * row_bytes(t, cols) + static_cast<size_t>(i / 256) * 210;
          uint16_t h;
          std::memcpy(&h, blk + 208, 2);
          const int8_t sc = static_cast<int8_t>(blk[192 + (i % 256) / 16]);
          bound = 0.5f * f16_to_f32(h) * static_cast<float>(sc) * 1.001f + 1e-7f;
        }
        ASSERT_LE(std::fabs(xi - yi), bound) << dtype_name(t) << " row " << r << " col " << i;
      }
    }
  }
  EXPECT_FALSE(quantize_supported(DType::TQ2_0));
  EXPECT_THROW(quantize_rows(DType::Q6_K, x.data(), 1, 100), Error);
}

}  // namespace bitnet
