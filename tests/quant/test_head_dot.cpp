#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "core/thread_pool.h"
#include "quant/dequant.h"
#include "quant/head_dot.h"
#include "quant/q6_kx.h"
#include "quant/q8_0x.h"
#include "quant/quantize_rows.h"
#include "quant/random_data.h"

namespace bitnet {
namespace {

const DType kTypes[] = {DType::F32,  DType::F16,  DType::BF16,  DType::Q8_0,
                        DType::Q4_0, DType::Q6_K, DType::Q8_0X, DType::Q6_KX};

// The file type a load-time layout is made from.
DType file_type(DType t) {
  return t == DType::Q8_0X ? DType::Q8_0 : t == DType::Q6_KX ? DType::Q6_K : t;
}

// Rows in type t; Q8_0X and Q6_KX are written as Q8_0 / Q6_K and regrouped, as the loader does.
std::vector<uint8_t> stored_rows(DType t, const float* x, int64_t rows, int64_t n) {
  const auto file = quantize_rows(file_type(t), x, rows, n);
  if (t == file_type(t)) return file;
  std::vector<uint8_t> out(file.size());
  if (t == DType::Q8_0X)
    repack_q8_0x_rows(file.data(), rows, n, out.data());
  else
    repack_q6_kx_rows(file.data(), rows, n, out.data());
  return out;
}

// Row r of stored rows as floats (Q6_KX: its rows interleave, read back through Q6_K).
void dequantize_stored(DType t, const uint8_t* w, int64_t rows, int64_t n, int64_t r, float* out) {
  const size_t rb = row_bytes(t, n);
  if (t != DType::Q6_KX) return dequantize_row(t, w + static_cast<size_t>(r) * rb, n, out);
  std::vector<uint8_t> q6(rb);
  q6_kx_row_to_q6_k(w, rows, n, r, q6.data());
  dequantize_row(DType::Q6_K, q6.data(), n, out);
}

struct Case {
  std::vector<uint8_t> w;
  size_t row_bytes;
  std::vector<float> wf;  // dequantized rows
  std::vector<float> x;
};

Case make_case(DType t, int64_t rows, int64_t n, int64_t m, uint64_t seed) {
  Case c;
  auto src = random_floats(static_cast<size_t>(rows * n), seed);
  c.w = stored_rows(t, src.data(), rows, n);
  c.row_bytes = row_bytes(t, n);
  c.wf.resize(static_cast<size_t>(rows * n));
  for (int64_t r = 0; r < rows; ++r) dequantize_stored(t, c.w.data(), rows, n, r, c.wf.data() + r * n);
  c.x = random_floats(static_cast<size_t>(m * n), seed + 1);
  for (size_t i = 0; i < c.x.size(); i += 7) c.x[i] *= 9.0f;  // uneven block maxima
  return c;
}

std::vector<float> run(const HeadVariant& v, const Case& c, DType t, int64_t rows, int64_t n, int64_t m,
                       ThreadPool* pool = nullptr) {
  HeadActs a;
  head_prepare(t, c.x.data(), m, n, a);
  std::vector<float> y(static_cast<size_t>(m * rows), NAN);
  head_matvec_with(v, pool, c.w.data(), c.row_bytes, rows, a, y.data());
  return y;
}

// Every variant against the scalar reference: the integer parts are exact and only the float
// combination order differs, so the gap is bounded by a few ulps of the sum of |terms|.
TEST(HeadDot, EveryVariantMatchesTheReference) {
  const HeadVariant& ref = head_variants()[0];
  for (DType t : kTypes) {
    const int64_t blk = dtype_info(t).block_elems;
    for (int64_t n : {blk, 2 * blk, 10 * blk, blk == 1 ? 1001 : 4 * blk}) {
      for (int64_t rows : {1, 5, 37}) {
        for (int64_t m : {1, 3}) {
          const Case c = make_case(t, rows, n, m, static_cast<uint64_t>(n * 131 + rows * 7 + m));
          const auto want = run(ref, c, t, rows, n, m);
          for (const HeadVariant& v : head_variants()) {
            if (!v.cpu_ok() || !v.supports(t)) continue;
            const auto got = run(v, c, t, rows, n, m);
            for (int64_t tk = 0; tk < m; ++tk)
              for (int64_t r = 0; r < rows; ++r) {
                double mag = 0;
                for (int64_t i = 0; i < n; ++i) mag += std::fabs(c.wf[r * n + i] * c.x[tk * n + i]);
                const size_t at = static_cast<size_t>(tk * rows + r);
                ASSERT_NEAR(got[at], want[at], 2e-6 * mag + 1e-30)
                    << v.name << " " << dtype_name(t) << " n=" << n << " rows=" << rows << " m=" << m
                    << " r=" << r;
              }
          }
        }
      }
    }
  }
}

// The reference against the exact dot product of the stored weights and the float input: F32 is
// exact up to float summation; F16/BF16 round x to the weight type; Q8_0 and Q6_K quantize x per
// block, which moves each product by at most |w| * dx / 2.
TEST(HeadDot, ReferenceIsWithinTheActivationRounding) {
  for (DType t : kTypes) {
    const int64_t n = 1024, rows = 9, m = 2;
    const Case c = make_case(t, rows, n, m, 77);
    const auto got = run(head_variants()[0], c, t, rows, n, m);
    HeadActs a;
    head_prepare(t, c.x.data(), m, n, a);
    const int64_t qb = file_type(t) == DType::Q6_K ? 256 : 32;
    for (int64_t tk = 0; tk < m; ++tk)
      for (int64_t r = 0; r < rows; ++r) {
        double exact = 0, mag = 0, bound = 0;
        for (int64_t i = 0; i < n; ++i) {
          const double wv = c.wf[r * n + i], xv = c.x[tk * n + i];
          exact += wv * xv;
          mag += std::fabs(wv * xv);
          if (t == DType::Q8_0 || t == DType::Q6_K || t == DType::Q8_0X || t == DType::Q6_KX)
            bound += std::fabs(wv) * a.d[static_cast<size_t>(tk * (n / qb) + i / qb)] / 2;
          if (t == DType::F16) bound += std::fabs(wv * xv) * std::ldexp(1.0, -11);
          if (t == DType::BF16) bound += std::fabs(wv * xv) * std::ldexp(1.0, -8);
        }
        EXPECT_NEAR(got[static_cast<size_t>(tk * rows + r)], exact, bound * 1.001 + 1e-5 * mag)
            << dtype_name(t) << " r=" << r;
      }
  }
}

// Extreme stored values: Q8_0 quants of -128 and 127 (the kernel's unsigned w + 128 must map them
// to 0 and 255) and Q6_K codes 0 and 63 (and between) with sub-scales -128 and 127; all variants must agree
// exactly with hand-computed integers (the scales are powers of two, so the float parts are exact too).
TEST(HeadDot, ExtremeStoredValues) {
  const int64_t n = 256;
  std::vector<float> x(n);
  for (int64_t i = 0; i < n; ++i)
    x[static_cast<size_t>(i)] = (i % 3 == 0) ? -1.0f : 1.0f;  // xq = +-127, dx = 1/127
  // Q8_0: 8 blocks of {d = 1.0, qs alternating -128, 127}.
  std::vector<uint8_t> q8(8 * 34);
  double want8 = 0;
  for (int b = 0; b < 8; ++b) {
    const uint16_t one = f32_to_f16(1.0f);
    std::memcpy(&q8[static_cast<size_t>(b * 34)], &one, 2);
    for (int i = 0; i < 32; ++i) {
      const int8_t q = i % 2 ? 127 : -128;
      q8[static_cast<size_t>(b * 34 + 2 + i)] = static_cast<uint8_t>(q);
      want8 += q * (x[static_cast<size_t>(b * 32 + i)] < 0 ? -127 : 127);
    }
  }
  want8 /= 127.0;
  // Q6_K: codes 0, 48, 15 and 63 (the extremes -32 and 31 included), scales alternate -128 and
  // 127, d = 2^-10.
  std::vector<uint8_t> q6(210, 0);
  for (int i = 0; i < 128; ++i) q6[static_cast<size_t>(i)] = 0xF0;       // low nibble 0, high nibble 15
  for (int i = 0; i < 64; ++i) q6[static_cast<size_t>(128 + i)] = 0xCC;  // qh pairs: 0,3,0,3
  for (int j = 0; j < 16; ++j)
    q6[static_cast<size_t>(192 + j)] = static_cast<uint8_t>(static_cast<int8_t>(j % 2 ? 127 : -128));
  const uint16_t dh = f32_to_f16(std::ldexp(1.0f, -10));
  std::memcpy(&q6[208], &dh, 2);
  std::vector<float> wf6(n);
  dequantize_row(DType::Q6_K, q6.data(), n, wf6.data());
  double want6 = 0;
  for (int64_t i = 0; i < n; ++i)
    want6 += wf6[static_cast<size_t>(i)] * (x[static_cast<size_t>(i)] < 0 ? -127 : 127);
  want6 /= 127.0;
  for (const HeadVariant& v : head_variants()) {
    if (!v.cpu_ok()) continue;
    for (auto [t, bytes, want] : {std::tuple{DType::Q8_0, &q8, want8}, std::tuple{DType::Q6_K, &q6, want6}}) {
      if (!v.supports(t)) continue;
      HeadActs a;
      head_prepare(t, x.data(), 1, n, a);
      float y = NAN;
      head_matvec_with(v, nullptr, bytes->data(), bytes->size(), 1, a, &y);
      EXPECT_NEAR(y, want, 1e-6 * std::fabs(want) + 1e-6) << v.name << " " << dtype_name(t);
    }
  }
}

// Q6_KX at the extremes of its integer sums: codes all 0 or all 63 (and mixed) against
// activations all -1, all +1 and alternating (xq = -127 and 127), scales -128 and 127, 19 rows (a
// whole group of 16 and one of 3), 1 - 9 tokens: every variant gives the reference's bits (the
// tolerance of EveryVariantMatchesTheReference lets an integer sum off by one pass).
TEST(HeadDot, Q6_KXExtremeSumsGiveTheReferencesBits) {
  const int64_t n = 512, nb = n / 256, rows = 19;
  std::vector<uint8_t> q6(static_cast<size_t>(rows * nb * 210), 0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t b = 0; b < nb; ++b) {
      uint8_t* blk = q6.data() + (r * nb + b) * 210;
      const uint8_t ql = r % 3 == 0   ? 0x00
                         : r % 3 == 1 ? 0xFF
                                      : 0xF0,
                    qh = r % 3 == 0   ? 0x00
                         : r % 3 == 1 ? 0xFF
                                      : 0xCC;
      std::memset(blk, ql, 128);
      std::memset(blk + 128, qh, 64);
      for (int j = 0; j < 16; ++j)
        blk[192 + j] = static_cast<uint8_t>(static_cast<int8_t>((j + r) % 2 ? 127 : -128));
      const uint16_t dh = f32_to_f16(std::ldexp(1.0f, -10));
      std::memcpy(blk + 208, &dh, 2);
    }
  std::vector<uint8_t> kx(q6.size());
  repack_q6_kx_rows(q6.data(), rows, n, kx.data());
  for (int64_t m : {1, 3, 8, 9}) {
    std::vector<float> x(static_cast<size_t>(m * n));
    for (int64_t t = 0; t < m; ++t)
      for (int64_t i = 0; i < n; ++i)
        x[static_cast<size_t>(t * n + i)] = t % 3 == 0 ? -1.0f : t % 3 == 1 ? 1.0f : (i % 2 ? 1.0f : -1.0f);
    HeadActs a;
    head_prepare(DType::Q6_KX, x.data(), m, n, a);
    std::vector<float> want(static_cast<size_t>(m * rows), NAN);
    head_matvec_with(head_variants()[0], nullptr, kx.data(), static_cast<size_t>(nb * 210), rows, a,
                     want.data());
    for (const HeadVariant& v : head_variants()) {
      if (!v.cpu_ok() || !v.supports(DType::Q6_KX)) continue;
      std::vector<float> got(want.size(), NAN);
      head_matvec_with(v, nullptr, kx.data(), static_cast<size_t>(nb * 210), rows, a, got.data());
      EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size() * 4), 0) << v.name << " m=" << m;
    }
  }
}

// Q8_0X's reference sums the same products in the same order as Q8_0's: the same bits, so the
// regrouped head changes no logit of the reference path.
TEST(HeadDot, Q8_0XReferenceGivesQ8_0sBits) {
  const int64_t rows = 7, n = 1536, m = 2;
  const Case c = make_case(DType::Q8_0, rows, n, m, 99);
  std::vector<uint8_t> x(c.w.size());
  repack_q8_0x_rows(c.w.data(), rows, n, x.data());
  Case cx = c;
  cx.w = x;
  const HeadVariant& ref = head_variants()[0];
  const auto a = run(ref, c, DType::Q8_0, rows, n, m), b = run(ref, cx, DType::Q8_0X, rows, n, m);
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0);
}

// Q8_0X with the extreme quants -128 and 127 (stored as 0 and 255) and activations at +-127: every
// variant equals the hand-computed integers exactly.
TEST(HeadDot, Q8_0XExtremeStoredValues) {
  const int64_t n = 1024;
  std::vector<float> xf(n);
  for (int64_t i = 0; i < n; ++i) xf[static_cast<size_t>(i)] = (i % 3 == 0) ? -1.0f : 1.0f;
  std::vector<uint8_t> q8(static_cast<size_t>(n / 32 * 34));
  double want = 0;
  for (int64_t b = 0; b < n / 32; ++b) {
    const uint16_t one = f32_to_f16(1.0f);
    std::memcpy(&q8[static_cast<size_t>(b * 34)], &one, 2);
    for (int64_t i = 0; i < 32; ++i) {
      const int8_t q = (i + b) % 2 ? 127 : -128;
      q8[static_cast<size_t>(b * 34 + 2 + i)] = static_cast<uint8_t>(q);
      want += q * (xf[static_cast<size_t>(b * 32 + i)] < 0 ? -127 : 127);
    }
  }
  want /= 127.0;
  std::vector<uint8_t> x(q8.size());
  repack_q8_0x_rows(q8.data(), 1, n, x.data());
  for (const HeadVariant& v : head_variants()) {
    if (!v.cpu_ok() || !v.supports(DType::Q8_0X)) continue;
    HeadActs a;
    head_prepare(DType::Q8_0X, xf.data(), 1, n, a);
    float y = NAN;
    head_matvec_with(v, nullptr, x.data(), x.size(), 1, a, &y);
    EXPECT_NEAR(y, want, 1e-6 * std::fabs(want) + 1e-6) << v.name;
  }
}

TEST(HeadDot, ThreadCountDoesNotChangeTheResult) {
  ThreadPool pool(2);
  for (DType t : {DType::F16, DType::Q8_0, DType::Q6_K, DType::Q8_0X, DType::Q6_KX}) {
    const int64_t rows = 1000, n = 512;
    const Case c = make_case(t, rows, n, 1, 5);
    const HeadVariant& v = select_head(t);
    const auto one = run(v, c, t, rows, n, 1);
    const auto two = run(v, c, t, rows, n, 1, &pool);
    EXPECT_EQ(std::memcmp(one.data(), two.data(), one.size() * 4), 0) << dtype_name(t);
  }
}

// Batched decode runs several tokens over each row at once: every variant gives each token the
// bits it gets alone, for token counts around the kernels' tile of 4 and odd row counts.
TEST(HeadDot, TokenCountDoesNotChangeTheResult) {
  for (DType t : kTypes) {
    const int64_t blk = dtype_info(t).block_elems;
    const int64_t n = blk == 1 ? 1001 : 2 * std::max<int64_t>(blk, 256), rows = 11;
    for (const HeadVariant& v : head_variants()) {
      if (!v.cpu_ok() || !v.supports(t)) continue;
      for (int64_t m : {2, 4, 5, 9}) {
        const Case c = make_case(t, rows, n, m, static_cast<uint64_t>(m * 17 + n));
        const auto all = run(v, c, t, rows, n, m);
        for (int64_t tk = 0; tk < m; ++tk) {
          Case one = c;
          one.x.assign(c.x.begin() + tk * n, c.x.begin() + (tk + 1) * n);
          const auto alone = run(v, one, t, rows, n, 1);
          EXPECT_EQ(std::memcmp(alone.data(), all.data() + tk * rows, alone.size() * 4), 0)
              << v.name << " " << dtype_name(t) << " m=" << m << " token " << tk;
        }
      }
    }
  }
}

TEST(HeadDot, BadInputsAreErrors) {
  HeadActs a;
  std::vector<float> x(100, 1.0f);
  EXPECT_THROW(head_prepare(DType::TQ2_0, x.data(), 1, 256, a), Error);
  try {
    head_prepare(DType::Q8_0, x.data(), 1, 100, a);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("100"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace bitnet
