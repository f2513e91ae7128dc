// AVX2 activation quantization: the reference's float operations, 8 lanes wide (bit-exact; see
// act_quant_avx512.cpp for why). The tail is finished by the scalar formula.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace bitnet {

void quantize_act_row_avx2(const float* x, int64_t k, int64_t k_pad, int8_t* q, float* scale,
                           float* dq, int32_t* sum) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 vmax = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= k; i += 8) vmax = _mm256_max_ps(vmax, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)));
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, vmax);
  float amax = 0.0f;
  for (float v : lanes) amax = std::max(amax, v);
  for (int64_t j = i; j < k; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float s = 127.0f / std::max(amax, 1e-5f);
  const __m256 vs = _mm256_set1_ps(s);
  const __m256 lo = _mm256_set1_ps(-128.0f), hi = _mm256_set1_ps(127.0f);
  __m256i vsum = _mm256_setzero_si256();
  for (i = 0; i + 8 <= k; i += 8) {
    __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), vs);
    v = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
    const __m256i vi = _mm256_cvtps_epi32(v);
    vsum = _mm256_add_epi32(vsum, vi);
    // int32 -> int8 (values already within [-128, 127], so the saturating packs are exact).
    const __m128i w16 = _mm_packs_epi32(_mm256_castsi256_si128(vi), _mm256_extracti128_si256(vi, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(q + i), _mm_packs_epi16(w16, w16));
  }
  alignas(32) int32_t parts[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(parts), vsum);
  int32_t total = 0;
  for (int32_t p : parts) total += p;
  for (; i < k; ++i) {
    const float r = std::clamp(std::nearbyint(x[i] * s), -128.0f, 127.0f);
    q[i] = static_cast<int8_t>(r);
    total += q[i];
  }
  if (k_pad > k) std::memset(q + k, 0, static_cast<size_t>(k_pad - k));
  *scale = s;
  *dq = 1.0f / s;
  *sum = total;
}

}  // namespace bitnet
