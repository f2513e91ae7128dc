// Decode GEMV (M = 1) on the 2B4T shapes. Counters: weight bytes streamed per second (compare
// with bench_limits' read bandwidth at the same thread count) and GMAC/s. The kernel is the
// dispatcher's choice, or BITNET_KERNEL's.
#include <benchmark/benchmark.h>

#include "bench_common.h"
#include "core/thread_pool.h"

namespace bitnet::bench {
namespace {

void gemv_bench(benchmark::State& st, double min_bytes) {
  const Shape& s = kShapes[st.range(0)];
  const int threads = static_cast<int>(st.range(1));
  auto ws = weight_copies(s, min_bytes);
  Arena arena;
  auto x = random_acts(arena, 1, s.k);
  std::vector<float> y(static_cast<size_t>(s.n));
  ThreadPool pool(threads);
  const GemmVariant& v = select_gemm(ws[0], x);
  size_t i = 0;
  for (auto _ : st) {
    ternary_gemm_with(v, &pool, ws[i], x, {nullptr, 0, y.data(), s.n});
    i = (i + 1) % ws.size();
  }
  benchmark::DoNotOptimize(y.data());
  st.SetLabel(std::string(s.name) + " " + v.name);
  const double it = static_cast<double>(st.iterations());
  st.counters["weight_GB/s"] = benchmark::Counter(static_cast<double>(ws[0].bytes()) * it / 1e9, benchmark::Counter::kIsRate);
  st.counters["GMAC/s"] = benchmark::Counter(static_cast<double>(s.n * s.k) * it / 1e9, benchmark::Counter::kIsRate);
}
void BM_Gemv(benchmark::State& st) {
  gemv_bench(st, 256e6);
}
// One copy, cache-resident after the first call (q/o: 1.6 MB, in L2 on spr; k/v in L2 on dev): the
// kernel's compute ceiling. Where it is not well above the DRAM figure, the vector ports and not
// memory set the decode pace.
void BM_GemvHot(benchmark::State& st) {
  gemv_bench(st, 0);
}
BENCHMARK(BM_Gemv)->ArgsProduct({{0, 1, 2, 3, 4, 5}, {1, 2}})->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_GemvHot)->ArgsProduct({{0, 1}, {1, 2}})->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace bitnet::bench

BENCHMARK_MAIN();
