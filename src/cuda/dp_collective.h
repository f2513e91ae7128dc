#pragma once
// The collectives data-parallel training needs on the GPU, seen from one rank of `size`: the
// device-side counterpart of training/collective.h. A plain struct of functions: NCCL's
// (dp_nccl.h) across GPUs and hosts, and the same-device one here (ranks as threads sharing one
// GPU: the tests' way to run several ranks where one GPU is lent). One host thread per rank calls
// them; tensor-parallel inference's collectives, issued by one thread for all ranks, are
// tp_collective.h.
//
// Every call is collective (each rank makes the same calls in the same order with the same
// sizes) and is ordered on `stream` like a kernel: it reads its input after the work queued
// there before it, and work queued after it sees its result.
#include <cuda_runtime.h>

#include <cstddef>
#include <functional>
#include <vector>

namespace bitnet::cuda {

struct DeviceCollective {
  int rank = 0, size = 1;
  int device = 0;  // the GPU this rank runs on
  // data[0, n) <- the sum over ranks of their data[0, n) (device memory).
  std::function<void(float* data, size_t n, cudaStream_t stream)> all_reduce_sum;
  std::function<void(double* data, size_t n, cudaStream_t stream)> all_reduce_sum_f64;
  // data[r * shard, (r + 1) * shard) <- rank r's values there, for every r (equal shares: what
  // NCCL's all-gather moves; callers pad).
  std::function<void(float* data, size_t shard, cudaStream_t stream)> all_gather;
};

// `size` ranks on GPU `device` of this process, one DeviceCollective each, to be used from `size`
// threads at once. Sums run in rank order (one kernel adds rank 0's value, then rank 1's, ...),
// so every rank gets the same bits; each call waits for its stream, meets the other ranks at host
// barriers and returns with its result written: no overlap with the caller's other work. A rank
// that throws leaves the others waiting (as training/collective.h's threads).
std::vector<DeviceCollective> same_device_ranks(int size, int device = 0);

}  // namespace bitnet::cuda
