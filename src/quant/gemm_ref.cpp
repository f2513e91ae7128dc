#include "quant/gemm.h"

namespace bitnet {

void ternary_gemm_ref(const TernaryMatrix& w, const QuantizedActs& x, int64_t n0, int64_t n1,
                      const GemmOut& out) {
  const int64_t chunks = w.k_pad / kChunkK;
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* blk = w.block(n / kRowBlock);
    const int64_t r = n % kRowBlock;
    for (int64_t m = 0; m < x.m; ++m) {
      const int8_t* xr = x.q + m * x.k_pad;
      int32_t acc = 0;
      for (int64_t k = 0; k < x.k; ++k) {
        const int64_t c = k / kChunkK, s = (k % kChunkK) / 4, i = k % 4;
        const int wv = static_cast<int>((blk[c * kChunkBytes + 4 * r + i] >> (2 * s)) & 3) - 1;
        acc += wv * xr[k];
      }
      (void)chunks;
      if (out.i32) out.i32[m * out.ld_i32 + n] = acc;
      if (out.f32) {
        float& y = out.f32[m * out.ld_f32 + n];
        const float v = gemm_scale(acc, w.row_scale()[n], x.dq[m]);
        y = out.add ? y + v : v;
      }
    }
  }
}

}  // namespace bitnet
