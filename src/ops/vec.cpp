#include "ops/vec.h"

#include <algorithm>
#include <cmath>

#include "core/cpu.h"
#include "core/half.h"

namespace bitnet {

#if defined(BITNET_HAVE_X86_KERNELS)
float dot_f32_avx512(const float* a, const float* b, int64_t n);
void axpy_f32_avx512(float alpha, const float* x, float* y, int64_t n);
double sum_squares_f64_avx512(const float* x, int64_t n);
void relu2_mul_avx512(const float* gate, const float* up, float* out, int64_t n);
void scale_mul_f32_avx512(const float* x, float s, const float* w, float* y, int64_t n);
void f16_to_f32_row_avx512(const uint16_t* src, float* dst, int64_t n);
void bf16_to_f32_row_avx512(const uint16_t* src, float* dst, int64_t n);
float dot_f16_f32_avx512(const uint16_t* a, const float* b, int64_t n);
void axpy_f16_avx512(float alpha, const uint16_t* x, float* y, int64_t n);
void f32_to_f16_row_avx512(const float* src, uint16_t* dst, int64_t n);
void dot_f16_tiles_avx512(const uint16_t* kt, int64_t cols, const float* q, int64_t ldq, int G, int64_t n,
                          float scale, float* s, int64_t lds);
void axpy_f16_rows_avx512(const float* p, int64_t ldp, const uint16_t* v, int64_t ldv, int64_t rows, int G,
                          int64_t n, float* o, int64_t ldo);
void softmax_row_avx512(float* x, int64_t n, bool half_probs);
double log_sum_exp_row_avx512(const float* x, int64_t n);
void rope_rotate_avx512(float* x, int64_t n_heads, int64_t head_dim, int64_t rope_dim, const float* cs,
                        const float* sn, bool neox);
#endif

namespace {
bool use_avx512() {
#if defined(BITNET_HAVE_X86_KERNELS)
  static const bool ok = cpu_has(kCapAvx512F);
  return ok;
#else
  return false;
#endif
}
}  // namespace

float dot_f32_ref(const float* a, const float* b, int64_t n) {
  float s = 0;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

float dot_f32(const float* a, const float* b, int64_t n) {
#if defined(BITNET_HAVE_X86_KERNELS)
  if (use_avx512()) return dot_f32_avx512(a, b, n);
#endif
  return dot_f32_ref(a, b, n);
}

void dot_f16_tiles_ref(const uint16_t* kt, int64_t cols, const float* q, int64_t ldq, int G, int64_t n,
                       float scale, float* s, int64_t lds) {
  for (int g = 0; g < G; ++g)
    for (int64_t j = 0; j < cols; ++j) {
      const uint16_t* k = kt + (j / kKeyTile) * kKeyTile * n + j % kKeyTile;
      float c = 0;
      for (int64_t i = 0; i < n; ++i) c = std::fma(q[g * ldq + i], f16_to_f32(k[i * kKeyTile]), c);
      s[g * lds + j] = c * scale;
    }
}

void dot_f16_tiles(const uint16_t* kt, int64_t cols, const float* q, int64_t ldq, int G, int64_t n,
                   float scale, float* s, int64_t lds) {
#if defined(BITNET_HAVE_X86_KERNELS)
  if (use_avx512()) return dot_f16_tiles_avx512(kt, cols, q, ldq, G, n, scale, s, lds);
#endif
  dot_f16_tiles_ref(kt, cols, q, ldq, G, n, scale, s, lds);
}

void softmax_row_ref(float* x, int64_t n, bool half_probs) {
  float mx = -INFINITY;
  for (int64_t j = 0; j < n; ++j) mx = std::max(mx, x[j]);
  double sum = 0;
  for (int64_t j = 0; j < n; ++j) {
    x[j] = std::exp(x[j] - mx);
    sum += x[j];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t j = 0; j < n; ++j) x[j] = half_probs ? f16_to_f32(f32_to_f16(x[j] * inv)) : x[j] * inv;
}

void softmax_row(float* x, int64_t n, bool half_probs) {
#if defined(BITNET_HAVE_X86_KERNELS)
  if (use_avx512()) return softmax_row_avx512(x, n, half_probs);
#endif
  softmax_row_ref(x, n, half_probs);
}

double log_sum_exp_row_ref(const float* x, int64_t n) {
  float mx = -INFINITY;
  for (int64_t j = 0; j < n; ++j) mx = std::max(mx, x[j]);
  double sum = 0;
  for (int64_t j = 0; j < n; ++j) sum += std::exp(x[j] - mx);
  return static_cast<double>(mx) + std::log(sum);
}

double log_sum_exp_row(const float* x, int64_t n) {
#if defined(BITNET_HAVE_X86_KERNELS)
  if (use_avx512()) return log_sum_exp_row_avx512(x, n);
#endif
  return log_sum_exp_row_ref(x, n);
}

void axpy_f16_rows(const float* p, int64_t ldp, const uint16_t* v, int64_t ldv, int64_t rows, int G,
                   int64_t n, float* o, int64_t ldo) {
#if defined(BITNET_HAVE_X86_KERNELS)
  if (use_avx512()) return axpy_f16_rows_avx512(p, ldp, v, ldv, rows, G, n, o, ldo);
#endif
  for (int g = 0; g < G; ++g)
    for (int64_t j = 0; j < rows; ++j)
      for (int64_t i = 0; i < n; ++i) o[g * ldo + i] += p[g * ldp + j] * f16_to_f32(v[j * ldv + i]);
}

void relu2_mul(const float* gate, const float* up, float* out, int64_t n) {
#if defined(BITNET_HAVE_X86_KERNELS)
  if (use_avx512()) return relu2_mul_avx512(gate, up, out, n);
#endif
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i] > 0 ? gate[i] : 0.0f;
    out[i] = g * g * up[i];
  }
}

double sum_squares_f64(const float* x, int64_t n) {
#if defined(BITNET_HAVE_X86_KERNELS)
  if (use_avx512()) return sum_squares_f64_avx512(x, n);
#endif
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
  return s;
}

void scale_mul_f32(const float* x, float s, const float* w, float* y, int64_t n) {
#if defined(BITNET_HAVE_X86_KERNELS)
  if (use_avx512()) return scale_mul_f32_avx512(x, s, w, y, n);
#endif
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * s * w[i];
}

void axpy_f32(float alpha, const float* x, float* y, int64_t n) {
#if defined(BITNET_HAVE_X86_KERNELS)
  if (use_avx512()) return axpy_f32_avx512(alpha, x, y, n);
#endif
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

void f16_to_f32_row(const uint16_t* src, float* dst, int64_t n) {
#if defined(BITNET_HAVE_X86_KERNELS)
  if (use_avx512()) return f16_to_f32_row_avx512(src, dst, n);
#endif
  for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(src[i]);
}

void bf16_to_f32_row(const uint16_t* src, float* dst, int64_t n) {
#if defined(BITNET_HAVE_X86_KERNELS)
  if (use_avx512()) return bf16_to_f32_row_avx512(src, dst, n);
#endif
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(src[i]);
}

float dot_f16_f32(const uint16_t* a, const float* b, int64_t n) {
#if defined(BITNET_HAVE_X86_KERNELS)
  if (use_avx512()) return dot_f16_f32_avx512(a, b, n);
#endif
  float s = 0;
  for (int64_t i = 0; i < n; ++i) s += f16_to_f32(a[i]) * b[i];
  return s;
}

void axpy_f16(float alpha, const uint16_t* x, float* y, int64_t n) {
#if defined(BITNET_HAVE_X86_KERNELS)
  if (use_avx512()) return axpy_f16_avx512(alpha, x, y, n);
#endif
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * f16_to_f32(x[i]);
}

void f32_to_f16_row(const float* src, uint16_t* dst, int64_t n) {
#if defined(BITNET_HAVE_X86_KERNELS)
  if (use_avx512()) return f32_to_f16_row_avx512(src, dst, n);
#endif
  for (int64_t i = 0; i < n; ++i) dst[i] = f32_to_f16(src[i]);
}

void f32_to_f16_strided(const float* src, uint16_t* dst, int64_t stride, int64_t n) {
  uint16_t buf[64];
  for (int64_t i0 = 0; i0 < n; i0 += 64) {
    const int64_t m = std::min<int64_t>(64, n - i0);
    f32_to_f16_row(src + i0, buf, m);
    for (int64_t i = 0; i < m; ++i) dst[(i0 + i) * stride] = buf[i];
  }
}

void rope_rotate_ref(float* x, int64_t n_heads, int64_t head_dim, int64_t rope_dim, const float* cs,
                     const float* sn, bool neox) {
  const int64_t half = rope_dim / 2;
  for (int64_t h = 0; h < n_heads; ++h) {
    float* v = x + h * head_dim;
    for (int64_t i = 0; i < half; ++i) {
      const int64_t a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
      const float x0 = v[a], x1 = v[b];
      v[a] = x0 * cs[i] - x1 * sn[i];
      v[b] = x0 * sn[i] + x1 * cs[i];
    }
  }
}

void rope_rotate(float* x, int64_t n_heads, int64_t head_dim, int64_t rope_dim, const float* cs,
                 const float* sn, bool neox) {
#if defined(BITNET_HAVE_X86_KERNELS)
  if (use_avx512()) return rope_rotate_avx512(x, n_heads, head_dim, rope_dim, cs, sn, neox);
#endif
  rope_rotate_ref(x, n_heads, head_dim, rope_dim, cs, sn, neox);
}

}  // namespace bitnet
