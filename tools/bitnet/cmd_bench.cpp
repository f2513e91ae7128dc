// `bitnet bench`: prompt processing (ppN: N tokens in one forward pass from an empty cache) and
// text generation (tgN: N tokens decoded one at a time) in tokens per second, like llama-bench.
// Prints a table, or with --json one object per test per line. -b B decodes B sequences at once
// (tgN xB: each step one token of each sequence, in one forward_batch), as a server's batching does.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <vector>

#include "cmd_bench_cuda.h"
#include "commands.h"
#include "core/error.h"
#include "core/memory.h"
#include "core/read_probe.h"
#include "device_option.h"
#include "inference/forward.h"
#include "json_out.h"
#include "model_source.h"
#include "option_checks.h"

namespace bitnet::cli {
namespace {

// Figures in JSON to 3 decimals, as the table prints them.
double round3(double x) {
  return std::round(x * 1e3) / 1e3;
}

struct Opts {
  ModelSource src;
  std::vector<int> n_prompt{128};
  std::vector<int> n_gen{64};
  std::vector<int> depth{0};
  std::vector<int> batch{1};
  int reps = 3;
  int threads = 2;
  bool json = false;
  bool profile = false;
  bool bound = true;
  std::string device = "auto";
  TpOption tp;
};

// Decode's bound around one tg test: the read bandwidth of one pass over the weights a token
// reads, by the bench's threads, just before and just after the test.
struct Bound {
  double before = 0, after = 0;  // GB/s
};
// One line of the bound table printed after the tests.
struct BoundRow {
  std::string test;
  double tps;  // the test's median
  Bound b;
};

struct Stats {
  double median, mean, sd;
};

Stats stats(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const double mean = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
  double ss = 0;
  for (double x : v) ss += (x - mean) * (x - mean);
  const double sd = v.size() > 1 ? std::sqrt(ss / static_cast<double>(v.size() - 1)) : 0.0;
  const size_t h = v.size() / 2;
  const double med = v.size() % 2 ? v[h] : (v[h - 1] + v[h]) / 2;
  return {med, mean, sd};
}

// Bytes of weights one token's pass reads in each profiled section (ternary sections: all layers).
double section_bytes(const Model& m, int sec) {
  double b = 0;
  for (const auto& L : m.layers) {
    if (sec == StepProfile::kQkv) b += static_cast<double>(L.wqkv.bytes());
    if (sec == StepProfile::kWo) b += static_cast<double>(L.wo.bytes());
    if (sec == StepProfile::kGateUp) b += static_cast<double>(L.w_gate_up.bytes());
    if (sec == StepProfile::kDown) b += static_cast<double>(L.w_down.bytes());
  }
  if (sec == StepProfile::kHead) b = static_cast<double>(m.output.nbytes());
  return b;
}

// Per-section time of the profiled calls: ms per call (a call is one forward(): a decoded token or
// a whole prompt), share of the total and, for sections that multiply weights, the weight bytes
// streamed per second (decode's limit) and the multiply-adds per second (prefill's limit; the
// ternary sections count tokens x weights, the head one output row of logits per call).
void print_profile(const std::string& test, const Model& m, const StepProfile& p) {
  double total = 0;
  for (double x : p.seconds) total += x;
  if (p.calls == 0 || total <= 0) return;
  const double tokens_per_call = static_cast<double>(p.tokens) / static_cast<double>(p.calls);
  std::printf(
      "\nprofile of %s (%lld calls, %lld tokens):\n| section | ms/call | share | weights GB/s | GMAC/s "
      "|\n|---|---:|---:|---:|---:|\n",
      test.c_str(), static_cast<long long>(p.calls), static_cast<long long>(p.tokens));
  for (int sec = 0; sec < StepProfile::kCount; ++sec) {
    const double per = p.seconds[sec] / static_cast<double>(p.calls);
    std::printf("| %s | %.3f | %.1f%% |", StepProfile::name(sec), per * 1e3, 100 * p.seconds[sec] / total);
    if (StepProfile::reads_weights(sec) && per > 0) {
      const double bytes = section_bytes(m, sec);
      // ternary: 4 weights per packed byte; head: rows x cols stored values
      const double macs = sec == StepProfile::kHead ? static_cast<double>(m.output.rows() * m.output.cols())
                                                    : bytes * 4 * tokens_per_call;
      std::printf(" %.1f | %.1f |\n", bytes / per * 1e-9, macs / per * 1e-9);
    } else {
      std::printf(" | |\n");
    }
  }
  std::printf("| total | %.3f | 100%% | %.1f | |\n\n", total / static_cast<double>(p.calls) * 1e3,
              static_cast<double>(decode_weight_bytes(m)) / (total / static_cast<double>(p.calls)) * 1e-9);
  std::fflush(stdout);
}

void run(const Opts& o) {
  LoadedModel lm = load_model(o.src, false);
#if defined(BITNET_HAVE_CUDA)
  const bool gpu = use_cuda(o.device);
  const std::vector<int> tp = tp_devices(o.tp, gpu);
  if (gpu) return run_bench_cuda(lm, {o.n_prompt, o.n_gen, o.batch, o.reps, o.json, o.profile, tp});
#else
  tp_devices(o.tp, false);  // an error for --tp
  use_cuda(o.device);       // an error for --device cuda
#endif
  Model* model = lm.model.get();
  const int max_depth = *std::max_element(o.depth.begin(), o.depth.end());
  const int max_ctx = max_depth +
                      std::max(*std::max_element(o.n_prompt.begin(), o.n_prompt.end()),
                               *std::max_element(o.n_gen.begin(), o.n_gen.end())) +
                      1;
  SessionOptions so;
  so.n_ctx = max_ctx;
  so.threads = o.threads;
  so.n_seq = *std::max_element(o.batch.begin(), o.batch.end());
  Session s(*model, so);
  const size_t kv_bytes = s.kv_cache_bytes();
  const double wbytes = static_cast<double>(decode_weight_bytes(*model));
  const double gib = wbytes / (1 << 30);
  const auto ranges = decode_weight_ranges(*model);
  // The fastest of four reads, two with the streams' software prefetch and two without (which is
  // faster depends on the CPU, core/read_probe.h); a read of the 2B4T's 0.8 - 1.2 GB takes 30 - 50 ms.
  auto read_gbps = [&] {
    double best = 1e30;
    for (int i = 0; i < 4; ++i) best = std::min(best, timed_read(s.pool(), ranges, i % 2 == 1));
    return wbytes / best * 1e-9;
  };
  if (!o.json) {
    std::printf("| model | weights read/token | threads | test | t/s |\n|---|---:|---:|---:|---:|\n");
    std::fflush(stdout);
  }
  auto tokens = [&](int n) {
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i)
      t[static_cast<size_t>(i)] = static_cast<int32_t>((i * 7919 + 13) % model->cfg.n_vocab);
    return t;
  };
  std::vector<BoundRow> bounds;
  auto report = [&](std::string test, int n, int depth, const std::vector<double>& secs, const Bound* b) {
    if (depth) test += " @ d" + std::to_string(depth);
    std::vector<double> tps;
    for (double x : secs) tps.push_back(n / x);
    const Stats st = stats(tps);
    if (b) bounds.push_back({test, st.median, *b});
    if (o.json) {
      ojson j = {{"model", lm.label},
                 {"threads", o.threads},
                 {"test", test},
                 {"n", n},
                 {"repetitions", o.reps},
                 {"tokens_per_second", round3(st.median)},
                 {"mean", round3(st.mean)},
                 {"sd", round3(st.sd)}};
      if (b) {
        j["read_gbps_before"] = round3(b->before);
        j["read_gbps_after"] = round3(b->after);
        j["bound_tokens_per_second"] = {round3(b->before * 1e9 / wbytes), round3(b->after * 1e9 / wbytes)};
      }
      print_json_line(j);
    } else {
      std::printf("| %s | %.2f GiB | %d | %s | %.2f ± %.2f |\n", lm.label.c_str(), gib, o.threads,
                  test.c_str(), st.median, st.sd);
    }
    std::fflush(stdout);
  };
  using clock = std::chrono::steady_clock;
  // A depth d prefills d tokens first (not timed), so the test runs with d tokens of context.
  // With B sequences, each is refilled to d tokens.
  auto prefill_depth = [&](int depth, int n_seq) {
    for (int q = 0; q < n_seq; ++q) {
      s.truncate(q, 0);
      if (depth <= 0) continue;
      std::vector<BatchToken> b;
      for (int32_t t : tokens(depth)) b.push_back({t, q, false});
      b.back().logits = true;
      s.forward_batch(b);
    }
  };
  // One test: `body` o.reps times after a warm-up run, each from a cache refilled to `depth`
  // (profiled when asked, the warm-up excluded), then its line and profile.
  auto run_test = [&](const std::string& name, int n, int depth, bool decode, int n_seq, auto&& body) {
    std::vector<double> secs;
    s.reset_profile();
    Bound b;
    if (decode && o.bound) b.before = read_gbps();
    for (int r = 0; r <= o.reps; ++r) {
      prefill_depth(depth, n_seq);
      s.set_profiling(o.profile && r > 0);
      const auto t0 = clock::now();
      body();
      const double dt = std::chrono::duration<double>(clock::now() - t0).count();
      s.set_profiling(false);
      if (r) secs.push_back(dt);
    }
    if (decode && o.bound) b.after = read_gbps();
    report(name, n, depth, secs, decode && o.bound ? &b : nullptr);
    if (o.profile && !o.json)
      print_profile(name + (depth ? " @ d" + std::to_string(depth) : ""), *model, s.profile());
  };
  for (int depth : o.depth)
    for (int p : o.n_prompt) {
      if (p <= 0) continue;
      const auto t = tokens(p);
      run_test("pp" + std::to_string(p), p, depth, false, 1, [&] { s.forward(t); });
    }
  for (int depth : o.depth)
    for (int g : o.n_gen) {
      if (g <= 0) continue;
      const auto t = tokens(g);
      for (int nb : o.batch) {
        if (nb == 1) {
          run_test("tg" + std::to_string(g), g, depth, true, 1, [&] {
            for (int i = 0; i < g; ++i) s.forward(std::span(t).subspan(static_cast<size_t>(i), 1));
          });
          continue;
        }
        // The bound of a batched step is not one read of the weights per token: no bound row.
        std::vector<BatchToken> step(static_cast<size_t>(nb));
        run_test("tg" + std::to_string(g) + " x" + std::to_string(nb), g * nb, depth, false, nb, [&] {
          for (int i = 0; i < g; ++i) {
            for (int q = 0; q < nb; ++q)
              step[static_cast<size_t>(q)] = {t[static_cast<size_t>((i + q) % g)], q, true};
            s.forward_batch(step);
          }
        });
      }
    }
  if (!o.json && !bounds.empty()) {
    std::printf(
        "\ndecode bound: one read of the %.2f GiB of weights a token reads, %d threads, best of 4, just "
        "before and after each test\n| test | t/s | read GB/s before / after | bound t/s | share of the "
        "bound "
        "|\n|---|---:|---:|---:|---:|\n",
        gib, o.threads);
    for (const auto& [test, tps, b] : bounds) {
      const double lo = std::min(b.before, b.after) * 1e9 / wbytes,
                   hi = std::max(b.before, b.after) * 1e9 / wbytes;
      std::printf("| %s | %.2f | %.1f / %.1f | %.1f - %.1f | %.0f - %.0f %% |\n", test.c_str(), tps, b.before,
                  b.after, lo, hi, 100 * tps / hi, 100 * tps / lo);
    }
  }
  // Peak resident memory of the whole process against what must be resident: the model file
  // (or, for a synthetic model, its weights) plus the KV cache.
  const double rss = static_cast<double>(peak_rss_bytes());
  const double need = static_cast<double>(lm.file_bytes ? lm.file_bytes : model_weight_bytes(*model)) +
                      static_cast<double>(kv_bytes);
  if (o.json) {
    print_json_line({{"model", lm.label},
                     {"peak_rss_bytes", static_cast<int64_t>(rss)},
                     {"model_bytes", lm.file_bytes ? lm.file_bytes : model_weight_bytes(*model)},
                     {"kv_cache_bytes", kv_bytes},
                     {"rss_ratio", std::round(rss / need * 1e4) / 1e4}});
  } else {
    std::printf("\npeak RSS %.1f MiB = %.3f x (model %s %.1f MiB + KV cache %.1f MiB)\n", rss / (1 << 20),
                rss / need, lm.file_bytes ? "file" : "weights",
                (need - static_cast<double>(kv_bytes)) / (1 << 20),
                static_cast<double>(kv_bytes) / (1 << 20));
  }
}

}  // namespace

void register_bench(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("bench", "Prompt-processing and generation speed (tokens/s), like llama-bench");
  static Opts o;
  add_model_options(cmd, o.src, true);
  cmd->add_option("-p,--n-prompt", o.n_prompt, "prompt lengths to test (0: none)")
      ->delimiter(',')
      ->check(at_least(0));
  cmd->add_option("-n,--n-gen", o.n_gen, "generation lengths to test (0: none)")
      ->delimiter(',')
      ->check(at_least(0));
  cmd->add_option("-d,--n-depth", o.depth, "context depths: tokens already in the cache before each test")
      ->delimiter(',')
      ->check(at_least(0));
  cmd->add_option("-b,--batch", o.batch,
                  "decode batch sizes: tgN xB decodes B sequences at once (aggregate tokens/s; CPU and CUDA)")
      ->delimiter(',')
      ->check(CLI::Range(1, 4096));
  cmd->add_option("-r,--repetitions", o.reps, "timed repetitions (median reported)")
      ->check(CLI::Range(1, 1000));
  cmd->add_option("-t,--threads", o.threads, "threads")->check(CLI::Range(1, 1024));
  cmd->add_flag("--json", o.json, "one JSON object per test per line");
  add_device_option(cmd, o.device);
  add_tp_options(cmd, o.tp);
  cmd->add_flag(
      "--no-bound", [](int64_t) { o.bound = false; },
      "leave out the read of the weights before and after each tg test (decode's bound)");
  cmd->add_flag("--profile", o.profile,
                "after each test, the time per section of the forward pass (not with --json)");
  cmd->callback([] { run(o); });
}

}  // namespace bitnet::cli
