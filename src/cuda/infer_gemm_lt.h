#pragma once
// Prompt-size ternary products through cuBLASLt's int8 GEMM: the 2-bit codes of the matrix
// expanded to int8 weights (-1, 0, 1) in a scratch, one int8 x int8 -> int32 product (exact, so
// the sums are the CPU reference's bit for bit) and the GEMM kernel's epilogue on those sums
// (acc_epilogue: the same float operations, so the same output bits). Library GEMMs on Hopper run
// the int8 tensor cores through wgmma; the mma.sync kernel (infer_gemm.cu) stays for decode
// batches and for products that do not fit the scratch.
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "cuda/infer_kernels.h"

namespace bitnet::cuda {

class LtPlans;

// acc may be a buffer the caller has free during products (a session lends its gate|up output):
// an output y equal to acc is converted in place (stored, ldy = n).
struct TernaryLt {
  cublasLtHandle_t lt = nullptr;
  LtPlans* plans = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  int8_t* w8 = nullptr;  // n x k_pad bytes of the largest matrix it serves
  size_t w8_bytes = 0;
  int32_t* acc = nullptr;  // m x n sums
  size_t acc_len = 0;
  int sms = 0;  // the device's multiprocessors (ternary_lt_pays)
};

// From this many tokens a session's products may go through cuBLASLt (below, the mma.sync
// kernels, which are faster there: H100 lab, 64 tokens).
constexpr int kTernaryLtMinTokens = 128;

// Whether the route pays for m tokens and n rows: where the mma.sync GEMM's 128 x 128 tiles
// number fewer than two per SM, its grid leaves the SMs idle and cuBLASLt is 1.6 – 2.3 x faster
// (H100, 512 tokens, the 2B4T's 2,560- and 3,840-row matrices); with more tiles (13,824 rows)
// both take the same time. (A session's prompt gate|up takes the route from kTernaryLtMinTokens
// all the same, as ternary_acc_lt: without the epilogue pass, whose sums the gated norm reads
// itself, it is the faster one; infer_session.cpp run_layers.)
bool ternary_lt_pays(int m, int64_t n, int sms);
// Whether `t` can take the product of m tokens with w (scratch large enough).
bool ternary_lt_fits(const TernaryLt& t, const infer::DevTernary& w, int m);
// The product as ternary_gemm_mma gives it (y stored or added), or its raw int32 sums into acc
// (m x n). False where cuBLASLt has no algorithm for the shape or the scratch is too small
// (nothing launched).
bool ternary_gemm_lt(const TernaryLt& t, const infer::DevTernary& w, const infer::DevActs& x, int m, float* y,
                     int64_t ldy, bool add, cudaStream_t s);
bool ternary_acc_lt(const TernaryLt& t, const infer::DevTernary& w, const infer::DevActs& x, int m,
                    int32_t* acc, cudaStream_t s);

}  // namespace bitnet::cuda
