#pragma once
// Float operations of the forward pass other than the ternary matrix products: RMSNorm, RoPE,
// gated activations, embedding rows and the high-precision output head.
#include <cstdint>

#include "core/tensor.h"
#include "inference/config.h"

namespace bitnet {

class ThreadPool;

// y = x / sqrt(mean(x^2) + eps) * w   (sum of squares in double, like ggml's ggml_float)
void rms_norm(const float* x, const float* w, int64_t n, float eps, float* y);

// RoPE in two steps, so that a position's angles are computed once for every layer and head:
// rope_angles gives cs[i], sn[i] (i < rope_dim / 2), the cosine and sine of angle
// pos * theta^(-2i / rope_dim); rope_apply rotates the first `rope_dim` dimensions of each of
// `n_heads` heads of `head_dim` floats in place, in pairs (i, i + rope_dim/2) (NEOX) or
// (2i, 2i+1) (NORM).
void rope_angles(int64_t pos, int64_t rope_dim, float theta, float* cs, float* sn);
void rope_apply(float* x, int64_t n_heads, int64_t head_dim, int64_t rope_dim, const float* cs,
                const float* sn, RopeStyle style);

// out[i] = act(gate[i]) * up[i]; relu2: max(g, 0)^2, silu: g / (1 + exp(-g)).
void gated_act(const float* gate, const float* up, int64_t n, FfnAct act, float* out);

// Row `row` of a [rows][n] tensor of any dequantizable type, as float.
void embedding_row(const Tensor& table, int64_t row, float* out);

// logits[t][v] = dot(x[t], W[v]) for t < m, v < W.rows(); W of any dequantizable type.
void head_matmul(ThreadPool* pool, const Tensor& w, const float* x, int64_t m, float* logits);

}  // namespace bitnet
