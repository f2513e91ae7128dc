// `bitnet selftest`: checks every kernel variant this CPU runs against the scalar reference (bit
// for bit on the int32 accumulators) and times the ternary GEMV/GEMM on the BitNet b1.58 2B4T
// shapes. Until the inference engine lands this is the README's "main job".
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <vector>

#include "commands.h"
#include "core/arena.h"
#include "core/cpu.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "quant/gemm.h"
#include "quant/random_data.h"

namespace bitnet::cli {
namespace {

struct Opts {
  int threads = 2;
  int reps = 7;
  bool quick = false;
};

int check_variants() {
  int failures = 0;
  const int64_t shapes[][3] = {{1, 37, 300}, {3, 64, 129}, {17, 100, 1000}, {130, 33, 2560}, {16, 48, 64}};
  for (const auto& v : gemm_variants()) {
    if (!v.cpu_ok()) continue;
    bool ok = true;
    for (const auto& sh : shapes) {
      const int64_t m = sh[0], n = sh[1], k = sh[2];
      auto wq = random_ternary(static_cast<size_t>(n * k), 11 + static_cast<uint64_t>(n));
      auto W = pack_native(wq.data(), n, k, 0.75f);
      auto xf = random_floats(static_cast<size_t>(m * k), 5 + static_cast<uint64_t>(m), -3.0f, 3.0f);
      Arena arena;
      auto X = alloc_quantized_acts(arena, m, k);
      quantize_acts(xf.data(), k, X);
      std::vector<int32_t> ref(static_cast<size_t>(m * n)), got(ref.size(), 0x7eadbeef);
      ternary_gemm_ref(W, X, 0, n, {ref.data(), n, nullptr, 0});
      ternary_gemm_with(v, nullptr, W, X, {got.data(), n, nullptr, 0});
      if (ref != got) ok = false;
    }
    std::printf("  %-12s %s\n", v.name, ok ? "bit-exact" : "MISMATCH");
    failures += ok ? 0 : 1;
  }
  return failures;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void time_shapes(const Opts& o) {
  ThreadPool pool(o.threads);
  struct Shape { const char* what; int64_t n, k; };
  const Shape shapes[] = {{"attn q/o", 2560, 2560}, {"attn k/v", 640, 2560},   {"ffn gate/up", 6912, 2560},
                          {"ffn down", 2560, 6912}, {"fused qkv", 3840, 2560}, {"fused gate|up", 13824, 2560}};
  std::printf("\n%-14s %6s %6s %5s %-11s %9s %10s %10s\n", "matrix", "N", "K", "M", "kernel", "us",
              "weight GB/s", "GMAC/s");
  for (int64_t m : {int64_t{1}, int64_t{128}}) {
    for (const auto& s : shapes) {
      if (o.quick && s.n != 6912 && s.n != 2560) continue;
      auto wq = random_ternary(static_cast<size_t>(s.n * s.k), 3);
      auto W = pack_native(wq.data(), s.n, s.k, 1.0f);
      auto xf = random_floats(static_cast<size_t>(m * s.k), 4);
      Arena arena;
      auto X = alloc_quantized_acts(arena, m, s.k);
      quantize_acts(xf.data(), s.k, X);
      std::vector<float> y(static_cast<size_t>(m * s.n));
      const GemmVariant& v = select_gemm(W, X);
      GemmOut out{nullptr, 0, y.data(), s.n};
      // GEMV reads more than the caches hold only across many matrices; rotate copies so each
      // timed call streams its weights from DRAM (8 copies > any L3 here for the large shapes).
      const int copies = m == 1 ? std::max(2, static_cast<int>(256e6 / static_cast<double>(W.bytes()))) : 1;
      std::vector<TernaryMatrix> ws;
      for (int i = 0; i < copies; ++i) ws.push_back(pack_native(wq.data(), s.n, s.k, 1.0f));
      std::vector<double> times;
      const int iters = m == 1 ? copies : 3;
      for (int r = 0; r < o.reps + 1; ++r) {
        auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < iters; ++i) ternary_gemm_with(v, &pool, ws[static_cast<size_t>(i % copies)], X, out);
        auto t1 = std::chrono::steady_clock::now();
        if (r) times.push_back(std::chrono::duration<double>(t1 - t0).count() / iters);
      }
      const double t = median(times);
      std::printf("%-14s %6lld %6lld %5lld %-11s %9.1f %10.1f %10.1f\n", s.what, static_cast<long long>(s.n),
                  static_cast<long long>(s.k), static_cast<long long>(m), v.name, t * 1e6,
                  static_cast<double>(W.bytes()) / t / 1e9,
                  static_cast<double>(m * s.n * s.k) / t / 1e9);
    }
  }
}

}  // namespace

void register_selftest(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "selftest", "Check every kernel variant against the reference, then time the 2B4T shapes");
  static Opts o;
  cmd->add_option("-t,--threads", o.threads, "threads")->check(CLI::Range(1, 1024));
  cmd->add_option("-r,--reps", o.reps, "timed repetitions (median reported)")->check(CLI::Range(1, 1000));
  cmd->add_flag("--quick", o.quick, "fewer shapes");
  cmd->callback([] {
    std::printf("cpu: %s\nthreads: %d\n\nkernel variants vs scalar reference:\n", cpu_summary().c_str(), o.threads);
    const int failures = check_variants();
    if (failures) fail("{} kernel variant(s) disagree with the reference", failures);
    time_shapes(o);
  });
}

}  // namespace bitnet::cli
