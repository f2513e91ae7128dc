// AVX-512 activation quantization: same float operations as quantize_act_row_ref, 16 lanes wide.
// max is exact in any order; x*s, roundscale (nearest-even) and the clamps are per-lane IEEE
// operations identical to the scalar ones, so the output equals the reference bit for bit.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace bitnet {

void quantize_act_row_avx512(const float* x, int64_t k, int64_t k_pad, int8_t* q, float* scale,
                             float* dq, int32_t* sum) {
  const __m512 sign = _mm512_set1_ps(-0.0f);
  // Four independent max chains (the max is the same in any order; one chain is latency-bound).
  __m512 vmax = _mm512_setzero_ps(), m1 = vmax, m2 = vmax, m3 = vmax;
  int64_t i = 0;
  for (; i + 64 <= k; i += 64) {
    vmax = _mm512_max_ps(vmax, _mm512_andnot_ps(sign, _mm512_loadu_ps(x + i)));
    m1 = _mm512_max_ps(m1, _mm512_andnot_ps(sign, _mm512_loadu_ps(x + i + 16)));
    m2 = _mm512_max_ps(m2, _mm512_andnot_ps(sign, _mm512_loadu_ps(x + i + 32)));
    m3 = _mm512_max_ps(m3, _mm512_andnot_ps(sign, _mm512_loadu_ps(x + i + 48)));
  }
  vmax = _mm512_max_ps(_mm512_max_ps(vmax, m1), _mm512_max_ps(m2, m3));
  for (; i + 16 <= k; i += 16) vmax = _mm512_max_ps(vmax, _mm512_andnot_ps(sign, _mm512_loadu_ps(x + i)));
  if (i < k) {
    const __mmask16 m = static_cast<__mmask16>((1u << (k - i)) - 1);
    vmax = _mm512_max_ps(vmax, _mm512_andnot_ps(sign, _mm512_maskz_loadu_ps(m, x + i)));
  }
  const float amax = _mm512_reduce_max_ps(vmax);
  const float s = 127.0f / std::max(amax, 1e-5f);
  const __m512 vs = _mm512_set1_ps(s);
  const __m512 lo = _mm512_set1_ps(-128.0f), hi = _mm512_set1_ps(127.0f);
  __m512i vsum = _mm512_setzero_si512();
  for (i = 0; i < k; i += 16) {
    const int64_t n = std::min<int64_t>(16, k - i);
    const __mmask16 m = static_cast<__mmask16>(n == 16 ? 0xFFFF : (1u << n) - 1);
    __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), vs);
    v = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
    const __m512i vi = _mm512_cvtps_epi32(v);  // already integral: conversion is exact
    vsum = _mm512_add_epi32(vsum, vi);
    _mm_mask_storeu_epi8(q + i, m, _mm512_cvtepi32_epi8(vi));
  }
  if (k_pad > k) std::memset(q + k, 0, static_cast<size_t>(k_pad - k));
  *scale = s;
  *dq = 1.0f / s;
  *sum = _mm512_reduce_add_epi32(vsum);
}

}  // namespace bitnet
