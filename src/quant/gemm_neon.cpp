// NEON + dotprod variant (ARMv8.2-A sdot). A 64-byte native chunk is four 16-byte quarters, each
// holding rows 4q..4q+3 (4 codes per 32-bit lane), so `vdotq_laneq_s32(acc, codes, x16, s)` adds
// plane s of 4 rows against activation dword s of the chunk's 16 activations. Codes are u8 0..2,
// valid as s8, and the row sum of the activations is subtracted as in the x86 kernels.
// Compiled only when targeting aarch64; this project's machines are x86-64, so it is checked by
// tests only on an ARM machine (or under qemu-user).
#include <arm_neon.h>

#include "quant/gemm.h"

namespace bitnet {
namespace {

inline void store4(int32x4_t acc, const TernaryMatrix& w, const QuantizedActs& x, int64_t m,
                   int64_t row0, int64_t n1, const GemmOut& out) {
  acc = vsubq_s32(acc, vdupq_n_s32(x.sum[m]));
  int32_t a[4];
  vst1q_s32(a, acc);
  for (int r = 0; r < 4 && row0 + r < n1; ++r) {
    if (out.i32) out.i32[m * out.ld_i32 + row0 + r] = a[r];
    if (out.f32) {
      float& y = out.f32[m * out.ld_f32 + row0 + r];
      const float v = gemm_scale(a[r], w.row_scale()[row0 + r], x.dq[m]);
      y = out.add ? y + v : v;
    }
  }
}

template <int T>
void tile(const TernaryMatrix& w, const QuantizedActs& x, int64_t row0, int64_t m0, int64_t n1,
          const GemmOut& out) {
  const int64_t chunks = w.k_pad / kChunkK;
  const uint8x16_t low2 = vdupq_n_u8(3);
  const uint8_t* p = w.block(row0 / kRowBlock);
  int32x4_t acc[T][4];
  for (int t = 0; t < T; ++t)
    for (int q = 0; q < 4; ++q) acc[t][q] = vdupq_n_s32(0);
  for (int64_t c = 0; c < chunks; ++c) {
    uint8x16_t v[4];
    for (int q = 0; q < 4; ++q) v[q] = vld1q_u8(p + c * kChunkBytes + 16 * q);
    int8x16_t xv[T];
    for (int t = 0; t < T; ++t) xv[t] = vld1q_s8(x.q + (m0 + t) * x.k_pad + c * kChunkK);
    for (int q = 0; q < 4; ++q) {
      const int8x16_t u0 = vreinterpretq_s8_u8(vandq_u8(v[q], low2));
      const int8x16_t u1 = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(v[q], 2), low2));
      const int8x16_t u2 = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(v[q], 4), low2));
      const int8x16_t u3 = vreinterpretq_s8_u8(vshrq_n_u8(v[q], 6));
      for (int t = 0; t < T; ++t) {
        acc[t][q] = vdotq_laneq_s32(acc[t][q], u0, xv[t], 0);
        acc[t][q] = vdotq_laneq_s32(acc[t][q], u1, xv[t], 1);
        acc[t][q] = vdotq_laneq_s32(acc[t][q], u2, xv[t], 2);
        acc[t][q] = vdotq_laneq_s32(acc[t][q], u3, xv[t], 3);
      }
    }
  }
  for (int t = 0; t < T; ++t)
    for (int q = 0; q < 4; ++q) store4(acc[t][q], w, x, m0 + t, row0 + 4 * q, n1, out);
}

}  // namespace

void ternary_gemm_neon(const TernaryMatrix& w, const QuantizedActs& x, int64_t n0, int64_t n1,
                       const GemmOut& out) {
  for (int64_t row0 = n0; row0 < n1; row0 += kRowBlock) {
    int64_t m0 = 0;
    for (; m0 + 4 <= x.m; m0 += 4) tile<4>(w, x, row0, m0, n1, out);
    switch (x.m - m0) {
      case 3: tile<3>(w, x, row0, m0, n1, out); break;
      case 2: tile<2>(w, x, row0, m0, n1, out); break;
      case 1: tile<1>(w, x, row0, m0, n1, out); break;
      default: break;
    }
  }
}

}  // namespace bitnet
