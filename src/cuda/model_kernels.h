#pragma once
// Small element-wise kernels the CUDA trainer's model needs between the ops (model_kernels.cu).
// No fmt here: nvcc compiles this header.
#include <cuda_runtime.h>

#include <cstdint>

namespace bitnet::cuda::kern {

// x[i] += y[i] (the residual adds; the same float addition as the CPU's loop).
void add_inplace(float* x, const float* y, int64_t n, cudaStream_t s);
// g[i] *= k (gradient clipping).
void scale_inplace(float* g, float k, int64_t n, cudaStream_t s);

}  // namespace bitnet::cuda::kern
