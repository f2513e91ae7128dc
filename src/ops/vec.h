#pragma once
// Float vector primitives for the high-precision parts of the forward pass (output head,
// attention), with an AVX-512 variant chosen at run time. Results may differ from the scalar
// reference in the last bits (different summation order) but each variant is deterministic and
// independent of how work is split across threads.
#include <cstdint>

namespace bitnet {

// sum_i a[i] * b[i]
float dot_f32(const float* a, const float* b, int64_t n);
// y[i] += alpha * x[i]
void axpy_f32(float alpha, const float* x, float* y, int64_t n);
// IEEE half / bfloat16 rows to float.
void f16_to_f32_row(const uint16_t* src, float* dst, int64_t n);
void bf16_to_f32_row(const uint16_t* src, float* dst, int64_t n);

// Mixed half/float: a holds IEEE halves. sum_i half(a[i]) * b[i]; y[i] += alpha * half(x[i]).
float dot_f16_f32(const uint16_t* a, const float* b, int64_t n);
void axpy_f16(float alpha, const uint16_t* x, float* y, int64_t n);
// Attention over a half KV cache, G queries at a time (the query heads sharing one KV head), so
// each key and value is read and converted once per pass.
//
// Keys are stored in tiles of kKeyTile keys, transposed: key j's value i is at
//   kt[(j / kKeyTile) * kKeyTile * n + i * kKeyTile + j % kKeyTile],
// so the score loop runs across 16 keys at once with no horizontal sums:
//   s[g * lds + j] = scale * c_(n-1),  c_i = fma(q[g * ldq + i], half(key j, value i), c_(i-1)), c_(-1) = 0
// (j < cols). One fma chain per score in the order of i, in every variant: results are bit-identical
// to the plain loop and independent of G and of how keys are split, so a decoded token and the same
// token inside a prompt get the same scores.
inline constexpr int64_t kKeyTile = 16;
void dot_f16_tiles(const uint16_t* kt, int64_t cols, const float* q, int64_t ldq, int G, int64_t n,
                   float scale, float* s, int64_t lds);
void dot_f16_tiles_ref(const uint16_t* kt, int64_t cols, const float* q, int64_t ldq, int G, int64_t n,
                       float scale, float* s, int64_t lds);
// Values are rows (value j at v + j * ldv):  o[g * ldo + i] += p[g * ldp + j] * half(v[j * ldv + i]),
// j in order (the AVX-512 variant with one fma per element). A query's results do not depend on G.
void axpy_f16_rows(const float* p, int64_t ldp, const uint16_t* v, int64_t ldv, int64_t rows, int G,
                   int64_t n, float* o, int64_t ldo);
// Softmax in place: x[j] = exp(x[j] - max) / sum, the sum of the exponentials in double; with
// half_probs each probability is then rounded to IEEE half (ggml's f16 attention). The AVX-512
// variant computes exp with a polynomial (within 2 ulp of std::exp, tests bound it); each
// variant is deterministic.
void softmax_row(float* x, int64_t n, bool half_probs);
void softmax_row_ref(float* x, int64_t n, bool half_probs);
// log(sum_j exp(x[j])) computed as max + log(sum_j exp(x[j] - max)), the sum in double: the log
// of a softmax's denominator (a token's log-probability is its logit minus this). The AVX-512
// variant uses softmax_row's polynomial exp; n >= 1.
double log_sum_exp_row(const float* x, int64_t n);
double log_sum_exp_row_ref(const float* x, int64_t n);
// float -> IEEE half, round to nearest even.
void f32_to_f16_row(const float* src, uint16_t* dst, int64_t n);
// The same into dst[i * stride] (a key's values into its transposed cache tile).
void f32_to_f16_strided(const float* src, uint16_t* dst, int64_t stride, int64_t n);

// RoPE in place on n_heads heads of head_dim floats: the first rope_dim values of each head turn
// in pairs (a, b) = (i, i + rope_dim / 2) (neox) or (2i, 2i + 1), i < rope_dim / 2:
//   a' = a * cs[i] - b * sn[i],   b' = a * sn[i] + b * cs[i]
// Exact: two rounded products and one rounded sum per value (no fma) in every variant.
void rope_rotate(float* x, int64_t n_heads, int64_t head_dim, int64_t rope_dim, const float* cs,
                 const float* sn, bool neox);
void rope_rotate_ref(float* x, int64_t n_heads, int64_t head_dim, int64_t rope_dim, const float* cs,
                     const float* sn, bool neox);

// sum_i x[i]^2 accumulated in double (RMSNorm's sum, like ggml's ggml_float); the order of the
// additions differs between variants, so results agree to double rounding.
double sum_squares_f64(const float* x, int64_t n);
// y[i] = (x[i] * s) * w[i]  (exact: the same two roundings in every variant; y may alias x)
void scale_mul_f32(const float* x, float s, const float* w, float* y, int64_t n);

// out[i] = (g * g) * up[i] with g = max(gate[i], 0)   (exact; BitNet b1.58's relu^2 gate)
void relu2_mul(const float* gate, const float* up, float* out, int64_t n);

// The plain versions (tests compare against these).
float dot_f32_ref(const float* a, const float* b, int64_t n);

}  // namespace bitnet
