#pragma once
// The few kernels tensor-parallel inference (infer_tp.h) adds to the single-GPU ones: the ternary
// epilogue applied to int32 sums added across ranks, an int32 sum for collectives on one device,
// and the placement of gathered rank blocks into full rows. No fmt: nvcc compiles this header.
#include <cuda_runtime.h>

#include <cstdint>

namespace bitnet::cuda::infer {

// y[t][n] (row stride ldy) = float(acc[t][n]) * (row_scale[n] * dq[t]), or y += that when add:
// the epilogue of ternary_gemv / ternary_gemm_mma with the same float operations, on int32
// accumulators [m][n] summed over column shards (quant/shard.h's rule).
void acc_epilogue(const int32_t* acc, int m, int64_t n, const float* row_scale, const float* dq, float* y,
                  int64_t ldy, bool add, cudaStream_t s);

// dst[i] += src[i], i < n (int32: exact and order-free).
void add_i32(int32_t* dst, const int32_t* src, size_t n, cudaStream_t s);

// One run of columns: out[t][out_col + i] = src[src_off + t * src_ld + i] for i < width.
struct ColSegment {
  int64_t out_col = 0, width = 0, src_off = 0, src_ld = 0;
};
inline constexpr int kMaxColSegments = 16;  // two per rank (gate and up): 8 ranks
struct ColSegments {
  ColSegment seg[kMaxColSegments];
  int n = 0;
};
// Gathered rank blocks ([m][width] each, one after another) into rows of out [m][ldo].
void place_cols(const float* src, int m, const ColSegments& segs, float* out, int64_t ldo, cudaStream_t s);

}  // namespace bitnet::cuda::infer
