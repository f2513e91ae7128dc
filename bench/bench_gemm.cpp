// Prefill GEMM (M = 128 and 512 tokens) and batched decode (M = 8, 16 sequences) on the 2B4T shapes. Counter:
// int8 GMAC/s (M*N*K per second), to compare with bench_limits' peak int8 rate at the same thread count.
#include <benchmark/benchmark.h>

#include "bench_common.h"
#include "core/thread_pool.h"

namespace bitnet::bench {
namespace {

void BM_Gemm(benchmark::State& st) {
  const Shape& s = kShapes[st.range(0)];
  const int64_t m = st.range(1);
  const int threads = static_cast<int>(st.range(2));
  // Cold weights, as in the model (each layer's matrices come from DRAM once per step).
  auto ws = weight_copies(s, 256e6);
  size_t i = 0;
  Arena arena;
  auto x = random_acts(arena, m, s.k);
  std::vector<float> y(static_cast<size_t>(m * s.n));
  ThreadPool pool(threads);
  const GemmVariant& v = select_gemm(ws[0], x);
  for (auto _ : st) {
    ternary_gemm_with(v, &pool, ws[i], x, {nullptr, 0, y.data(), s.n});
    i = (i + 1) % ws.size();
  }
  benchmark::DoNotOptimize(y.data());
  st.SetLabel(std::string(s.name) + " " + v.name);
  st.counters["GMAC/s"] =
      benchmark::Counter(static_cast<double>(m * s.n * s.k) * static_cast<double>(st.iterations()) / 1e9,
                         benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Gemm)
    ->ArgsProduct({{0, 1, 2, 3, 4, 5}, {8, 16, 128, 512}, {1, 2}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace bitnet::bench

BENCHMARK_MAIN();
