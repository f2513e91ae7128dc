#include <barrier>
#include <memory>

#include "core/error.h"
#include "cuda/buffer.h"
#include "cuda/dp_collective.h"
#include "cuda/dp_kernels.h"
#include "training/collective.h"

namespace bitnet::cuda {

namespace {

// What the ranks share: each rank's buffer of the current call, the sums' scratch, and a reusable
// barrier.
struct Shared {
  int size;
  std::barrier<> sync;
  std::vector<void*> ptr;
  std::vector<size_t> count;
  Buffer<float> f32;
  Buffer<double> f64;
  explicit Shared(int n) : size(n), sync(n), ptr(static_cast<size_t>(n)), count(static_cast<size_t>(n)) {}
};

// Each rank publishes its buffer (complete: its stream has been waited for); after the first
// barrier every rank sums its slice of the elements over all buffers into the scratch; after the
// second, copies the whole result; the third keeps a fast rank from publishing its next call's
// buffer while a slow one still reads this one.
template <typename T>
void reduce_sum(Shared& sh, Buffer<T>& scratch, int rank, T* data, size_t n, cudaStream_t stream) {
  BN_CUDA(cudaStreamSynchronize(stream));
  sh.ptr[static_cast<size_t>(rank)] = data;
  sh.count[static_cast<size_t>(rank)] = n;
  sh.sync.arrive_and_wait();
  for (int r = 0; r < sh.size; ++r)
    if (sh.count[static_cast<size_t>(r)] != n)
      fail("all_reduce: rank {} has {} values, rank {} has {}", rank, n, r, sh.count[static_cast<size_t>(r)]);
  if (rank == 0 && scratch.size() < n) scratch.resize(n);
  sh.sync.arrive_and_wait();
  kern::RankBuffers<T> src{};
  src.count = sh.size;
  for (int r = 0; r < sh.size; ++r) src.p[r] = static_cast<const T*>(sh.ptr[static_cast<size_t>(r)]);
  const std::vector<size_t> parts = train::shard_offsets(n, sh.size);
  kern::sum_ranks(src, scratch.data(), parts[static_cast<size_t>(rank)], parts[static_cast<size_t>(rank) + 1],
                  stream);
  BN_CUDA(cudaStreamSynchronize(stream));
  sh.sync.arrive_and_wait();
  if (n > 0) BN_CUDA(cudaMemcpyAsync(data, scratch.data(), n * sizeof(T), cudaMemcpyDeviceToDevice, stream));
  BN_CUDA(cudaStreamSynchronize(stream));
  sh.sync.arrive_and_wait();
}

}  // namespace

std::vector<DeviceCollective> same_device_ranks(int size, int device) {
  if (size < 1 || size > kern::kMaxSameDeviceRanks)
    fail("same-device collectives: {} ranks (1 to {})", size, kern::kMaxSameDeviceRanks);
  auto sh = std::make_shared<Shared>(size);
  std::vector<DeviceCollective> out;
  for (int rank = 0; rank < size; ++rank) {
    DeviceCollective c;
    c.rank = rank;
    c.size = size;
    c.device = device;
    c.all_reduce_sum = [sh, rank](float* d, size_t n, cudaStream_t s) {
      reduce_sum(*sh, sh->f32, rank, d, n, s);
    };
    c.all_reduce_sum_f64 = [sh, rank](double* d, size_t n, cudaStream_t s) {
      reduce_sum(*sh, sh->f64, rank, d, n, s);
    };
    c.all_gather = [sh, rank](float* d, size_t shard, cudaStream_t s) {
      BN_CUDA(cudaStreamSynchronize(s));
      sh->ptr[static_cast<size_t>(rank)] = d;
      sh->sync.arrive_and_wait();
      for (int r = 0; r < sh->size; ++r)  // every other rank's share, from that rank's buffer
        if (r != rank && shard > 0)
          BN_CUDA(cudaMemcpyAsync(
              d + static_cast<size_t>(r) * shard,
              static_cast<const float*>(sh->ptr[static_cast<size_t>(r)]) + static_cast<size_t>(r) * shard,
              shard * sizeof(float), cudaMemcpyDeviceToDevice, s));
      BN_CUDA(cudaStreamSynchronize(s));
      sh->sync.arrive_and_wait();
    };
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace bitnet::cuda
