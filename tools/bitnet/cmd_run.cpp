// `bitnet run`: generate text from a prompt. At --temp 0 generation is greedy and deterministic.
#include <chrono>
#include <cstdio>

#include "commands.h"
#include "core/error.h"
#include "core/read_file.h"
#include "device_option.h"
#include "inference/forward.h"
#include "inference/sampler.h"
#include "inference/token_loop.h"
#include "json_out.h"
#include "model_source.h"
#include "option_checks.h"
#include "sampling_options.h"

namespace bitnet::cli {
namespace {

struct Opts {
  ModelSource src;
  std::string prompt, prompt_file;
  int n_predict = 128;
  int64_t n_ctx = 0;
  int threads = 2;
  SamplerOptions sampling;
  bool json = false, parse_special = false, no_bos = false;
  std::string device = "auto";
  TpOption tp;
};

void run(const Opts& o) {
  LoadedModel lm = load_model(o.src, true);
  const Tokenizer& tok = *lm.tokenizer;
  const std::string text = o.prompt_file.empty() ? o.prompt : read_file(o.prompt_file, "the prompt");
  EncodeOptions eo;
  eo.add_bos = !o.no_bos && tok.add_bos();
  eo.parse_special = o.parse_special;
  std::vector<int32_t> ids = tok.encode(text, eo);
  if (ids.empty()) fail("empty prompt");
  const int64_t n_ctx = o.n_ctx > 0 ? o.n_ctx : static_cast<int64_t>(ids.size()) + o.n_predict;
  if (static_cast<int64_t>(ids.size()) + o.n_predict > n_ctx)
    fail("prompt ({} tokens) + {} to generate exceed the context size {}", ids.size(), o.n_predict, n_ctx);
  const bool gpu = use_cuda(o.device);
  const auto engine = make_engine(*lm.model, n_ctx, o.threads, gpu, tp_devices(o.tp, gpu));
  Engine& s = *engine;
  Sampler sampler(o.sampling);
  const auto stops = tok.stop_ids();
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  TokenLoop loop(s, sampler);
  loop.feed(ids);
  const double t_prompt = std::chrono::duration<double>(clock::now() - t0).count();
  StreamDecoder dec(tok, true);
  std::string out;
  std::vector<int32_t> gen;
  std::vector<int32_t> history = ids;
  const auto t1 = clock::now();
  for (int i = 0; i < o.n_predict; ++i) {
    const int32_t next = loop.sample(history);
    if (std::find(stops.begin(), stops.end(), next) != stops.end()) break;
    gen.push_back(next);
    history.push_back(next);
    const std::string piece = dec.push(next);
    out += piece;
    if (!o.json) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    }
    if (i + 1 < o.n_predict) loop.feed(next);
  }
  const std::string tail = dec.flush();
  out += tail;
  const double t_gen = std::chrono::duration<double>(clock::now() - t1).count();
  const double pp_tps = static_cast<double>(ids.size()) / t_prompt;
  const double tg_tps = gen.empty() ? 0.0 : static_cast<double>(gen.size()) / t_gen;
  if (o.json) {
    print_json_line({{"text", out},
                     {"tokens", gen},
                     {"prompt_tokens", ids.size()},
                     {"generated_tokens", gen.size()},
                     {"prompt_tokens_per_second", pp_tps},
                     {"generation_tokens_per_second", tg_tps}});
  } else {
    std::printf("%s\n", tail.c_str());
    std::fprintf(stderr, "\nprompt: %zu tokens, %.2f t/s | generated: %zu tokens, %.2f t/s\n", ids.size(),
                 pp_tps, gen.size(), tg_tps);
  }
}

}  // namespace

void register_run(CLI::App& app) {
  auto* cmd = app.add_subcommand("run", "Generate text from a prompt");
  static Opts o;
  add_model_options(cmd, o.src, false);
  auto* prompt = cmd->add_option("-p,--prompt", o.prompt, "prompt text");
  cmd->add_option("-f,--file", o.prompt_file, "read the prompt from a file")->excludes(prompt);
  cmd->add_option("-n,--n-predict", o.n_predict, "tokens to generate")->check(CLI::Range(0, 1 << 24));
  cmd->add_option("-c,--ctx-size", o.n_ctx, "context size (0, the default: prompt + n-predict)")
      ->check(at_least(0));
  cmd->add_option("-t,--threads", o.threads, "threads")->check(CLI::Range(1, 1024));
  add_device_option(cmd, o.device);
  add_tp_options(cmd, o.tp);
  add_sampling_options(cmd, o.sampling);
  cmd->add_flag("--parse-special", o.parse_special, "special-token strings in the prompt become their ids");
  cmd->add_flag("--no-bos", o.no_bos, "do not add BOS");
  cmd->add_flag("--json", o.json, "print one JSON object instead of streaming text");
  cmd->callback([] { run(o); });
}

}  // namespace bitnet::cli
