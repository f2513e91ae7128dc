#include "training/collective.h"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <mutex>

#include "core/error.h"

namespace bitnet::train {

namespace {

// What the ranks of one process share: each rank's buffer of the current call, and a reusable
// barrier (a generation count: a rank waits until every rank has arrived at this generation).
struct Shared {
  int size;
  std::mutex mu;
  std::condition_variable cv;
  int arrived = 0;
  long generation = 0;
  std::vector<void*> ptr;
  std::vector<size_t> count;
  explicit Shared(int n) : size(n), ptr(static_cast<size_t>(n)), count(static_cast<size_t>(n)) {}

  void barrier() {
    std::unique_lock<std::mutex> lock(mu);
    const long gen = generation;
    if (++arrived == size) {
      arrived = 0;
      ++generation;
      cv.notify_all();
      return;
    }
    cv.wait(lock, [&] { return generation != gen; });
  }
};

// Each rank publishes its buffer; after the first barrier every rank sums its own slice of the
// elements over all ranks' buffers in rank order into a scratch copy; after the second, it copies
// the full result; the third keeps a fast rank from publishing its next call's buffer while a
// slow one still reads this one.
template <typename T>
void reduce_sum(Shared& sh, std::vector<T>& scratch, int rank, T* data, size_t n) {
  sh.ptr[static_cast<size_t>(rank)] = data;
  sh.count[static_cast<size_t>(rank)] = n;
  sh.barrier();
  for (int r = 0; r < sh.size; ++r)
    if (sh.count[static_cast<size_t>(r)] != n)
      fail("all_reduce: rank {} has {} values, rank {} has {}", rank, n, r, sh.count[static_cast<size_t>(r)]);
  if (rank == 0) scratch.resize(n);
  sh.barrier();
  const std::vector<size_t> parts = shard_offsets(n, sh.size);
  for (size_t i = parts[static_cast<size_t>(rank)]; i < parts[static_cast<size_t>(rank) + 1]; ++i) {
    T s = static_cast<const T*>(sh.ptr[0])[i];
    for (int r = 1; r < sh.size; ++r) s += static_cast<const T*>(sh.ptr[static_cast<size_t>(r)])[i];
    scratch[i] = s;
  }
  sh.barrier();
  std::copy(scratch.begin(), scratch.begin() + static_cast<std::ptrdiff_t>(n), data);
  sh.barrier();
}

}  // namespace

std::vector<size_t> shard_offsets(size_t n, int size) {
  std::vector<size_t> off(static_cast<size_t>(size) + 1);
  for (int r = 0; r <= size; ++r)
    off[static_cast<size_t>(r)] = n * static_cast<size_t>(r) / static_cast<size_t>(size);
  return off;
}

Collective single_rank() {
  Collective c;
  c.all_reduce_sum = [](float*, size_t) {};
  c.all_reduce_sum_f64 = [](double*, size_t) {};
  c.all_gather = [](float*, const size_t*) {};
  return c;
}

std::vector<Collective> thread_collectives(int size) {
  if (size < 1) fail("collectives: {} ranks", size);
  struct State {
    Shared sh;
    std::vector<float> f32;
    std::vector<double> f64;
    explicit State(int n) : sh(n) {}
  };
  auto st = std::make_shared<State>(size);
  std::vector<Collective> out;
  for (int rank = 0; rank < size; ++rank) {
    Collective c;
    c.rank = rank;
    c.size = size;
    c.all_reduce_sum = [st, rank](float* d, size_t n) { reduce_sum(st->sh, st->f32, rank, d, n); };
    c.all_reduce_sum_f64 = [st, rank](double* d, size_t n) { reduce_sum(st->sh, st->f64, rank, d, n); };
    c.all_gather = [st, rank](float* d, const size_t* off) {
      Shared& sh = st->sh;
      sh.ptr[static_cast<size_t>(rank)] = d;
      sh.barrier();
      for (int r = 0; r < sh.size; ++r)  // every other rank's share, from that rank's buffer
        if (r != rank)
          std::memcpy(d + off[r], static_cast<const float*>(sh.ptr[static_cast<size_t>(r)]) + off[r],
                      (off[r + 1] - off[r]) * sizeof(float));
      sh.barrier();
    };
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace bitnet::train
