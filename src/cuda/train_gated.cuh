#pragma once
// The gated activation's forward and backward expressions, shared by every kernel that applies
// them (gated_* in train_elementwise.cu, the fused norm kernels in train_linear.cu and
// train_elementwise.cu), so that fused and separate kernels give the same bits.
namespace bitnet::cuda::dev {

// relu2: relu(g)^2 * u; else silu(g) * u.
__device__ inline float gated_value(float g, float u, bool relu2) {
  if (relu2) {
    const float r = g > 0 ? g : 0.0f;
    return __fmul_rn(__fmul_rn(r, r), u);
  }
  return __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), u);
}

// The gradients of gated_value with respect to g and u, given its output's gradient d.
__device__ inline void gated_grads(float g, float u, float d, bool relu2, float& dg, float& du) {
  if (relu2) {
    const float r = g > 0 ? g : 0.0f;
    dg = __fmul_rn(__fmul_rn(__fmul_rn(2.0f, r), u), d);
    du = __fmul_rn(__fmul_rn(r, r), d);
  } else {
    const float sig = __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-g)));
    dg = __fmul_rn(__fmul_rn(__fmul_rn(sig, __fadd_rn(1.0f, __fmul_rn(g, __fsub_rn(1.0f, sig)))), u), d);
    du = __fmul_rn(__fmul_rn(g, sig), d);
  }
}

}  // namespace bitnet::cuda::dev
