#include "cuda/infer_head_lt.h"

#include "cuda/check.h"
#include "cuda/infer_kernels.h"

namespace bitnet::cuda {

namespace {
struct Descs {  // released on every path out
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  ~Descs() {
    if (pref) (void)cublasLtMatmulPreferenceDestroy(pref);
    if (c) (void)cublasLtMatrixLayoutDestroy(c);
    if (b) (void)cublasLtMatrixLayoutDestroy(b);
    if (a) (void)cublasLtMatrixLayoutDestroy(a);
    if (op) (void)cublasLtMatmulDescDestroy(op);
  }
};
}  // namespace

bool head_gemm_lt(cublasLtHandle_t lt, void* workspace, size_t workspace_bytes, int type, const void* w,
                  int64_t rows, int64_t n, const void* h, int m, float* logits, int64_t ld, cudaStream_t s) {
  // Column-major: logits^T (rows x m, ld) = W^T (W as stored: n x rows, read transposed) . h^T (n x m).
  const cudaDataType_t ab = type == infer::kHeadBF16 ? CUDA_R_16BF : CUDA_R_16F;
  Descs d;
  BN_CUBLAS(cublasLtMatmulDescCreate(&d.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  BN_CUBLAS(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
  BN_CUBLAS(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
  BN_CUBLAS(cublasLtMatrixLayoutCreate(&d.a, ab, static_cast<uint64_t>(n), static_cast<uint64_t>(rows), n));
  BN_CUBLAS(cublasLtMatrixLayoutCreate(&d.b, ab, static_cast<uint64_t>(n), static_cast<uint64_t>(m), n));
  BN_CUBLAS(cublasLtMatrixLayoutCreate(&d.c, CUDA_R_32F, static_cast<uint64_t>(rows),
                                       static_cast<uint64_t>(m), ld));
  BN_CUBLAS(cublasLtMatmulPreferenceCreate(&d.pref));
  const uint64_t ws = workspace_bytes;
  BN_CUBLAS(cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                                 sizeof(ws)));
  cublasLtMatmulHeuristicResult_t res{};
  int found = 0;
  const cublasStatus_t st =
      cublasLtMatmulAlgoGetHeuristic(lt, d.op, d.a, d.b, d.c, d.c, d.pref, 1, &res, &found);
  if (st == CUBLAS_STATUS_NOT_SUPPORTED || (st == CUBLAS_STATUS_SUCCESS && found == 0)) return false;
  BN_CUBLAS(st);
  const float alpha = 1.0f, beta = 0.0f;
  BN_CUBLAS(cublasLtMatmul(lt, d.op, &alpha, w, d.a, h, d.b, &beta, logits, d.c, logits, d.c, &res.algo,
                           workspace, workspace_bytes, s));
  return true;
}

}  // namespace bitnet::cuda
