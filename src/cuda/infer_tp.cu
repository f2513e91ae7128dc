// Kernels of tensor-parallel inference (infer_tp_kernels.h). Compiled with -fmad=false like the
// ternary kernels, so the epilogue's product is not fused into the residual add: its bits are the
// single-GPU epilogue's. Each waits for the previous kernel (PDL, infer_launch.cuh) before it
// reads anything.
#include "cuda/check.h"
#include "cuda/infer_launch.cuh"
#include "cuda/infer_tp_kernels.h"

namespace bitnet::cuda::infer {
namespace {

constexpr int kThreads = 256;

__global__ void epilogue_kernel(const int32_t* acc, int m, int64_t n, const float* row_scale, const float* dq,
                                float* y, int64_t ldy, bool add) {
  pdl_launch();
  pdl_wait();
  const int64_t t = blockIdx.y;
  for (int64_t r = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x; r < n;
       r += static_cast<int64_t>(gridDim.x) * kThreads) {
    const float v = static_cast<float>(acc[t * n + r]) * (row_scale[r] * dq[t]);
    float& o = y[t * ldy + r];
    o = add ? o + v : v;
  }
}

__global__ void add_i32_kernel(int32_t* dst, const int32_t* src, size_t n) {
  pdl_launch();
  pdl_wait();
  for (size_t i = blockIdx.x * static_cast<size_t>(kThreads) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * kThreads)
    dst[i] += src[i];
}

__global__ void place_kernel(const float* src, ColSegments segs, float* out, int64_t ldo) {
  pdl_launch();
  pdl_wait();
  const int64_t t = blockIdx.x;
  const ColSegment g = segs.seg[blockIdx.y];
  for (int64_t i = threadIdx.x; i < g.width; i += kThreads)
    out[t * ldo + g.out_col + i] = src[g.src_off + t * g.src_ld + i];
}

unsigned blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < 1024 ? (b < 1 ? 1 : b) : 1024);
}

}  // namespace

void acc_epilogue(const int32_t* acc, int m, int64_t n, const float* row_scale, const float* dq, float* y,
                  int64_t ldy, bool add, cudaStream_t s) {
  launch(epilogue_kernel, dim3(blocks_for(n), static_cast<unsigned>(m)), kThreads, 0, s, acc, m, n, row_scale,
         dq, y, ldy, add);
  BN_CUDA_LAUNCHED();
}

void add_i32(int32_t* dst, const int32_t* src, size_t n, cudaStream_t s) {
  launch(add_i32_kernel, blocks_for(static_cast<int64_t>(n)), kThreads, 0, s, dst, src, n);
  BN_CUDA_LAUNCHED();
}

void place_cols(const float* src, int m, const ColSegments& segs, float* out, int64_t ldo, cudaStream_t s) {
  launch(place_kernel, dim3(static_cast<unsigned>(m), static_cast<unsigned>(segs.n)), kThreads, 0, s, src,
         segs, out, ldo);
  BN_CUDA_LAUNCHED();
}

}  // namespace bitnet::cuda::infer
