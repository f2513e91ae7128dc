#pragma once
// Block-wide reductions (the trainer's kernels, the inference norms and log-sum-exp): an xor butterfly within
// each warp, then the same over the warps' results. The order depends only on blockDim, so results are
// reproducible, and every thread gets the same bits (a + b == b + a in IEEE arithmetic).
namespace bitnet::cuda::dev {

struct Sum {
  template <typename T>
  __device__ T operator()(T a, T b) const {
    return a + b;
  }
};
struct Max {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

template <typename T, typename Op>
__device__ T warp_reduce(T v, Op op) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// blockDim.x: a multiple of 32. Every thread of the block must call it; it may be called again
// right away (the first barrier keeps a new call from overwriting results still being read).
template <typename T, typename Op>
__device__ T block_reduce(T v, Op op, T identity) {
  __shared__ T sh[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_reduce(v, op);
  __syncthreads();
  if (lane == 0) sh[warp] = v;
  __syncthreads();
  v = lane < warps ? sh[lane] : identity;
  return warp_reduce(v, op);
}

inline unsigned blocks_for(long long n, int threads) {
  return static_cast<unsigned>((n + threads - 1) / threads);
}

}  // namespace bitnet::cuda::dev
