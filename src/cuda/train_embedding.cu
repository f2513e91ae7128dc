// The embedding's backward: dtable[id] += sum of dx[t] over the tokens t with that id, added in
// token order as on the CPU (so exact and deterministic, with no atomics). A stable radix sort of
// (id, position) pairs groups each id's positions in ascending order; the block of each group's
// first sorted entry adds the group's rows. O(T log T) work instead of comparing every pair.
#include <cub/device/device_radix_sort.cuh>

#include "cuda/check.h"
#include "cuda/reduce.cuh"
#include "cuda/train_kernels.h"

namespace bitnet::cuda::kern {

namespace {

constexpr int kThreads = 256;

// The scratch's parts: sorted ids, positions before and after the sort, then CUB's temporaries,
// each 256-byte aligned.
struct Parts {
  size_t ids_sorted, pos, pos_sorted, temp, temp_bytes, total;
};

size_t align256(size_t n) {
  return (n + 255) / 256 * 256;
}

Parts parts_for(int64_t T) {
  size_t temp_bytes = 0;
  BN_CUDA(cub::DeviceRadixSort::SortPairs(
      nullptr, temp_bytes, static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr),
      static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr), static_cast<int>(T)));
  const size_t ints = align256(sizeof(int32_t) * static_cast<size_t>(T));
  Parts p;
  p.ids_sorted = 0;
  p.pos = ints;
  p.pos_sorted = 2 * ints;
  p.temp = 3 * ints;
  p.temp_bytes = temp_bytes;
  p.total = p.temp + align256(temp_bytes);
  return p;
}

__global__ void positions_kernel(int32_t* __restrict__ pos, int64_t T) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t < T) pos[t] = static_cast<int32_t>(t);
}

// Block i: nothing unless sorted entry i starts its id's group; then the group's rows in order.
__global__ void add_groups_kernel(const int32_t* __restrict__ ids, const int32_t* __restrict__ pos, int64_t T,
                                  const float* __restrict__ dx, int64_t vocab, int64_t d,
                                  float* __restrict__ dtable, int32_t* flag) {
  const int64_t i = blockIdx.x;
  const int32_t id = ids[i];
  if (i > 0 && ids[i - 1] == id) return;
  if (id < 0 || id >= vocab) {
    if (threadIdx.x == 0) atomicExch(flag, 1);
    return;
  }
  int64_t end = i + 1;
  while (end < T && ids[end] == id) ++end;
  float* row = dtable + id * d;
  for (int64_t c = threadIdx.x; c < d; c += blockDim.x) {
    float s = row[c];
    for (int64_t u = i; u < end; ++u) s = __fadd_rn(s, dx[static_cast<int64_t>(pos[u]) * d + c]);
    row[c] = s;
  }
}

}  // namespace

size_t embedding_backward_scratch(int64_t T) {
  return T > 0 ? parts_for(T).total : 0;
}

void embedding_backward(const int32_t* tokens, int64_t T, const float* dx, int64_t vocab, int64_t d,
                        float* dtable, int32_t* flag, void* scratch, size_t scratch_bytes, cudaStream_t s) {
  if (T == 0) return;
  const Parts p = parts_for(T);
  if (scratch_bytes < p.total) BN_CUDA(cudaErrorInvalidValue);  // the caller sized it with ..._scratch
  auto* base = static_cast<unsigned char*>(scratch);
  auto* ids_sorted = reinterpret_cast<int32_t*>(base + p.ids_sorted);
  auto* pos = reinterpret_cast<int32_t*>(base + p.pos);
  auto* pos_sorted = reinterpret_cast<int32_t*>(base + p.pos_sorted);
  positions_kernel<<<dev::blocks_for(T, kThreads), kThreads, 0, s>>>(pos, T);
  BN_CUDA_LAUNCHED();
  size_t temp_bytes = p.temp_bytes;
  BN_CUDA(cub::DeviceRadixSort::SortPairs(base + p.temp, temp_bytes, tokens, ids_sorted, pos, pos_sorted,
                                          static_cast<int>(T), 0, 32, s));
  // A thread per column (up to 1024): a frequent id's block adds many rows one after another, and
  // that chain is what the backward waits for.
  const int threads = static_cast<int>(d >= 1024 ? 1024 : (d + 31) / 32 * 32);
  add_groups_kernel<<<static_cast<unsigned>(T), threads, 0, s>>>(ids_sorted, pos_sorted, T, dx, vocab, d,
                                                                 dtable, flag);
  BN_CUDA_LAUNCHED();
}

}  // namespace bitnet::cuda::kern
