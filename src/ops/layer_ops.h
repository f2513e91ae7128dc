#pragma once
// Float operations of a transformer layer other than the matrix products: RMSNorm, RoPE and
// gated activations, over the primitives of ops/vec.h.
#include <cstdint>

namespace bitnet {

enum class RopeStyle : uint8_t {
  kNeox,  // rotate-half: pairs (i, i + d/2)            (bitnet-b1.58, llama.cpp bitnet)
  kNorm,  // interleaved: pairs (2i, 2i + 1)            (llama.cpp `llama` arch)
};
enum class FfnAct : uint8_t {
  kRelu2,  // relu(gate)^2 * up   (BitNet b1.58 2B4T)
  kSilu,   // silu(gate) * up     (llama, 1bitLLM via llama.cpp `bitnet`)
};

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

}  // namespace bitnet
