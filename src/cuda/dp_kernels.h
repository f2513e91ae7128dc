#pragma once
// The same-device collective's kernel (dp_same_device.cu). No fmt here: nvcc compiles this header.
#include <cuda_runtime.h>

#include <cstddef>

namespace bitnet::cuda::kern {

constexpr int kMaxSameDeviceRanks = 8;

// The ranks' buffers of one call, passed by value (no device array to upload).
template <typename T>
struct RankBuffers {
  const T* p[kMaxSameDeviceRanks];
  int count;
};

// out[i] = ((src.p[0][i] + src.p[1][i]) + ...) for i in [begin, end): in rank order, so every
// rank's copy of the result has the same bits.
void sum_ranks(const RankBuffers<float>& src, float* out, size_t begin, size_t end, cudaStream_t s);
void sum_ranks(const RankBuffers<double>& src, double* out, size_t begin, size_t end, cudaStream_t s);

}  // namespace bitnet::cuda::kern
