// Dispatch + join latency of the thread pool: an empty job on every thread. The forward pass runs
// about 200 parallel sections per decoded token, so this must cost microseconds.
#include <benchmark/benchmark.h>

#include <atomic>

#include "core/thread_pool.h"

namespace bitnet {
namespace {

void BM_PoolRunEmpty(benchmark::State& st) {
  ThreadPool pool(static_cast<int>(st.range(0)));
  std::atomic<int> sink{0};
  for (auto _ : st) pool.run([&](int tid) { sink.fetch_add(tid, std::memory_order_relaxed); });
  benchmark::DoNotOptimize(sink.load());
}
BENCHMARK(BM_PoolRunEmpty)->Arg(1)->Arg(2)->UseRealTime();

void BM_PoolParallelFor(benchmark::State& st) {
  ThreadPool pool(static_cast<int>(st.range(0)));
  std::atomic<int64_t> sink{0};
  for (auto _ : st)
    pool.parallel_for(2560, 16, [&](int64_t b, int64_t e) { sink.fetch_add(e - b, std::memory_order_relaxed); });
  benchmark::DoNotOptimize(sink.load());
}
BENCHMARK(BM_PoolParallelFor)->Arg(2)->UseRealTime();

// The decode GEMV's form: 2560 rows in 16 chunks claimed from a shared counter.
void BM_PoolParallelForDynamic(benchmark::State& st) {
  ThreadPool pool(static_cast<int>(st.range(0)));
  std::atomic<int64_t> sink{0};
  for (auto _ : st)
    pool.parallel_for_dynamic(
        2560, 160, [&](int64_t b, int64_t e) { sink.fetch_add(e - b, std::memory_order_relaxed); });
  benchmark::DoNotOptimize(sink.load());
}
BENCHMARK(BM_PoolParallelForDynamic)->Arg(2)->UseRealTime();

}  // namespace
}  // namespace bitnet

BENCHMARK_MAIN();
