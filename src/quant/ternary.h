#pragma once
// BitNet b1.58 weight quantization (absmean), the spec in DEVELOPERS.md:
//   scale = mean(|W|) over the whole tensor (clamped below at 1e-5, as the reference does)
//   Wq    = clamp(round(W / scale), -1, 1), round half to even.
// The reference (transformers' BitNet `weight_quant`) multiplies by 1/scale rather than dividing;
// the two differ only when W/scale lands within one float ulp of ±0.5 or ±1.5. We multiply by the
// float reciprocal exactly as it does, so converted checkpoints match it bit for bit.
#include <cstddef>
#include <cstdint>

namespace bitnet {

// mean(|w|) accumulated in double (order-independent to well under one float ulp), returned as
// float and clamped to >= 1e-5.
float absmean_scale(const float* w, size_t n);

// q[i] = clamp(nearbyint(w[i] * (1/scale)), -1, 1).
void ternarize(const float* w, size_t n, float scale, int8_t* q);

// w[i] = q[i] * scale.
void dequantize_ternary(const int8_t* q, size_t n, float scale, float* w);

}  // namespace bitnet
