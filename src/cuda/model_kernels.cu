#include "cuda/check.h"
#include "cuda/model_kernels.h"

namespace bitnet::cuda::kern {

namespace {
constexpr int kThreads = 256;

__global__ void add_kernel(float* __restrict__ x, const float* __restrict__ y, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    x[i] = __fadd_rn(x[i], y[i]);
}

__global__ void scale_kernel(float* __restrict__ g, float k, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    g[i] = __fmul_rn(g[i], k);
}

unsigned blocks(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < 65535 * 8 ? (b > 0 ? b : 1) : 65535 * 8);
}
}  // namespace

void add_inplace(float* x, const float* y, int64_t n, cudaStream_t s) {
  add_kernel<<<blocks(n), kThreads, 0, s>>>(x, y, n);
  BN_CUDA_LAUNCHED();
}

void scale_inplace(float* g, float k, int64_t n, cudaStream_t s) {
  scale_kernel<<<blocks(n), kThreads, 0, s>>>(g, k, n);
  BN_CUDA_LAUNCHED();
}

}  // namespace bitnet::cuda::kern
