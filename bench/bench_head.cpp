// The output head at decode (one token): the 2B4T head [128256][2560] in each stored type the
// head kernels handle, streamed from DRAM (the table is larger than any cache). Counters: weight
// bytes read per second (compare with bench_limits' read bandwidth at the same thread count).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <vector>

#include "core/thread_pool.h"
#include "quant/head_dot.h"
#include "quant/q6_kx.h"
#include "quant/quantize_rows.h"
#include "quant/random_data.h"

namespace bitnet::bench {
namespace {

constexpr int64_t kVocab = 128256, kEmbd = 2560;
// Q6_KX (the loader's interleaved Q6_K, quant/q6_kx.h) last, so the other indices stay as they were.
const DType kTypes[] = {DType::F16, DType::BF16, DType::Q8_0, DType::Q6_K, DType::F32, DType::Q6_KX};

const std::vector<uint8_t>& table(DType t) {
  static std::vector<uint8_t> cache[std::size(kTypes)];
  const size_t i =
      static_cast<size_t>(std::find(std::begin(kTypes), std::end(kTypes), t) - std::begin(kTypes));
  if (cache[i].empty()) {
    cache[i].reserve(row_bytes(t, kEmbd) * kVocab);
    for (int64_t r0 = 0; r0 < kVocab; r0 += 4096) {  // generated in pieces: 1.3 GB as floats
      const int64_t rows = std::min<int64_t>(4096, kVocab - r0);
      auto f = random_floats(static_cast<size_t>(rows * kEmbd), static_cast<uint64_t>(r0 + 1));
      auto b = quantize_rows(t == DType::Q6_KX ? DType::Q6_K : t, f.data(), rows, kEmbd);
      if (t == DType::Q6_KX) {  // 4096 rows: whole groups of 16
        std::vector<uint8_t> x(b.size());
        repack_q6_kx_rows(b.data(), rows, kEmbd, x.data());
        b.swap(x);
      }
      cache[i].insert(cache[i].end(), b.begin(), b.end());
    }
  }
  return cache[i];
}

void BM_Head(benchmark::State& st) {
  const DType t = kTypes[st.range(0)];
  const int threads = static_cast<int>(st.range(1));
  const auto& w = table(t);
  auto x = random_floats(kEmbd, 7);
  HeadActs a;
  std::vector<float> y(kVocab);
  ThreadPool pool(threads);
  const HeadVariant& v = select_head(t);
  for (auto _ : st) {
    head_prepare(t, x.data(), 1, kEmbd, a);
    head_matvec_with(v, &pool, w.data(), row_bytes(t, kEmbd), kVocab, a, y.data());
  }
  benchmark::DoNotOptimize(y.data());
  st.SetLabel(std::string(dtype_name(t)) + " " + v.name);
  st.counters["weight_GB/s"] =
      benchmark::Counter(static_cast<double>(w.size()) * static_cast<double>(st.iterations()) / 1e9,
                         benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Head)->ArgsProduct({{0, 1, 2, 3, 4, 5}, {1, 2}})->UseRealTime()->Unit(benchmark::kMillisecond);

// The first 256 rows only, over and over on one thread: cache-resident (0.5 - 1.3 MB), so this is
// the kernel's compute ceiling, to read against the streamed figure above.
void BM_HeadHot(benchmark::State& st) {
  const DType t = kTypes[st.range(0)];
  constexpr int64_t rows = 256;
  const auto& w = table(t);
  auto x = random_floats(kEmbd, 7);
  HeadActs a;
  std::vector<float> y(rows);
  const HeadVariant& v = select_head(t);
  head_prepare(t, x.data(), 1, kEmbd, a);  // once: over the whole head it is a small share
  for (auto _ : st) {
    head_matvec_with(v, nullptr, w.data(), row_bytes(t, kEmbd), rows, a, y.data());
  }
  benchmark::DoNotOptimize(y.data());
  st.SetLabel(std::string(dtype_name(t)) + " " + v.name);
  st.counters["weight_GB/s"] = benchmark::Counter(
      static_cast<double>(row_bytes(t, kEmbd) * rows) * static_cast<double>(st.iterations()) / 1e9,
      benchmark::Counter::kIsRate);
}
BENCHMARK(BM_HeadHot)->DenseRange(0, 3)->Arg(5)->UseRealTime()->Unit(benchmark::kMicrosecond);

// The same hot rows for M tokens at once (batched decode: a server's step): counters are per
// token, so the kernels' sharing of each row's loads and conversions across tokens shows as a
// higher rate than M = 1.
void BM_HeadHotTokens(benchmark::State& st) {
  const DType t = kTypes[st.range(0)];
  const int64_t m = st.range(1);
  constexpr int64_t rows = 256;
  const auto& w = table(t);
  auto x = random_floats(static_cast<size_t>(m * kEmbd), 7);
  HeadActs a;
  std::vector<float> y(static_cast<size_t>(m * rows));
  const HeadVariant& v = select_head(t);
  head_prepare(t, x.data(), m, kEmbd, a);
  for (auto _ : st) {
    head_matvec_with(v, nullptr, w.data(), row_bytes(t, kEmbd), rows, a, y.data());
  }
  benchmark::DoNotOptimize(y.data());
  st.SetLabel(std::string(dtype_name(t)) + " " + v.name + " M=" + std::to_string(m));
  st.counters["GMAC/s"] =
      benchmark::Counter(static_cast<double>(rows * kEmbd * m) * static_cast<double>(st.iterations()) / 1e9,
                         benchmark::Counter::kIsRate);
}
BENCHMARK(BM_HeadHotTokens)
    ->ArgsProduct({{0, 3, 5}, {1, 4, 8, 16}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// The whole head streamed from DRAM for M tokens at once (a batched decode step), the pool's
// threads splitting the rows: counters are the head's bytes per second, so M = 8 against M = 1
// shows how much of the read the multiplies for 8 tokens leave hidden.
void BM_HeadTokens(benchmark::State& st) {
  const DType t = kTypes[st.range(0)];
  const int64_t m = st.range(1);
  const int threads = static_cast<int>(st.range(2));
  const auto& w = table(t);
  auto x = random_floats(static_cast<size_t>(m * kEmbd), 7);
  HeadActs a;
  std::vector<float> y(static_cast<size_t>(m * kVocab));
  ThreadPool pool(threads);
  const HeadVariant& v = select_head(t);
  for (auto _ : st) {
    head_prepare(t, x.data(), m, kEmbd, a);
    head_matvec_with(v, &pool, w.data(), row_bytes(t, kEmbd), kVocab, a, y.data());
  }
  benchmark::DoNotOptimize(y.data());
  st.SetLabel(std::string(dtype_name(t)) + " " + v.name + " M=" + std::to_string(m));
  st.counters["weight_GB/s"] =
      benchmark::Counter(static_cast<double>(w.size()) * static_cast<double>(st.iterations()) / 1e9,
                         benchmark::Counter::kIsRate);
}
BENCHMARK(BM_HeadTokens)->ArgsProduct({{5}, {1, 8}, {2}})->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace bitnet::bench

BENCHMARK_MAIN();
