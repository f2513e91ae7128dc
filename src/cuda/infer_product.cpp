// The one choice of ternary product kernel for m tokens, shared by the single-GPU and the
// tensor-parallel session (infer_kernels.h: ternary_product).
#include <algorithm>
#include <cstdlib>

#include "cuda/infer_gemm_lt.h"
#include "cuda/infer_kernels.h"

namespace bitnet::cuda::infer {

int gemv_mma_max_tokens() {
  static const int n = [] {
    const char* e = std::getenv("BITNET_CUDA_GEMV_MMA");
    return e == nullptr ? kGemvMmaMaxTokens : std::clamp(std::atoi(e), 0, kGemvMmaMaxTokens);
  }();
  return n;
}

void ternary_product(const DevTernary& w, const DevActs& x, int m, float* y, int64_t ldy, bool add,
                     cudaStream_t s, const GemmSplitK& sk, const TernaryLt* lt) {
  if (lt != nullptr && ternary_lt_pays(m, w.n, lt->sms) && ternary_gemm_lt(*lt, w, x, m, y, ldy, add, s))
    return;
  if (m >= 2 && m <= gemv_mma_max_tokens())
    ternary_gemv_mma(w, x, m, y, ldy, add, s);
  else if (m <= 8)
    ternary_gemv(w, x, m, y, ldy, add, s);
  else
    ternary_gemm_mma(w, x, m, y, ldy, add, s, GemmTile::kAuto, sk);
}

void ternary_product_acc(const DevTernary& w, const DevActs& x, int m, int32_t* acc, cudaStream_t s) {
  if (m >= 2 && m <= gemv_mma_max_tokens())
    ternary_acc_gemv_mma(w, x, m, acc, s);
  else if (m <= 8)
    ternary_acc_gemv(w, x, m, acc, s);
  else
    ternary_acc_mma(w, x, m, acc, s);
}

}  // namespace bitnet::cuda::infer
