// AdamW (the CPU's update order, no FMA contraction) and the gradient's sum of squares.
#include "cuda/check.h"
#include "cuda/reduce.cuh"
#include "cuda/train_kernels.h"

namespace bitnet::cuda::kern {

namespace {

constexpr int kThreads = 256;

// adamw_step: g *= grad_mul (the clip factor: as the CPU scales the gradients first, without a
// pass of its own here); p *= decay; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g g;
// p -= lr (m / bc1) / (sqrt(v / bc2) + eps), each operation rounded as on the CPU.
__global__ void adamw_kernel(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                             float* __restrict__ v, const uint8_t* __restrict__ decay, int64_t n, float lr,
                             float decay_factor, float b1, float b2, float eps, float bc1, float bc2,
                             float grad_mul) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float pi = p[i];
  if (decay != nullptr && decay[i] != 0) pi = __fmul_rn(pi, decay_factor);
  const float gi = __fmul_rn(g[i], grad_mul);  // exact for 1
  const float mi = __fadd_rn(__fmul_rn(b1, m[i]), __fmul_rn(__fsub_rn(1.0f, b1), gi));
  const float vi = __fadd_rn(__fmul_rn(b2, v[i]), __fmul_rn(__fmul_rn(__fsub_rn(1.0f, b2), gi), gi));
  const float mh = __fdiv_rn(mi, bc1), vh = __fdiv_rn(vi, bc2);
  pi = __fsub_rn(pi, __fdiv_rn(__fmul_rn(lr, mh), __fadd_rn(__fsqrt_rn(vh), eps)));
  m[i] = mi;
  v[i] = vi;
  p[i] = pi;
}

__global__ void sum_squares_partial_kernel(const float* __restrict__ g, int64_t n,
                                           double* __restrict__ partial) {
  double s = 0.0;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const double x = g[i];
    s = __dadd_rn(s, __dmul_rn(x, x));
  }
  s = dev::block_reduce(s, dev::Sum{}, 0.0);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void sum_partials_kernel(const double* __restrict__ partial, int parts, double* __restrict__ out) {
  double s = 0.0;
  for (int i = threadIdx.x; i < parts; i += blockDim.x) s += partial[i];
  s = dev::block_reduce(s, dev::Sum{}, 0.0);
  if (threadIdx.x == 0) *out = s;
}

}  // namespace

void adamw_step(float* p, const float* g, float* m, float* v, const uint8_t* decay, int64_t n, float lr,
                float decay_factor, float b1, float b2, float eps, float bc1, float bc2, float grad_mul,
                cudaStream_t s) {
  if (n == 0) return;
  adamw_kernel<<<dev::blocks_for(n, kThreads), kThreads, 0, s>>>(p, g, m, v, decay, n, lr, decay_factor, b1,
                                                                 b2, eps, bc1, bc2, grad_mul);
  BN_CUDA_LAUNCHED();
}

void sum_squares(const float* g, int64_t n, double* partial, double* out, cudaStream_t s) {
  // A fixed number of blocks for a given n (about 8 elements per thread), so the order is fixed.
  const long long want = (n + kThreads * 8 - 1) / (kThreads * 8);
  const int parts = static_cast<int>(want < 1 ? 1 : (want > kNormParts ? kNormParts : want));
  sum_squares_partial_kernel<<<parts, kThreads, 0, s>>>(g, n, partial);
  BN_CUDA_LAUNCHED();
  sum_partials_kernel<<<1, kThreads, 0, s>>>(partial, parts, out);
  BN_CUDA_LAUNCHED();
}

}  // namespace bitnet::cuda::kern
