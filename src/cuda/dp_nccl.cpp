#include "cuda/dp_nccl.h"

#include <cstring>
#include <exception>
#include <memory>
#include <thread>

#include "core/error.h"
#include "cuda/check.h"
#include "cuda/device.h"
#if BITNET_HAVE_NCCL
#include "cuda/nccl_check.h"
#endif

namespace bitnet::cuda {

#if BITNET_HAVE_NCCL

std::vector<uint8_t> nccl_unique_id() {
  ncclUniqueId id;
  BN_NCCL(ncclGetUniqueId(&id));
  return std::vector<uint8_t>(reinterpret_cast<const uint8_t*>(id.internal),
                              reinterpret_cast<const uint8_t*>(id.internal) + sizeof(id.internal));
}

DeviceCollective nccl_rank(const std::vector<uint8_t>& id_bytes, int rank, int size, int device) {
  ncclUniqueId id;
  if (id_bytes.size() != sizeof(id.internal))
    fail("NCCL: a communicator id of {} bytes (NCCL's are {})", id_bytes.size(), sizeof(id.internal));
  std::memcpy(id.internal, id_bytes.data(), sizeof(id.internal));
  if (rank < 0 || rank >= size) fail("NCCL: rank {} of {}", rank, size);
  BN_CUDA(cudaSetDevice(device));
  ncclComm_t raw = nullptr;
  BN_NCCL(ncclCommInitRank(&raw, size, id, rank));
  // Destroyed with the last copy of the struct; a destructor must not throw, so its result is
  // not checked (the process is ending or the training is done).
  std::shared_ptr<ncclComm> comm(raw, [](ncclComm_t c) { (void)ncclCommDestroy(c); });
  DeviceCollective c;
  c.rank = rank;
  c.size = size;
  c.device = device;
  c.all_reduce_sum = [comm](float* d, size_t n, cudaStream_t s) {
    BN_NCCL(ncclAllReduce(d, d, n, ncclFloat32, ncclSum, comm.get(), s));
  };
  c.all_reduce_sum_f64 = [comm](double* d, size_t n, cudaStream_t s) {
    BN_NCCL(ncclAllReduce(d, d, n, ncclFloat64, ncclSum, comm.get(), s));
  };
  c.all_gather = [comm, rank](float* d, size_t shard, cudaStream_t s) {  // in place: NCCL allows it
    BN_NCCL(ncclAllGather(d + static_cast<size_t>(rank) * shard, d, shard, ncclFloat32, comm.get(), s));
  };
  return c;
}

std::vector<DeviceCollective> nccl_ranks_in_process(int gpus) {
  const size_t have = devices().size();
  if (gpus < 1) fail("--gpus {}: at least one", gpus);
  if (static_cast<size_t>(gpus) > have)
    fail("--gpus {}: this machine has {} GPU{}{}", gpus, have, have == 1 ? "" : "s",
         have == 0 ? " (" + unavailable_reason() + ")" : "");
  const std::vector<uint8_t> id = nccl_unique_id();
  std::vector<DeviceCollective> out(static_cast<size_t>(gpus));
  std::vector<std::exception_ptr> err(static_cast<size_t>(gpus));
  // ncclCommInitRank blocks until every rank has called it: one thread per rank.
  std::vector<std::thread> t;
  for (int r = 0; r < gpus; ++r)
    t.emplace_back([&, r] {
      try {
        out[static_cast<size_t>(r)] = nccl_rank(id, r, gpus, r);
      } catch (...) {
        err[static_cast<size_t>(r)] = std::current_exception();
      }
    });
  for (auto& x : t) x.join();
  for (auto& e : err)
    if (e) std::rethrow_exception(e);
  return out;
}

#else

std::vector<uint8_t> nccl_unique_id() {
  fail("several GPUs: this build has no NCCL (nccl.h was not found when it was configured)");
}
DeviceCollective nccl_rank(const std::vector<uint8_t>&, int, int, int) {
  fail("several GPUs: this build has no NCCL (nccl.h was not found when it was configured)");
}
std::vector<DeviceCollective> nccl_ranks_in_process(int) {
  fail("--gpus: this build has no NCCL (nccl.h was not found when it was configured)");
}

#endif

}  // namespace bitnet::cuda
