// AVX-512 float primitives (see vec.h). Conversions are exact (half and bfloat16 widen to float
// without rounding), so they equal the scalar ones bit for bit; dot sums 4 x 16 lanes.
#include <immintrin.h>

#include <cstdint>

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
  __m512d s0 = _mm512_setzero_pd(), s1 = s0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512d a = _mm512_cvtps_pd(_mm256_loadu_ps(x + i));
    const __m512d b = _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 8));
    s0 = _mm512_fmadd_pd(a, a, s0);
    s1 = _mm512_fmadd_pd(b, b, s1);
  }
  for (; i + 8 <= n; i += 8) {
    const __m512d a = _mm512_cvtps_pd(_mm256_loadu_ps(x + i));
    s0 = _mm512_fmadd_pd(a, a, s0);
  }
  if (i < n) {
    const __m512d a = _mm512_cvtps_pd(_mm256_maskz_loadu_ps(static_cast<__mmask8>((1u << (n - i)) - 1), x + i));
    s1 = _mm512_fmadd_pd(a, a, s1);
  }
  return _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
}

void scale_mul_f32_avx512(const float* x, float s, const float* w, float* y, int64_t n) {
  const __m512 sv = _mm512_set1_ps(s);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), sv), _mm512_loadu_ps(w + i)));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), sv), _mm512_maskz_loadu_ps(m, w + i)));
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
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_fmadd_ps(a, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(a, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
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
    s0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + i))), _mm512_loadu_ps(b + i), s0);
    s1 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + i + 16))), _mm512_loadu_ps(b + i + 16), s1);
  }
  for (; i < n; i += 16) {
    const int64_t r = n - i < 16 ? n - i : 16;
    const __mmask16 m = static_cast<__mmask16>(r == 16 ? 0xFFFF : (1u << r) - 1);
    s0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, a + i)), _mm512_maskz_loadu_ps(m, b + i), s0);
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

// Each query's sum runs over 16-wide chunks of the row in one accumulator, so a query's score does
// not depend on how many queries share the pass (nor, therefore, on the thread count).
void dot_f16_rows_avx512(const uint16_t* k, int64_t ldk, int64_t rows, const float* q, int64_t ldq, int G,
                         int64_t n, float scale, float* s, int64_t lds) {
  for (int g0 = 0; g0 < G; g0 += 8) {
    const int gn = G - g0 < 8 ? G - g0 : 8;
    for (int64_t j = 0; j < rows; ++j) {
      const uint16_t* kr = k + j * ldk;
      __m512 acc[8];
      for (int g = 0; g < 8; ++g) acc[g] = _mm512_setzero_ps();
      for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = static_cast<__mmask16>(n - i >= 16 ? 0xFFFF : (1u << (n - i)) - 1);
        const __m512 kv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, kr + i));
        for (int g = 0; g < gn; ++g) acc[g] = _mm512_fmadd_ps(kv, _mm512_maskz_loadu_ps(m, q + (g0 + g) * ldq + i), acc[g]);
      }
      for (int g = 0; g < gn; ++g) s[(g0 + g) * lds + j] = _mm512_reduce_add_ps(acc[g]) * scale;
    }
  }
}

// o[g] += p[g][j] * v[j] for j in order, one fma per element and row: the same roundings as a
// sequence of axpy_f16 calls. 64 columns x 4 queries of accumulators stay in registers while the
// rows stream past.
void axpy_f16_rows_avx512(const float* p, int64_t ldp, const uint16_t* v, int64_t ldv, int64_t rows, int G,
                          int64_t n, float* o, int64_t ldo) {
  for (int64_t c = 0; c < n; c += 64) {
    __mmask16 m[4];
    for (int i = 0; i < 4; ++i) {
      const int64_t r = n - c - 16 * i;
      m[i] = static_cast<__mmask16>(r >= 16 ? 0xFFFF : r <= 0 ? 0 : (1u << r) - 1);
    }
    for (int g0 = 0; g0 < G; g0 += 4) {
      const int gn = G - g0 < 4 ? G - g0 : 4;
      __m512 acc[4][4];
      for (int g = 0; g < 4; ++g)
        for (int i = 0; i < 4; ++i)
          acc[g][i] = g < gn ? _mm512_maskz_loadu_ps(m[i], o + (g0 + g) * ldo + c + 16 * i) : _mm512_setzero_ps();
      for (int64_t j = 0; j < rows; ++j) {
        const uint16_t* vr = v + j * ldv + c;
        __m512 vv[4];
        for (int i = 0; i < 4; ++i) vv[i] = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m[i], vr + 16 * i));
        for (int g = 0; g < gn; ++g) {
          const __m512 pg = _mm512_set1_ps(p[(g0 + g) * ldp + j]);
          for (int i = 0; i < 4; ++i) acc[g][i] = _mm512_fmadd_ps(pg, vv[i], acc[g][i]);
        }
      }
      for (int g = 0; g < gn; ++g)
        for (int i = 0; i < 4; ++i) _mm512_mask_storeu_ps(o + (g0 + g) * ldo + c + 16 * i, m[i], acc[g][i]);
    }
  }
}

void f32_to_f16_row_avx512(const float* src, uint16_t* dst, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const int64_t r = n - i < 16 ? n - i : 16;
    const __mmask16 m = static_cast<__mmask16>(r == 16 ? 0xFFFF : (1u << r) - 1);
    const __m256i h = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm256_mask_storeu_epi16(dst + i, m, h);
  }
}

}  // namespace bitnet
