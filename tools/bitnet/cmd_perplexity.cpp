// `bitnet perplexity`: llama-perplexity's method (src/inference/perplexity.h), so the figure
// compares across tools.
#include <cstdio>
#include <fstream>
#include <sstream>

#include "commands.h"
#include "core/error.h"
#include "inference/perplexity.h"
#include "model_source.h"

namespace bitnet::cli {

void register_perplexity(CLI::App& app) {
  auto* cmd = app.add_subcommand("perplexity", "Perplexity of a text, computed like llama.cpp's llama-perplexity");
  struct Opts {
    ModelSource src;
    std::string file;
    int64_t n_ctx = 512;
    int64_t chunks = -1;
    int threads = 2;
    bool json = false;
  };
  static Opts o;
  add_model_options(cmd, o.src, false);
  cmd->add_option("-f,--file", o.file, "text file")->required();
  cmd->add_option("-c,--ctx-size", o.n_ctx, "window size in tokens")->check(CLI::Range(int64_t{4}, int64_t{1} << 20));
  cmd->add_option("--chunks", o.chunks, "maximum number of windows (default: all)");
  cmd->add_option("-t,--threads", o.threads, "threads")->check(CLI::Range(1, 1024));
  cmd->add_flag("--json", o.json, "print {\"ppl\", \"ppl_err\", \"tokens\"}");
  cmd->callback([] {
    LoadedModel lm = load_model(o.src, true);
    std::ifstream in(o.file, std::ios::binary);
    if (!in) fail("cannot read '{}'", o.file);
    std::stringstream ss;
    ss << in.rdbuf();
    const Tokenizer& tok = *lm.tokenizer;
    EncodeOptions eo;
    eo.add_bos = tok.add_bos();
    const std::vector<int32_t> ids = tok.encode(ss.str(), eo);
    Session s(*lm.model, {o.n_ctx, o.threads});
    const auto r = perplexity(s, ids, o.n_ctx, o.chunks, tok.add_bos(), tok.bos_id(),
                              [&](int64_t done, int64_t total, double ppl) {
                                if (!o.json) std::fprintf(stderr, "[%lld/%lld] %.4f\n", static_cast<long long>(done),
                                                          static_cast<long long>(total), ppl);
                              });
    if (o.json) {
      std::printf("{\"ppl\": %.6f, \"ppl_err\": %.6f, \"tokens\": %lld, \"windows\": %lld, \"ctx\": %lld}\n", r.ppl,
                  r.ppl_err, static_cast<long long>(r.tokens), static_cast<long long>(r.windows),
                  static_cast<long long>(o.n_ctx));
    } else {
      std::printf("PPL = %.4f +/- %.5f (%lld tokens scored in %lld windows of %lld)\n", r.ppl, r.ppl_err,
                  static_cast<long long>(r.tokens), static_cast<long long>(r.windows), static_cast<long long>(o.n_ctx));
    }
  });
}

}  // namespace bitnet::cli
