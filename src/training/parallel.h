#pragma once
// Internal to src/training: the ops' split of a loop over [0, n) across an optional pool.
#include <cstdint>

#include "core/thread_pool.h"

namespace bitnet::train {

// f(begin, end) over contiguous ranges of [0, n); inline (f(0, n)) when pool is null. Callers make
// each output element the work of one range, computed in a fixed order, so results do not depend
// on the thread count.
template <typename F>
void parallel_ranges(ThreadPool* pool, int64_t n, int64_t grain, F&& f) {
  if (n <= 0) return;
  if (pool == nullptr) {
    f(int64_t{0}, n);
    return;
  }
  pool->parallel_for(n, grain, f);
}

}  // namespace bitnet::train
