// The machine's limits that every kernel figure is read against:
//  * read bandwidth: threads stream disjoint parts of a 1 GiB buffer with 64-byte loads (AVX-512
//    where available), the decode GEMV's access pattern; reported as bytes/s over all threads;
//  * peak int8 dot-product rate: 12 independent vpdpbusd chains per thread (64 MAC each), and
//    on AMX machines four independent tdpbssd tiles per thread (16,384 MAC each).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "core/cpu.h"
#include "core/memory.h"
#include "core/thread_pool.h"

namespace bitnet {
#if defined(BITNET_HAVE_X86_KERNELS)
double vnni_peak_macs_per_call();                     // limits_avx512.cpp
uint64_t vnni_peak_kernel(int64_t iters);             // returns a checksum
void vnni_lut_kernel(int64_t iters, bool with_vnni);  // limits_avx512.cpp
uint64_t read_stream_avx512(const uint8_t* p, size_t bytes, bool prefetch);
double amx_peak_macs_per_call();  // limits_amx.cpp
uint64_t amx_peak_kernel(int64_t iters);
#endif

namespace {

// Arg 0: threads; arg 1 (AVX-512 only): 1 = with the decode streams' software prefetch.
void BM_ReadBandwidth(benchmark::State& st) {
  const int threads = static_cast<int>(st.range(0));
  const bool prefetch = st.range(1) != 0;
  const size_t bytes = size_t{1} << 30;
  AlignedBuffer buf(bytes);
  std::memset(buf.data(), 1, bytes);
  ThreadPool pool(threads);
  const auto* words = buf.as<uint64_t>();
  const size_t n = bytes / 8;
  std::vector<uint64_t> sums(static_cast<size_t>(threads) * 8);
  [[maybe_unused]] const bool wide = cpu_features().avx512f;
  if (prefetch && !wide) {
    st.SkipWithError("the prefetched probe needs AVX-512");
    return;
  }
  for (auto _ : st) {
    pool.run([&](int tid) {
      // Each thread reads one contiguous part (64-byte aligned), as a GEMV thread does.
      const size_t b = n * static_cast<size_t>(tid) / static_cast<size_t>(threads) / 32 * 32;
      const size_t e =
          tid + 1 == threads ? n : n * static_cast<size_t>(tid + 1) / static_cast<size_t>(threads) / 32 * 32;
#if defined(BITNET_HAVE_X86_KERNELS)
      if (wide) {
        sums[static_cast<size_t>(tid) * 8] =
            read_stream_avx512(reinterpret_cast<const uint8_t*>(words + b), (e - b) * 8, prefetch);
        return;
      }
#endif
      uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (size_t i = b; i + 4 <= e; i += 4) {
        s0 += words[i];
        s1 += words[i + 1];
        s2 += words[i + 2];
        s3 += words[i + 3];
      }
      sums[static_cast<size_t>(tid) * 8] = s0 + s1 + s2 + s3;
    });
    benchmark::DoNotOptimize(sums.data());
  }
  st.counters["GB/s"] = benchmark::Counter(
      static_cast<double>(bytes) * static_cast<double>(st.iterations()) / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_ReadBandwidth)->Args({1, 0})->Args({2, 0})->UseRealTime()->Unit(benchmark::kMillisecond);
#if defined(BITNET_HAVE_X86_KERNELS)
BENCHMARK(BM_ReadBandwidth)->Args({1, 1})->Args({2, 1})->UseRealTime()->Unit(benchmark::kMillisecond);
#endif

#if defined(BITNET_HAVE_X86_KERNELS)
void BM_Int8PeakVnni(benchmark::State& st) {
  if (!cpu_features().avx512vnni) {
    st.SkipWithError("no AVX-512 VNNI");
    return;
  }
  const int threads = static_cast<int>(st.range(0));
  ThreadPool pool(threads);
  const int64_t iters = 1 << 22;
  for (auto _ : st) {
    pool.run([&](int) { benchmark::DoNotOptimize(vnni_peak_kernel(iters)); });
  }
  st.counters["GMAC/s"] = benchmark::Counter(vnni_peak_macs_per_call() * static_cast<double>(iters) *
                                                 threads * static_cast<double>(st.iterations()) / 1e9,
                                             benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Int8PeakVnni)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

// Whether byte-table lookups (vpshufb) run beside vpdpbusd or take its issue slots: one thread,
// the lookup blocks alone (arg 0), then 12 vpdpbusd and 6 lookup blocks per iteration (arg 1).
// Counters: vpdpbusd and vpshufb per second. A lookup-table ternary product only adds to the
// multiply rate if the mix keeps BM_Int8PeakVnni's vpdpbusd rate.
void BM_VnniBesideLookups(benchmark::State& st) {
  if (!cpu_features().avx512vnni) {
    st.SkipWithError("no AVX-512 VNNI");
    return;
  }
  const bool with_vnni = st.range(0) != 0;
  const int64_t iters = 1 << 22;
  for (auto _ : st) vnni_lut_kernel(iters, with_vnni);
  const double n = static_cast<double>(iters) * static_cast<double>(st.iterations());
  st.counters["G vpdpbusd/s"] =
      benchmark::Counter(with_vnni ? 12.0 * n / 1e9 : 0.0, benchmark::Counter::kIsRate);
  st.counters["G vpshufb/s"] = benchmark::Counter(12.0 * n / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_VnniBesideLookups)->Arg(0)->Arg(1)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_Int8PeakAmx(benchmark::State& st) {
  if (!cpu_features().amx_int8 || !request_amx()) {
    st.SkipWithError("no AMX-INT8");
    return;
  }
  const int threads = static_cast<int>(st.range(0));
  ThreadPool pool(threads);
  pool.run([](int) { request_amx(); });
  const int64_t iters = 1 << 18;
  for (auto _ : st) {
    pool.run([&](int) { benchmark::DoNotOptimize(amx_peak_kernel(iters)); });
  }
  st.counters["GMAC/s"] = benchmark::Counter(amx_peak_macs_per_call() * static_cast<double>(iters) * threads *
                                                 static_cast<double>(st.iterations()) / 1e9,
                                             benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Int8PeakAmx)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
#endif

}  // namespace
}  // namespace bitnet

BENCHMARK_MAIN();
