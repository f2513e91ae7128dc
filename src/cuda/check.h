#pragma once
// Every CUDA runtime and cuBLAS call is checked: a failure is a bitnet::Error naming the call, the
// file and line, and the runtime's message (exit code 0 proves nothing on a GPU). This header
// includes no fmt, so .cu files (whose nvcc front end cannot compile fmt's consteval checks) use it
// too; the error is built in check.cpp.
#include <cublasLt.h>
#include <cuda_runtime.h>

namespace bitnet::cuda {
[[noreturn]] void cuda_failed(const char* call, const char* file, int line, cudaError_t e);
[[noreturn]] void cublas_failed(const char* call, const char* file, int line, cublasStatus_t s);
}  // namespace bitnet::cuda

#define BN_CUDA(call)                                                                        \
  do {                                                                                       \
    const cudaError_t bn_e_ = (call);                                                        \
    if (bn_e_ != cudaSuccess) ::bitnet::cuda::cuda_failed(#call, __FILE__, __LINE__, bn_e_); \
  } while (0)

#define BN_CUBLAS(call)                                                                                  \
  do {                                                                                                   \
    const cublasStatus_t bn_s_ = (call);                                                                 \
    if (bn_s_ != CUBLAS_STATUS_SUCCESS) ::bitnet::cuda::cublas_failed(#call, __FILE__, __LINE__, bn_s_); \
  } while (0)

// After a kernel launch: the launch's own error (a bad configuration) at once.
#define BN_CUDA_LAUNCHED() BN_CUDA(cudaGetLastError())
