#pragma once
// The F16/BF16 head of a batch (prompt logits, batched decode) on tensor cores through cuBLASLt:
// the activations rounded to the weight type (as the CPU's head_prepare), products exact in
// fp32 accumulators, summed in cuBLASLt's order. Decode of 1 – 3 tokens keeps the head kernel
// (infer_head.cu): it reads the head once either way.
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace bitnet::cuda {

// From this many rows an F16/BF16 head goes through cuBLASLt; below, the kernel, which multiplies
// on CUDA cores 8 rows a pass over the head. H100, 2B4T: decode of 6 sequences 3,060 t/s against
// 2,740 with the kernel, of 8 4,000 against 3,310; at 2 and 3 the kernel is faster.
constexpr int kHeadLtMinRows = 4;

// logits[t * ld + r] = dot(W row r, h row t) for r < rows, t < m; W [rows][n] and h [m][n] in
// `type` (infer::kHeadF16 or kHeadBF16). False when cuBLASLt has no algorithm (use the kernel).
bool head_gemm_lt(cublasLtHandle_t lt, void* workspace, size_t workspace_bytes, int type, const void* w,
                  int64_t rows, int64_t n, const void* h, int m, float* logits, int64_t ld, cudaStream_t s);

}  // namespace bitnet::cuda
