#pragma once
// The F16/BF16 head of a batch (prompt logits, batched decode) on tensor cores through cuBLASLt:
// the activations rounded to the weight type (as the CPU's head_prepare), products exact in
// fp32 accumulators, summed in cuBLASLt's order. Decode of up to 8 tokens keeps the head kernel
// (infer_head.cu): it reads the head once either way.
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace bitnet::cuda {

// logits[t * ld + r] = dot(W row r, h row t) for r < rows, t < m; W [rows][n] and h [m][n] in
// `type` (infer::kHeadF16 or kHeadBF16). False when cuBLASLt has no algorithm (use the kernel).
bool head_gemm_lt(cublasLtHandle_t lt, void* workspace, size_t workspace_bytes, int type, const void* w,
                  int64_t rows, int64_t n, const void* h, int m, float* logits, int64_t ld, cudaStream_t s);

}  // namespace bitnet::cuda
