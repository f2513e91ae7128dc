// AVX-512 (F, BW, VL, VNNI, F16C) head kernel over Q6_KX (q6_kx.h): 16 rows across the 16 int32
// lanes, tokens as the outer reuse of each weight vector. Numerics in head_dot.h.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "core/cpu.h"
#include "quant/head_dot.h"
#include "quant/q6_kx.h"
#include "quant/stream_prefetch.h"

namespace bitnet {

namespace {

// Four activation bytes broadcast to every lane (one vpbroadcastd from memory).
inline __m512i bcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// One group of R rows (R = 16 unless it is the table's last group) over TT tokens.
//
// Per sub-block j of 16 values, three 64-byte vectors hold the 6-bit codes of four 4-value runs
// for the 16 rows (lane l = row l): three and-masks give runs 0-2, and run 3 is put together from
// the vectors' bits 6-7 (three 16-bit shifts, two selects and a mask; a shift's spill from the
// neighbouring byte lands in bits the selects or the mask drop). The codes are unpacked once and
// feed every token: per token, four vpdpbusd with the token's four activation words broadcast,
// started at -32 * (the sub-block's activation sum), leave each lane with its row's exact
// sum_{16} (code - 32) * xq (|sum| <= 16 * 32 * 127); one vpmulld by the 16 rows' sub-block scales
// and one add gather the super-block's integer sum (exact, |sum| < 2^28), and one conversion and
// one fma by dw * dx scale it into the 16 rows' float sums.
//
// Each token's lanes see the same operations in the same order whatever TT is, so a token's
// logits do not depend on how many tokens share the pass (head_dot.h).
template <int TT, bool Full>
void group_tokens(const uint8_t* g, int64_t R, int64_t nb, bool prefetch_l1, const int8_t* xq,
                  const int32_t* qoff, const float* xd, int64_t n, __mmask16 store, float* y, int64_t ld_y) {
  const __m512i m3f = _mm512_set1_epi8(0x3F), m03 = _mm512_set1_epi8(0x03), m0f = _mm512_set1_epi8(0x0F);
  constexpr int kSelect = 0xE4;  // (a & c) | (b & ~c), a/b/c = first/second/third operand
  const __mmask64 kq = Full ? ~__mmask64{0} : (__mmask64{1} << (4 * R)) - 1;  // R < 16 here
  const auto kr = static_cast<__mmask16>(Full ? 0xFFFF : (1u << R) - 1);
  auto load_codes = [&](const uint8_t* p) {
    if constexpr (Full) return _mm512_loadu_si512(p);
    return _mm512_maskz_loadu_epi8(kq, p);
  };
  __m512 acc[TT];
#pragma GCC unroll 8
  for (int t = 0; t < TT; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    __m512i bsum[TT];
#pragma GCC unroll 8
    for (int t = 0; t < TT; ++t) bsum[t] = _mm512_setzero_si512();
    for (int64_t j = 0; j < 16; ++j) {
      const uint8_t* q = g + q6x_code_offset(R, b, j, 0);
      // The group is one sequential run (q6_kx.h): the far prefetch ahead of each code line also
      // covers the scales and d behind each pair's codes. (With them in a region of their own at
      // the group's end, one token's head streamed 3 - 13 % slower than Q6_K's on dev.)
      if (Full) {  // 192 bytes: three lines
        if (prefetch_l1)
          for (int l = 0; l < 3; ++l) prefetch_stream<true>(q + 64 * l);
        else
          for (int l = 0; l < 3; ++l) prefetch_stream<false>(q + 64 * l);
      }
      const __m512i c0 = load_codes(q), c1 = load_codes(q + 4 * R), c2 = load_codes(q + 8 * R);
      const __m512i v0 = _mm512_and_si512(c0, m3f), v1 = _mm512_and_si512(c1, m3f),
                    v2 = _mm512_and_si512(c2, m3f);
      const __m512i lo =
          _mm512_ternarylogic_epi32(_mm512_srli_epi16(c0, 6), _mm512_srli_epi16(c1, 4), m03, kSelect);
      const __m512i v3 =
          _mm512_and_si512(_mm512_ternarylogic_epi32(lo, _mm512_srli_epi16(c2, 2), m0f, kSelect), m3f);
      const __m128i sc8 =
          Full ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(g + q6x_scale_offset(R, nb, b, j)))
               : _mm_maskz_loadu_epi8(kr, g + q6x_scale_offset(R, nb, b, j));
      const __m512i sc = _mm512_cvtepi8_epi32(sc8);
#pragma GCC unroll 8
      for (int t = 0; t < TT; ++t) {
        const int8_t* xw = xq + t * n + b * 256 + 16 * j;
        __m512i s = _mm512_set1_epi32(qoff[t * (n / 16) + b * 16 + j]);
        s = _mm512_dpbusd_epi32(s, v0, bcast4(xw));
        s = _mm512_dpbusd_epi32(s, v1, bcast4(xw + 4));
        s = _mm512_dpbusd_epi32(s, v2, bcast4(xw + 8));
        s = _mm512_dpbusd_epi32(s, v3, bcast4(xw + 12));
        bsum[t] = _mm512_add_epi32(bsum[t], _mm512_mullo_epi32(s, sc));
      }
    }
    const uint8_t* dp = g + q6x_d_offset(R, nb, b);
    const __m512 dw = _mm512_cvtph_ps(Full ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(dp))
                                           : _mm256_maskz_loadu_epi16(kr, dp));
#pragma GCC unroll 8
    for (int t = 0; t < TT; ++t)
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(bsum[t]), _mm512_mul_ps(dw, _mm512_set1_ps(xd[t * nb + b])),
                               acc[t]);
  }
#pragma GCC unroll 8
  for (int t = 0; t < TT; ++t) _mm512_mask_storeu_ps(y + t * ld_y, store, acc[t]);
}

template <bool Full>
void group(const uint8_t* g, int64_t R, const HeadActs& a, bool prefetch_l1, __mmask16 store, float* y,
           int64_t ld_y) {
  const int64_t n = a.n, nb = n / 256;
  // Tokens 8 at a time (8 float and 8 integer accumulators, the codes and scales: about 24 of the
  // 32 registers); a group's codes for a second pass come from L1/L2.
  for (int64_t t = 0; t < a.m; t += 8) {
    const int8_t* xq = a.q.data() + t * n;
    const int32_t* qoff = a.qoff.data() + t * (n / 16);
    const float* xd = a.d.data() + t * nb;
    float* yt = y + t * ld_y;
    switch (std::min<int64_t>(8, a.m - t)) {
#define BN_Q6X_CASE(k)                                                              \
  case k:                                                                           \
    group_tokens<k, Full>(g, R, nb, prefetch_l1, xq, qoff, xd, n, store, yt, ld_y); \
    break;
      BN_Q6X_CASE(1)
      BN_Q6X_CASE(2)
      BN_Q6X_CASE(3)
      BN_Q6X_CASE(4)
      BN_Q6X_CASE(5)
      BN_Q6X_CASE(6)
      BN_Q6X_CASE(7)
      BN_Q6X_CASE(8)
#undef BN_Q6X_CASE
    }
  }
}

}  // namespace

void head_rows_q6_kx_avx512(const uint8_t* w, size_t row_bytes, int64_t rows, int64_t r0, int64_t r1,
                            const HeadActs& a, float* y, int64_t ld_y) {
  // Near (L1) prefetch left out on AMD, as for the Q8_0X head (stream_prefetch.h).
  const bool l1 = !cpu_features().amd;
  // Every group that holds a row of [r0, r1), computed whole; only the rows asked for are stored.
  for (int64_t g0 = r0 / kQ6xRows * kQ6xRows; g0 < r1; g0 += kQ6xRows) {
    const int64_t R = std::min(kQ6xRows, rows - g0);
    const int64_t lo = std::max(r0, g0) - g0, hi = std::min(r1, g0 + R) - g0;
    const auto store = static_cast<__mmask16>(((1u << hi) - 1) & ~((1u << lo) - 1));
    const uint8_t* g = w + static_cast<size_t>(g0) * row_bytes;
    if (R == kQ6xRows)
      group<true>(g, R, a, l1, store, y + g0, ld_y);
    else
      group<false>(g, R, a, l1, store, y + g0, ld_y);
  }
}

}  // namespace bitnet
