// `bitnet bench --device cuda`. Decode's bound is the HBM read bandwidth, measured by a read of
// the device weights a step reads (the probe, best of 5) just before and after each test: a step
// of B sequences reads every weight once plus each sequence's KV cache, so its bound is B tokens
// per (weights + KV bytes) / bandwidth. Prompt processing is compute-bound; its figure is printed
// without a bound.
#include "cmd_bench_cuda.h"

#if defined(BITNET_HAVE_CUDA)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <numeric>
#include <type_traits>

#include "core/error.h"
#include "cuda/device.h"
#include "cuda/infer_session.h"
#include "cuda/infer_tp.h"
#include "json_out.h"

namespace bitnet::cli {

namespace {
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t h = v.size() / 2;
  return v.size() % 2 ? v[h] : (v[h - 1] + v[h]) / 2;
}
}  // namespace

// The tests on a single-GPU session or a tensor-parallel one (S); the HBM bound, the profile and
// the fused kernel are the single-GPU session's only.
template <class S>
void bench(S& s, const LoadedModel& lm, const CudaBenchOpts& o, const std::string& gpu) {
  constexpr bool kSingle = std::is_same_v<S, cuda::CudaSession>;
  const Model& model = *lm.model;
  const ModelConfig& c = model.cfg;
  const int max_g = std::max(1, *std::max_element(o.n_gen.begin(), o.n_gen.end()));
  const double wbytes = static_cast<double>(s.decode_weight_bytes());
  // KV bytes one token reads per layer and position (keys and values, half).
  const double kv_per_pos = static_cast<double>(c.n_layer * c.kv_dim() * 2 * 2);
  using clock = std::chrono::steady_clock;
  auto tokens = [&](int n, int salt) {
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i)
      t[static_cast<size_t>(i)] = static_cast<int32_t>((i * 7919 + 13 + salt * 101) % c.n_vocab);
    return t;
  };
  if (!o.json)
    std::printf(
        "| model | device | test | t/s | HBM GB/s (probe) | bound t/s | share of bound "
        "|\n|---|---|---|---:|---:|---:|---:|\n");
  auto line = [&](const std::string& test, double tps, double gbps, double bound) {
    if (o.json) {
      ojson j = {{"model", lm.label}, {"device", gpu}, {"test", test}, {"tokens_per_second", tps}};
      if (bound > 0) {
        j["read_gbps"] = gbps;
        j["bound_tokens_per_second"] = bound;
        j["share_of_bound"] = tps / bound;
      }
      print_json_line(j);
    } else if (bound > 0) {
      std::printf("| %s | %s | %s | %.1f | %.0f | %.1f | %.1f %% |\n", lm.label.c_str(), gpu.c_str(),
                  test.c_str(), tps, gbps, bound, 100 * tps / bound);
    } else {
      std::printf("| %s | %s | %s | %.1f | | | |\n", lm.label.c_str(), gpu.c_str(), test.c_str(), tps);
    }
    std::fflush(stdout);
  };
  for (int p : o.n_prompt) {
    if (p <= 0) continue;
    const auto t = tokens(p, 0);
    std::vector<double> tps;
    for (int r = 0; r <= o.reps; ++r) {
      s.truncate(0);
      const auto t0 = clock::now();
      s.forward(t);
      const double dt = std::chrono::duration<double>(clock::now() - t0).count();
      if (r) tps.push_back(p / dt);
    }
    line("pp" + std::to_string(p), median(tps), 0, 0);
  }
  for (int g : o.n_gen) {
    if (g <= 0) continue;
    for (int b : o.batch) {
      if (b <= 0) continue;
      std::vector<int32_t> seqs(static_cast<size_t>(b)), cur(static_cast<size_t>(b)),
          next(static_cast<size_t>(b));
      std::iota(seqs.begin(), seqs.end(), 0);
      double bw0 = 0;
      if constexpr (kSingle) bw0 = s.read_probe_gbps();
      std::vector<double> tps;
      for (int r = 0; r <= o.reps; ++r) {
        for (int q = 0; q < b; ++q) s.truncate_seq(q, 0);
        cur = tokens(b, r);
        const auto t0 = clock::now();
        for (int i = 0; i < g; ++i) {
          s.decode_greedy(cur, seqs, next.data());
          std::swap(cur, next);
        }
        const double dt = std::chrono::duration<double>(clock::now() - t0).count();
        if (r) tps.push_back(static_cast<double>(b) * g / dt);
      }
      double bw = 0, bound = 0;
      if constexpr (kSingle) {
        bw = std::max(bw0, s.read_probe_gbps());
        // Per step: the weights once, each sequence's keys and values at its average depth g / 2.
        const double step_bytes = wbytes + b * kv_per_pos * (g + 1) / 2.0;
        bound = b * bw * 1e9 / step_bytes;
      }
      line("tg" + std::to_string(g) + " b" + std::to_string(b), median(tps), bw, bound);
    }
  }
  if constexpr (kSingle) {
    if (o.profile && !o.json) {
      // A second, eager run of each test with events between the sections (no graph, so a decode
      // total is above the graph's step time; the shares show where the time goes).
      auto print = [&](const std::string& what, int calls, const char* unit) {
        double total = 0;
        for (const auto& [name, ms] : s.profile()) total += ms;
        std::printf(
            "\nprofile of %s (%d eager %ss, CUDA events): %.3f ms/%s\n| section | ms/%s | share "
            "|\n|---|---:|---:|\n",
            what.c_str(), calls, unit, total / calls, unit, unit);
        for (const auto& [name, ms] : s.profile())
          std::printf("| %s | %.4f | %.1f %% |\n", name, ms / calls, 100 * ms / std::max(total, 1e-9));
        for (const auto& [name, ms] : s.fused_profile())  // parts of the fused kernel's line above
          std::printf("| (%s) | %.4f | %.1f %% |\n", name, ms / calls, 100 * ms / std::max(total, 1e-9));
      };
      for (int p : o.n_prompt) {
        if (p <= 0) continue;
        const auto t = tokens(p, 0);
        const int calls = 3;
        s.set_profiling(true);
        for (int r = 0; r < calls; ++r) {
          s.truncate(0);
          s.forward(t);
        }
        s.set_profiling(false);
        print("pp" + std::to_string(p), calls, "prompt");
      }
      for (int b : o.batch) {
        if (b <= 0) continue;
        const int g = std::max(1, std::min(32, max_g));
        std::vector<int32_t> seqs(static_cast<size_t>(b)), cur = tokens(b, 7), next(static_cast<size_t>(b));
        std::iota(seqs.begin(), seqs.end(), 0);
        for (int q = 0; q < b; ++q) s.truncate_seq(q, 0);
        s.set_profiling(true);
        for (int i = 0; i < g; ++i) {
          s.decode_greedy(cur, seqs, next.data());
          std::swap(cur, next);
        }
        s.set_profiling(false);
        print("decode b" + std::to_string(b), g, "step");
      }
    }
  }
  const double need = static_cast<double>(lm.file_bytes ? lm.file_bytes : model_weight_bytes(model)) +
                      static_cast<double>(s.kv_cache_bytes()) + 64.0 * (1 << 20);
  const double used = static_cast<double>(s.device_bytes());
  if (o.json) {
    print_json_line({{"model", lm.label},
                     {"device_bytes", static_cast<int64_t>(used)},
                     {"kv_cache_bytes", s.kv_cache_bytes()},
                     {"memory_ratio", used / need}});
  } else if constexpr (!kSingle) {
    std::printf(
        "\ntensor parallel: %d ranks, %s collectives, decode steps as CUDA graphs (the head on rank 0, "
        "unsplit)\n",
        s.ranks(), s.collective());
    std::printf(
        "\nGPU memory %.1f MiB over all ranks (KV cache %.1f MiB); decode reads %.1f MiB of weights a "
        "step on the busiest rank\n",
        used / (1 << 20), static_cast<double>(s.kv_cache_bytes()) / (1 << 20), wbytes / (1 << 20));
  } else {
    std::string fused;
    for (int b : o.batch)
      if (b > 0)
        fused += (fused.empty() ? "" : ", ") + std::string(s.fused_decode_ok(b) ? "fused" : "per-op");
    std::printf("\ndecode steps (batches as listed): %s kernels\n", fused.c_str());
    std::printf(
        "\nGPU memory %.1f MiB = %.3f x (model %s + KV cache %.1f MiB + 64 MiB); decode reads %.1f MiB of "
        "weights a step\n",
        used / (1 << 20), used / need, lm.file_bytes ? "file" : "weights",
        static_cast<double>(s.kv_cache_bytes()) / (1 << 20), wbytes / (1 << 20));
  }
}

void run_bench_cuda(const LoadedModel& lm, const CudaBenchOpts& o) {
  const int max_b = std::max(1, *std::max_element(o.batch.begin(), o.batch.end()));
  const int max_p = std::max(1, *std::max_element(o.n_prompt.begin(), o.n_prompt.end()));
  const int max_g = std::max(1, *std::max_element(o.n_gen.begin(), o.n_gen.end()));
  cuda::CudaSessionOptions so;
  so.n_ctx = std::max(max_p, max_g) + 1;
  so.max_seqs = max_b;
  so.n_ubatch = std::min(512, max_p);
  if (o.tp.empty()) {
    cuda::CudaSession s(*lm.model, so);
    return bench(s, lm, o, cuda::devices().front().name);
  }
  if (o.profile)
    fail("bench --profile: the per-section profile is the single-GPU session's (leave out --tp)");
  cuda::CudaTpSession s(*lm.model, so, o.tp);
  std::string gpu = "TP" + std::to_string(o.tp.size()) + " (GPU";
  for (size_t i = 0; i < o.tp.size(); ++i) gpu += (i ? "," : " ") + std::to_string(o.tp[i]);
  gpu += ": " + cuda::devices()[static_cast<size_t>(o.tp[0])].name + ")";
  bench(s, lm, o, gpu);
}

}  // namespace bitnet::cli
#endif
