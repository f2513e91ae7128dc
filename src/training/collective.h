#pragma once
// The collectives data-parallel training needs, seen from one rank of `size`. A plain struct of
// functions, like TrainBackend: the in-process version here (ranks as threads: the CPU reference
// and its tests), NCCL's over GPUs. Every call is collective: each rank makes the same calls in
// the same order with the same sizes.
//
// Sums are added in rank order (rank 0's value, plus rank 1's, ...), so every rank gets the same
// bits and a run does not depend on timing; NCCL's ring order differs, within float rounding.
#include <cstddef>
#include <functional>
#include <memory>
#include <vector>

namespace bitnet::train {

struct Collective {
  int rank = 0, size = 1;
  // data[0, n) <- the sum over ranks of their data[0, n).
  std::function<void(float* data, size_t n)> all_reduce_sum;
  std::function<void(double* data, size_t n)> all_reduce_sum_f64;
  // data[offsets[r], offsets[r + 1]) <- rank r's values there, for every r (offsets: size + 1
  // ascending values; each rank passes the same).
  std::function<void(float* data, const size_t* offsets)> all_gather;
};

// One rank: every collective is the identity.
Collective single_rank();

// `size` ranks in this process, one Collective each, to be used from `size` threads at once (a
// call returns when every rank has made it). A rank that throws leaves the others waiting: tests
// run each rank's work so that an error ends the process's test rather than hangs it.
std::vector<Collective> thread_collectives(int size);

// Rank r's share [begin, end) of n elements split into `size` nearly equal contiguous ranges; the
// offsets of all shares (size + 1 values) for all_gather.
std::vector<size_t> shard_offsets(size_t n, int size);

}  // namespace bitnet::train
