#pragma once
// Device expressions shared by the training kernels that compute the same values in different
// passes (a separate kernel and a fused one, or a column at a time and four at a time), so that
// they give the same bits: the gated activation and its gradients, RoPE on four columns, and a
// four-wide bf16 store.
#include <cuda_bf16.h>

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

// Columns c .. c + 3 of a head (c a multiple of 4 below 2 half; half a multiple of 4) rotated by the
// angles of position row cp / sp (the table's cs and sn at p * half; minus the angles for inverse).
// at4(k): the head's columns k .. k + 3. NEOX pairs column i with i + half, NORM 2i with 2i + 1.
template <class At4>
__device__ float4 rope4(const At4& at4, int c, int half, bool neox, const float* cp, const float* sp,
                        bool inverse) {
  if (neox) {
    const int i = c < half ? c : c - half;
    const float4 x0 = at4(i), x1 = at4(i + half);
    const float4 co = *reinterpret_cast<const float4*>(cp + i);
    float4 si = *reinterpret_cast<const float4*>(sp + i);
    if (inverse) si = make_float4(-si.x, -si.y, -si.z, -si.w);
    auto rot = [c, half](float a0, float a1, float c0, float s0) {
      return c < half ? __fsub_rn(__fmul_rn(a0, c0), __fmul_rn(a1, s0))
                      : __fadd_rn(__fmul_rn(a0, s0), __fmul_rn(a1, c0));
    };
    return make_float4(rot(x0.x, x1.x, co.x, si.x), rot(x0.y, x1.y, co.y, si.y), rot(x0.z, x1.z, co.z, si.z),
                       rot(x0.w, x1.w, co.w, si.w));
  }
  const int i = c / 2;
  const float4 a = at4(c);
  const float2 co = *reinterpret_cast<const float2*>(cp + i);
  float2 si = *reinterpret_cast<const float2*>(sp + i);
  if (inverse) si = make_float2(-si.x, -si.y);
  return make_float4(__fsub_rn(__fmul_rn(a.x, co.x), __fmul_rn(a.y, si.x)),
                     __fadd_rn(__fmul_rn(a.x, si.x), __fmul_rn(a.y, co.x)),
                     __fsub_rn(__fmul_rn(a.z, co.y), __fmul_rn(a.w, si.y)),
                     __fadd_rn(__fmul_rn(a.z, si.y), __fmul_rn(a.w, co.y)));
}

// Four floats to four bf16 (round to nearest) in one 8-byte store.
__device__ inline void store_bf16x4(__nv_bfloat16* p, float4 v) {
  __align__(8) __nv_bfloat16 o[4] = {__float2bfloat16(v.x), __float2bfloat16(v.y), __float2bfloat16(v.z),
                                     __float2bfloat16(v.w)};
  *reinterpret_cast<uint2*>(p) = *reinterpret_cast<const uint2*>(o);
}

}  // namespace bitnet::cuda::dev
