// `bitnet perplexity`: llama-perplexity's method (src/inference/perplexity.h), so the figure
// compares across tools. With --kl-base, a second model (e.g. the same weights with an F16 head) runs
// over the same windows and the KL divergence of the tested model from it is reported too.
#include <cstdio>

#include "commands.h"
#include "core/error.h"
#include "core/read_file.h"
#include "device_option.h"
#include "inference/perplexity.h"
#include "json_out.h"
#include "model_source.h"
#include "option_checks.h"

namespace bitnet::cli {

void register_perplexity(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("perplexity", "Perplexity of a text, computed like llama.cpp's llama-perplexity");
  struct Opts {
    ModelSource src;
    std::string file;
    int64_t n_ctx = 512;
    int64_t chunks = -1;
    int threads = 2;
    bool json = false;
    std::string kl_base;
    std::string device = "auto";
    TpOption tp;
  };
  static Opts o;
  add_model_options(cmd, o.src, false);
  cmd->add_option("-f,--file", o.file, "text file")->required();
  cmd->add_option("-c,--ctx-size", o.n_ctx, "window size in tokens")
      ->check(CLI::Range(int64_t{4}, int64_t{1} << 20));
  cmd->add_option("--chunks", o.chunks, "maximum number of windows (default: all)")->check(at_least(1));
  cmd->add_option("-t,--threads", o.threads, "threads")->check(CLI::Range(1, 1024));
  add_device_option(cmd, o.device);
  add_tp_options(cmd, o.tp);
  cmd->add_flag("--json", o.json, "print {\"ppl\", \"ppl_err\", \"tokens\"}");
  cmd->add_option(
      "--kl-base", o.kl_base,
      "base model (GGUF) to compare with: adds KL(base || model) per token, top-token agreement and "
      "the base's perplexity");
  cmd->callback([] {
    LoadedModel lm = load_model(o.src, true);
    const std::string text = read_file(o.file, "the text to score");
    const Tokenizer& tok = *lm.tokenizer;
    EncodeOptions eo;
    eo.add_bos = tok.add_bos();
    const std::vector<int32_t> ids = tok.encode(text, eo);
    // Before any engine exists: its KV cache for a large -c is gigabytes the text could not use.
    check_perplexity_text(static_cast<int64_t>(ids.size()), o.n_ctx);
    if (!o.kl_base.empty()) {
      ModelSource bsrc;
      bsrc.path = o.kl_base;
      LoadedModel base = load_model(bsrc, true);
      // Same text, same tokens: a different tokenizer would compare unrelated distributions.
      if (base.tokenizer->encode(text, eo) != ids)
        fail(
            "--kl-base: '{}' tokenizes the text differently from '{}'; compare models with the same "
            "tokenizer",
            o.kl_base, lm.label);
      const bool gpu = use_cuda(o.device);
      const std::vector<int> tp = tp_devices(o.tp, gpu);
      const auto sb = make_engine(*base.model, o.n_ctx, o.threads, gpu, tp);
      const auto st = make_engine(*lm.model, o.n_ctx, o.threads, gpu, tp);
      const KlResult r =
          kl_divergence(*sb, *st, ids, o.n_ctx, o.chunks, tok.add_bos(), tok.bos_id(),
                        [&](int64_t done, int64_t total, double kl) {
                          if (!o.json)
                            std::fprintf(stderr, "[%lld/%lld] KL %.6f\n", static_cast<long long>(done),
                                         static_cast<long long>(total), kl);
                        });
      if (o.json) {
        print_json_line({{"ppl", r.test.ppl},
                         {"ppl_err", r.test.ppl_err},
                         {"base_ppl", r.base.ppl},
                         {"base_ppl_err", r.base.ppl_err},
                         {"kl_mean", r.kl_mean},
                         {"kl_err", r.kl_err},
                         {"kl_median", r.kl_median},
                         {"kl_p99", r.kl_p99},
                         {"kl_max", r.kl_max},
                         {"same_top", r.same_top},
                         {"tokens", r.tokens},
                         {"windows", r.windows},
                         {"ctx", o.n_ctx}});
      } else {
        std::printf("PPL      = %.4f +/- %.5f\n", r.test.ppl, r.test.ppl_err);
        std::printf("base PPL = %.4f +/- %.5f (%s)\n", r.base.ppl, r.base.ppl_err, o.kl_base.c_str());
        std::printf("PPL ratio = %.5f (%+.3f%%)\n", r.test.ppl / r.base.ppl,
                    100 * (r.test.ppl / r.base.ppl - 1));
        std::printf("KL(base || model) mean = %.6f +/- %.6f, median %.6f, 99%% %.6f, max %.6f nats\n",
                    r.kl_mean, r.kl_err, r.kl_median, r.kl_p99, r.kl_max);
        std::printf("same top token = %.3f%% (%lld tokens scored in %lld windows of %lld)\n",
                    100 * r.same_top, static_cast<long long>(r.tokens), static_cast<long long>(r.windows),
                    static_cast<long long>(o.n_ctx));
      }
      return;
    }
    const bool gpu = use_cuda(o.device);
    const auto s = make_engine(*lm.model, o.n_ctx, o.threads, gpu, tp_devices(o.tp, gpu));
    const auto r = perplexity(*s, ids, o.n_ctx, o.chunks, tok.add_bos(), tok.bos_id(),
                              [&](int64_t done, int64_t total, double ppl) {
                                if (!o.json)
                                  std::fprintf(stderr, "[%lld/%lld] %.4f\n", static_cast<long long>(done),
                                               static_cast<long long>(total), ppl);
                              });
    if (o.json) {
      print_json_line({{"ppl", r.ppl},
                       {"ppl_err", r.ppl_err},
                       {"tokens", r.tokens},
                       {"windows", r.windows},
                       {"ctx", o.n_ctx}});
    } else {
      std::printf("PPL = %.4f +/- %.5f (%lld tokens scored in %lld windows of %lld)\n", r.ppl, r.ppl_err,
                  static_cast<long long>(r.tokens), static_cast<long long>(r.windows),
                  static_cast<long long>(o.n_ctx));
    }
  });
}

}  // namespace bitnet::cli
