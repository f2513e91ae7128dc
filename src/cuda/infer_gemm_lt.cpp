// Ternary products through cuBLASLt's int8 GEMM (infer_gemm_lt.h).
#include "cuda/infer_gemm_lt.h"

#include "cuda/check.h"
#include "cuda/infer_tp_kernels.h"
#include "cuda/lt_plans.h"

namespace bitnet::cuda {

namespace {

// Column-major: sums^T (n x m, ld n) = W8 (stored n x k_pad row-major: k_pad x n, read
// transposed) . X^T (x.q stored m x k_pad row-major: k_pad x m).
const LtPlan& plan_of(const TernaryLt& t, const infer::DevTernary& w, const infer::DevActs& x, int m) {
  const LtShape shape{
      CUDA_R_8I, CUDA_R_32I, CUBLAS_COMPUTE_32I, CUDA_R_32I, true, false, w.n, m, w.k_pad, w.k_pad,
      x.k_pad,   w.n};
  return t.plans->get(t.lt, shape, t.workspace_bytes);
}

bool sums(const TernaryLt& t, const infer::DevTernary& w, const infer::DevActs& x, int m, int32_t* out,
          cudaStream_t s) {
  if (!ternary_lt_fits(t, w, m) || x.k_pad != w.k_pad) return false;
  const LtPlan& p = plan_of(t, w, x, m);
  if (!p.found) return false;
  infer::expand_ternary_s8(w, t.w8, s);
  const int32_t alpha = 1, beta = 0;
  BN_CUBLAS(cublasLtMatmul(t.lt, p.op, &alpha, t.w8, p.a, x.q, p.b, &beta, out, p.c, out, p.c, &p.algo,
                           t.workspace, t.workspace_bytes, s));
  return true;
}

}  // namespace

bool ternary_lt_pays(int m, int64_t n, int sms) {
  return m >= kTernaryLtMinTokens && (m + 127) / 128 * ((n + 127) / 128) < 2 * static_cast<int64_t>(sms);
}

bool ternary_lt_fits(const TernaryLt& t, const infer::DevTernary& w, int m) {
  return t.lt != nullptr && m > 0 && static_cast<size_t>(w.n) * static_cast<size_t>(w.k_pad) <= t.w8_bytes &&
         static_cast<size_t>(m) * static_cast<size_t>(w.n) <= t.acc_len;
}

bool ternary_gemm_lt(const TernaryLt& t, const infer::DevTernary& w, const infer::DevActs& x, int m, float* y,
                     int64_t ldy, bool add, cudaStream_t s) {
  // The sums live in acc until the epilogue reads them: an output there is only safe converted
  // in place, element for element.
  const bool in_place = reinterpret_cast<const void*>(y) == reinterpret_cast<const void*>(t.acc);
  if (in_place && (add || ldy != w.n)) return false;
  if (!in_place && y < reinterpret_cast<const float*>(t.acc + t.acc_len) &&
      reinterpret_cast<const float*>(t.acc) < y + static_cast<int64_t>(m - 1) * ldy + w.n)
    return false;
  if (!sums(t, w, x, m, t.acc, s)) return false;
  infer::acc_epilogue(t.acc, m, w.n, w.row_scale, x.dq, y, ldy, add, s);
  return true;
}

bool ternary_acc_lt(const TernaryLt& t, const infer::DevTernary& w, const infer::DevActs& x, int m,
                    int32_t* acc, cudaStream_t s) {
  return sums(t, w, x, m, acc, s);
}

}  // namespace bitnet::cuda
