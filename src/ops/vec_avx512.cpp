// AVX-512 float primitives (see vec.h). Conversions are exact (half and bfloat16 widen to float
// without rounding), so they equal the scalar ones bit for bit; dot sums 4 x 16 lanes.
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "ops/vec.h"

namespace bitnet {

float dot_f32_avx512(const float* a, const float* b, int64_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), s2);
    s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), s3);
  }
  for (; i + 16 <= n; i += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s1);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

double sum_squares_f64_avx512(const float* x, int64_t n) {
  // Four independent fma chains (an fma's latency is 4 cycles): the sum is latency-bound otherwise.
  __m512d s0 = _mm512_setzero_pd(), s1 = s0, s2 = s0, s3 = s0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512d a = _mm512_cvtps_pd(_mm256_loadu_ps(x + i));
    const __m512d b = _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 8));
    const __m512d c = _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 16));
    const __m512d d = _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 24));
    s0 = _mm512_fmadd_pd(a, a, s0);
    s1 = _mm512_fmadd_pd(b, b, s1);
    s2 = _mm512_fmadd_pd(c, c, s2);
    s3 = _mm512_fmadd_pd(d, d, s3);
  }
  for (; i + 8 <= n; i += 8) {
    const __m512d a = _mm512_cvtps_pd(_mm256_loadu_ps(x + i));
    s0 = _mm512_fmadd_pd(a, a, s0);
  }
  if (i < n) {
    const __m512d a =
        _mm512_cvtps_pd(_mm256_maskz_loadu_ps(static_cast<__mmask8>((1u << (n - i)) - 1), x + i));
    s1 = _mm512_fmadd_pd(a, a, s1);
  }
  return _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(s0, s1), _mm512_add_pd(s2, s3)));
}

void scale_mul_f32_avx512(const float* x, float s, const float* w, float* y, int64_t n) {
  const __m512 sv = _mm512_set1_ps(s);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), sv), _mm512_loadu_ps(w + i)));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(
        y + i, m,
        _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), sv), _mm512_maskz_loadu_ps(m, w + i)));
  }
}

void relu2_mul_avx512(const float* gate, const float* up, float* out, int64_t n) {
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = static_cast<__mmask16>(n - i >= 16 ? 0xFFFF : (1u << (n - i)) - 1);
    const __m512 g = _mm512_max_ps(_mm512_maskz_loadu_ps(m, gate + i), zero);
    _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(_mm512_mul_ps(g, g), _mm512_maskz_loadu_ps(m, up + i)));
  }
}

void axpy_f32_avx512(float alpha, const float* x, float* y, int64_t n) {
  const __m512 a = _mm512_set1_ps(alpha);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(y + i, _mm512_fmadd_ps(a, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(
        y + i, m, _mm512_fmadd_ps(a, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
  }
}

void f16_to_f32_row_avx512(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i))));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(dst + i, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, src + i)));
  }
}

void bf16_to_f32_row_avx512(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i)));
    _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)));
  }
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m512i w = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, src + i));
    _mm512_mask_storeu_ps(dst + i, m, _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)));
  }
}

float dot_f16_f32_avx512(const uint16_t* a, const float* b, int64_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = s0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + i))),
                         _mm512_loadu_ps(b + i), s0);
    s1 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + i + 16))),
                         _mm512_loadu_ps(b + i + 16), s1);
  }
  for (; i < n; i += 16) {
    const int64_t r = n - i < 16 ? n - i : 16;
    const __mmask16 m = static_cast<__mmask16>(r == 16 ? 0xFFFF : (1u << r) - 1);
    s0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, a + i)), _mm512_maskz_loadu_ps(m, b + i),
                         s0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

void axpy_f16_avx512(float alpha, const uint16_t* x, float* y, int64_t n) {
  const __m512 a = _mm512_set1_ps(alpha);
  for (int64_t i = 0; i < n; i += 16) {
    const int64_t r = n - i < 16 ? n - i : 16;
    const __mmask16 m = static_cast<__mmask16>(r == 16 ? 0xFFFF : (1u << r) - 1);
    const __m512 xv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x + i));
    _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(a, xv, _mm512_maskz_loadu_ps(m, y + i)));
  }
}

// GN queries x NB tiles of 16 keys: GN * NB fma chains in registers (8 or more, to cover the fma
// latency); per value i, NB half loads + conversions, GN broadcasts, GN * NB fmas. The loops are
// unrolled so the accumulators live in registers (GCC otherwise keeps arrays of vectors on the
// stack, even at -O3: 4x slower). Lanes past `cols` are computed on whatever the tile holds and not
// stored.
// Software prefetch 8 KiB ahead in each tile stream (long-context decode reads the whole cache
// from DRAM: dev, 1 thread, 30 layers x 4,096 keys: 12 -> 7.4 ms for the scores; 1 KiB ahead
// gained nothing).
constexpr int64_t kTilePrefetchBytes = 8192;
template <int GN, int NB>
static void dot_tiles_block(const uint16_t* kt, int64_t j0, int64_t cols, const float* q, int64_t ldq,
                            int64_t n, float scale, float* s, int64_t lds) {
  const uint16_t* base = kt + j0 * n;  // j0 is a multiple of 16: tile j0/16 starts at j0 * n
  __m512 acc[GN][NB];
#pragma GCC unroll 8
  for (int g = 0; g < GN; ++g)
#pragma GCC unroll 8
    for (int b = 0; b < NB; ++b) acc[g][b] = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; ++i) {
    if (i % 2 == 0)  // one 64-byte line per tile every second value
#pragma GCC unroll 8
      for (int b = 0; b < NB; ++b)
        _mm_prefetch(
            reinterpret_cast<const char*>(base + b * kKeyTile * n + i * kKeyTile) + kTilePrefetchBytes,
            _MM_HINT_T0);
    __m512 kv[NB];
#pragma GCC unroll 8
    for (int b = 0; b < NB; ++b)
      kv[b] = _mm512_cvtph_ps(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(base + b * kKeyTile * n + i * kKeyTile)));
#pragma GCC unroll 8
    for (int g = 0; g < GN; ++g) {
      const __m512 qv = _mm512_set1_ps(q[g * ldq + i]);
#pragma GCC unroll 8
      for (int b = 0; b < NB; ++b) acc[g][b] = _mm512_fmadd_ps(qv, kv[b], acc[g][b]);
    }
  }
  const __m512 sc = _mm512_set1_ps(scale);
#pragma GCC unroll 8
  for (int b = 0; b < NB; ++b) {
    const int64_t r = cols - j0 - b * kKeyTile;
    const __mmask16 m = static_cast<__mmask16>(r >= 16 ? 0xFFFF : r <= 0 ? 0 : (1u << r) - 1);
#pragma GCC unroll 8
    for (int g = 0; g < GN; ++g)
      _mm512_mask_storeu_ps(s + g * lds + j0 + b * kKeyTile, m, _mm512_mul_ps(acc[g][b], sc));
  }
}

template <int GN>
static void dot_tiles_pass(const uint16_t* kt, int64_t cols, const float* q, int64_t ldq, int64_t n,
                           float scale, float* s, int64_t lds) {
  constexpr int NB = GN >= 4 ? 2 : GN == 3 ? 3 : GN == 2 ? 4 : 8;
  int64_t j = 0;
  for (; j + NB * kKeyTile <= cols; j += NB * kKeyTile)
    dot_tiles_block<GN, NB>(kt, j, cols, q, ldq, n, scale, s, lds);
  for (; j < cols; j += kKeyTile) dot_tiles_block<GN, 1>(kt, j, cols, q, ldq, n, scale, s, lds);
}

// Calls fn(std::integral_constant<int, GN>{}, g0) for the queries g0 .. g0 + GN - 1: groups of 8
// while 8 remain (prompts pair two tokens' query groups: each key or value converted once per
// 8 queries), then one group of up to 4 at a time. The passes take their query count at compile
// time so their accumulators stay in registers.
template <class F>
static void by_query_groups(int G, F&& fn) {
  int g0 = 0;
  for (; G - g0 >= 8; g0 += 8) fn(std::integral_constant<int, 8>{}, g0);
  for (; g0 < G; g0 += 4) {
    switch (G - g0 < 4 ? G - g0 : 4) {
      case 1:
        fn(std::integral_constant<int, 1>{}, g0);
        break;
      case 2:
        fn(std::integral_constant<int, 2>{}, g0);
        break;
      case 3:
        fn(std::integral_constant<int, 3>{}, g0);
        break;
      default:
        fn(std::integral_constant<int, 4>{}, g0);
        break;
    }
  }
}

void dot_f16_tiles_avx512(const uint16_t* kt, int64_t cols, const float* q, int64_t ldq, int G, int64_t n,
                          float scale, float* s, int64_t lds) {
  by_query_groups(G, [&](auto gn, int g0) {
    dot_tiles_pass<decltype(gn)::value>(kt, cols, q + g0 * ldq, ldq, n, scale, s + g0 * lds, lds);
  });
}

// Value rows prefetched 32 rows ahead (8 KiB for heads of 128): dev, 1 thread, 30 layers x 4,096
// keys: 30 -> 10.6 ms for P x V (8 rows ahead: 14).
constexpr int64_t kPrefetchRows = 32;

// o[g] += p[g][j] * v[j] for j in order, one fma per element and row: the same roundings as a
// sequence of axpy_f16 calls. 16 * NV columns x GN queries of accumulators stay in registers
// (loops unrolled: GN is a compile-time count) while the rows stream past: 64 columns for up to 4
// queries, 32 for 8 (32 zmm registers in all).
template <int GN>
static void axpy_f16_rows_pass(const float* p, int64_t ldp, const uint16_t* v, int64_t ldv, int64_t rows,
                               int64_t n, float* o, int64_t ldo) {
  constexpr int NV = GN > 4 ? 2 : 4;
  for (int64_t c = 0; c < n; c += 16 * NV) {
    __mmask16 m[NV];
#pragma GCC unroll 4
    for (int i = 0; i < NV; ++i) {
      const int64_t r = n - c - 16 * i;
      m[i] = static_cast<__mmask16>(r >= 16 ? 0xFFFF : r <= 0 ? 0 : (1u << r) - 1);
    }
    __m512 acc[GN][NV];
#pragma GCC unroll 8
    for (int g = 0; g < GN; ++g)
#pragma GCC unroll 4
      for (int i = 0; i < NV; ++i) acc[g][i] = _mm512_maskz_loadu_ps(m[i], o + g * ldo + c + 16 * i);
    for (int64_t j = 0; j < rows; ++j) {
      const uint16_t* vr = v + j * ldv + c;
      // The rows are a strided stream (a slice of each row when the columns are split across
      // jobs), which the hardware prefetcher follows poorly from DRAM (long-context decode).
      // The lines of this pass's columns.
#pragma GCC unroll 2
      for (int l = 0; l < NV / 2; ++l)
        _mm_prefetch(reinterpret_cast<const char*>(vr + kPrefetchRows * ldv + 32 * l), _MM_HINT_T0);
      __m512 vv[NV];
#pragma GCC unroll 4
      for (int i = 0; i < NV; ++i) vv[i] = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m[i], vr + 16 * i));
#pragma GCC unroll 8
      for (int g = 0; g < GN; ++g) {
        const __m512 pg = _mm512_set1_ps(p[g * ldp + j]);
#pragma GCC unroll 4
        for (int i = 0; i < NV; ++i) acc[g][i] = _mm512_fmadd_ps(pg, vv[i], acc[g][i]);
      }
    }
#pragma GCC unroll 8
    for (int g = 0; g < GN; ++g)
#pragma GCC unroll 4
      for (int i = 0; i < NV; ++i) _mm512_mask_storeu_ps(o + g * ldo + c + 16 * i, m[i], acc[g][i]);
  }
}

void axpy_f16_rows_avx512(const float* p, int64_t ldp, const uint16_t* v, int64_t ldv, int64_t rows, int G,
                          int64_t n, float* o, int64_t ldo) {
  by_query_groups(G, [&](auto gn, int g0) {
    axpy_f16_rows_pass<decltype(gn)::value>(p + g0 * ldp, ldp, v, ldv, rows, n, o + g0 * ldo, ldo);
  });
}

// exp(x) for x <= 0 (softmax arguments): x = k ln2 + r, |r| <= ln2/2, e^r = 1 + r + r^2 P(r) with
// Cephes expf's minimax coefficients (relative error < 2^-23), times 2^k with vscalefps, which
// also takes results below the float range to zero as k falls.
// exp(x) for x <= 0. Below -86 the result is 0: exp(-86) = 4e-38 is near the smallest normal
// float, and subnormal results (and their conversions) take microcode assists on Intel cores, each
// ~100 times a normal operation: a 128k-vocabulary row of a model whose logits span over 87 took
// 0.8 ms in log_sum_exp_row instead of 0.06. Terms that small change no sum they are added to.
static inline __m512 exp_neg(__m512 x) {
  const __mmask16 live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-86.0f), _CMP_GE_OQ);
  x = _mm512_max_ps(x, _mm512_set1_ps(-86.0f));
  const __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(k, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_maskz_mov_ps(live, _mm512_scalef_ps(p, k));
}

void softmax_row_avx512(float* x, int64_t n, bool half_probs) {
  auto mask = [&](int64_t j) { return static_cast<__mmask16>(n - j >= 16 ? 0xFFFF : (1u << (n - j)) - 1); };
  __m512 mv = _mm512_set1_ps(-INFINITY);
  for (int64_t j = 0; j < n; j += 16)
    mv = _mm512_max_ps(mv, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), mask(j), x + j));
  const __m512 mx = _mm512_set1_ps(_mm512_reduce_max_ps(mv));
  __m512d s0 = _mm512_setzero_pd(), s1 = s0;
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 m = mask(j);
    const __m512 e = _mm512_maskz_mov_ps(m, exp_neg(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + j), mx)));
    _mm512_mask_storeu_ps(x + j, m, e);
    s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
    s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
  }
  const __m512 inv = _mm512_set1_ps(static_cast<float>(1.0 / _mm512_reduce_add_pd(_mm512_add_pd(s0, s1))));
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 m = mask(j);
    __m512 p = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + j), inv);
    if (half_probs) p = _mm512_cvtph_ps(_mm512_cvtps_ph(p, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    _mm512_mask_storeu_ps(x + j, m, p);
  }
}

double log_sum_exp_row_avx512(const float* x, int64_t n) {
  auto mask = [&](int64_t j) { return static_cast<__mmask16>(n - j >= 16 ? 0xFFFF : (1u << (n - j)) - 1); };
  __m512 mv = _mm512_set1_ps(-INFINITY);
  for (int64_t j = 0; j < n; j += 16)
    mv = _mm512_max_ps(mv, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), mask(j), x + j));
  const float mxs = _mm512_reduce_max_ps(mv);
  const __m512 mx = _mm512_set1_ps(mxs);
  __m512d s0 = _mm512_setzero_pd(), s1 = s0;
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 m = mask(j);
    const __m512 e = _mm512_maskz_mov_ps(m, exp_neg(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + j), mx)));
    s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
    s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
  }
  return static_cast<double>(mxs) + std::log(_mm512_reduce_add_pd(_mm512_add_pd(s0, s1)));
}

// Hides a product from GCC's optimizer so `p * q - r` cannot become one fma (GCC contracts
// intrinsics too): RoPE must round each product as the plain reference does.
inline __m512 opaque(__m512 v) {
  asm("" : "+v"(v));
  return v;
}

void rope_rotate_avx512(float* x, int64_t n_heads, int64_t head_dim, int64_t rope_dim, const float* cs,
                        const float* sn, bool neox) {
  const int64_t half = rope_dim / 2;
  // Interleaved pairs: 8 pairs per vector; cs/sn duplicated to both lanes of a pair, the pair
  // swapped so one product gives b*s for even lanes and a*s for odd ones.
  const __m512i dup = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
  for (int64_t h = 0; h < n_heads; ++h) {
    float* v = x + h * head_dim;
    if (neox) {
      for (int64_t i = 0; i < half; i += 16) {
        const __mmask16 m = i + 16 <= half ? 0xFFFF : static_cast<__mmask16>((1u << (half - i)) - 1);
        const __m512 a = _mm512_maskz_loadu_ps(m, v + i), b = _mm512_maskz_loadu_ps(m, v + half + i);
        const __m512 c = _mm512_maskz_loadu_ps(m, cs + i), s = _mm512_maskz_loadu_ps(m, sn + i);
        const __m512 bs = opaque(_mm512_mul_ps(b, s)), as = opaque(_mm512_mul_ps(a, s));
        const __m512 ac = opaque(_mm512_mul_ps(a, c)), bc = opaque(_mm512_mul_ps(b, c));
        _mm512_mask_storeu_ps(v + i, m, _mm512_sub_ps(ac, bs));
        _mm512_mask_storeu_ps(v + half + i, m, _mm512_add_ps(as, bc));
      }
    } else {
      for (int64_t i = 0; i < half; i += 8) {
        const int64_t np = half - i < 8 ? half - i : 8;
        const __mmask16 m8 = static_cast<__mmask16>((1u << np) - 1);
        const __mmask16 m = static_cast<__mmask16>((1u << (2 * np)) - 1);
        const __m512 xv = _mm512_maskz_loadu_ps(m, v + 2 * i);
        const __m512 c = _mm512_permutexvar_ps(dup, _mm512_maskz_loadu_ps(m8, cs + i));
        const __m512 s = _mm512_permutexvar_ps(dup, _mm512_maskz_loadu_ps(m8, sn + i));
        const __m512 p = opaque(_mm512_mul_ps(_mm512_permute_ps(xv, 0xB1), s));  // (b*s, a*s)
        const __m512 xc = opaque(_mm512_mul_ps(xv, c));                          // (a*c, b*c)
        // even lanes a*c - b*s; odd lanes b*c + a*s (= a*s + b*c: the sum commutes exactly)
        _mm512_mask_storeu_ps(v + 2 * i, m, _mm512_mask_add_ps(_mm512_sub_ps(xc, p), 0xAAAA, xc, p));
      }
    }
  }
}

void f32_to_f16_row_avx512(const float* src, uint16_t* dst, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const int64_t r = n - i < 16 ? n - i : 16;
    const __mmask16 m = static_cast<__mmask16>(r == 16 ? 0xFFFF : (1u << r) - 1);
    const __m256i h =
        _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm256_mask_storeu_epi16(dst + i, m, h);
  }
}

}  // namespace bitnet
