#include "cuda/check.h"
#include "cuda/dp_kernels.h"

namespace bitnet::cuda::kern {

namespace {
constexpr int kThreads = 256;

// Plain additions in rank order (no fma contraction can apply: there is no product).
template <typename T>
__global__ void sum_ranks_kernel(RankBuffers<T> src, T* __restrict__ out, size_t begin, size_t end) {
  for (size_t i = begin + blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < end;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    T s = src.p[0][i];
    for (int r = 1; r < src.count; ++r) s += src.p[r][i];
    out[i] = s;
  }
}

template <typename T>
void launch(const RankBuffers<T>& src, T* out, size_t begin, size_t end, cudaStream_t s) {
  if (end <= begin) return;
  const size_t b = (end - begin + kThreads - 1) / kThreads;
  sum_ranks_kernel<T><<<static_cast<unsigned>(b < 4096 ? b : 4096), kThreads, 0, s>>>(src, out, begin, end);
  BN_CUDA_LAUNCHED();
}
}  // namespace

void sum_ranks(const RankBuffers<float>& src, float* out, size_t begin, size_t end, cudaStream_t s) {
  launch(src, out, begin, end, s);
}
void sum_ranks(const RankBuffers<double>& src, double* out, size_t begin, size_t end, cudaStream_t s) {
  launch(src, out, begin, end, s);
}

}  // namespace bitnet::cuda::kern
