#include "cuda/check.h"

#include "core/error.h"

namespace bitnet::cuda {

void cuda_failed(const char* call, const char* file, int line, cudaError_t e) {
  fail("CUDA error at {}:{}: {} ({})", file, line, cudaGetErrorString(e), call);
}

void cublas_failed(const char* call, const char* file, int line, cublasStatus_t s) {
  fail("cuBLAS error at {}:{}: {} ({})", file, line, cublasLtGetStatusString(s), call);
}

}  // namespace bitnet::cuda
