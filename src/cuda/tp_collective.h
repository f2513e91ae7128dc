#pragma once
// The two collectives of tensor-parallel inference (infer_tp.h), issued by one host thread for all
// ranks, each rank's part on its own stream:
//  - all_reduce_i32: the int32 partial sums of o and down, added across ranks (exact in any order);
//  - all_gather_f32: each rank's block of floats (its heads' attention output, its gate|up rows)
//    copied to every rank, blocks in rank order.
// Two implementations, chosen by the device list (infer_tp.h): NCCL over distinct GPUs
// (ncclCommInitAll, the calls of all ranks inside one ncclGroupStart/End), and same-device, where
// every rank lives on one GPU and shares one stream, so a collective is device copies and an add
// kernel on that stream (how the tensor-parallel path runs, and is tested, on one GPU). Both may
// be captured into a CUDA graph.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace bitnet::cuda {

class TpCollective {
 public:
  virtual ~TpCollective() = default;
  // buf[r]: n int32 on rank r; afterwards every rank's holds the sum over ranks.
  virtual void all_reduce_i32(const std::vector<int32_t*>& buf, size_t n) = 0;
  // part[r]: count[r] floats on rank r; afterwards out[r] (on rank r) holds every part, in rank
  // order, one after another.
  virtual void all_gather_f32(const std::vector<const float*>& part, const std::vector<size_t>& count,
                              const std::vector<float*>& out) = 0;
  // "NCCL" or "same-device" (messages, the bench's header).
  virtual const char* name() const = 0;
};

// Every rank on the current GPU, on `stream`.
std::unique_ptr<TpCollective> same_device_collective(int ranks, cudaStream_t stream);
// One rank per GPU of `devices` (distinct), rank r on streams[r] (of devices[r]). Fails with a clear
// message where this build has no NCCL or the library cannot be loaded.
std::unique_ptr<TpCollective> nccl_collective(const std::vector<int>& devices,
                                              const std::vector<cudaStream_t>& streams);

}  // namespace bitnet::cuda
