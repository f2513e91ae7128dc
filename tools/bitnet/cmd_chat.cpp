// `bitnet chat`: an interactive conversation. Each user turn is formatted with the model's chat
// template (tokenizer/chat_template.h; --template, default from the vocabulary) and appended to
// the same KV cache (earlier turns are not recomputed); the answer streams until a stop token
// (EOS / EOT, or the template's end-of-turn string) or -n tokens.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <string>

#include "cli_tokenizer.h"
#include "commands.h"
#include "core/error.h"
#include "device_option.h"
#include "inference/forward.h"
#include "inference/sampler.h"
#include "inference/token_loop.h"
#include "model_source.h"
#include "sampling_options.h"
#include "tokenizer/chat_template.h"

namespace bitnet::cli {
namespace {

struct Opts {
  ModelSource src;
  std::string system, tmpl;
  int n_predict = 512;
  int64_t n_ctx = 4096;
  int threads = 2;
  SamplerOptions sampling;
  std::string device = "auto";
  TpOption tp;
};

void run(Opts o) {
  LoadedModel lm = load_model(o.src, true);
  const Tokenizer& tok = *lm.tokenizer;
  const ChatTemplate tmpl = o.tmpl.empty() ? default_chat_template(tok) : *chat_template_from_name(o.tmpl);
  warn_missing_chat_markers(tok, tmpl);
  const bool gpu = use_cuda(o.device);
  const auto engine = make_engine(*lm.model, o.n_ctx, o.threads, gpu, tp_devices(o.tp, gpu));
  Engine& s = *engine;
  Sampler sampler(o.sampling);
  TokenLoop loop(s, sampler);
  const std::vector<int32_t> stops = chat_stop_ids(tok);
  const bool tty = isatty(0);
  std::vector<int32_t> history;
  if (tok.add_bos() && tok.bos_id() >= 0) history.push_back(tok.bos_id());
  bool first = true;
  std::string line;
  if (tty) std::fprintf(stderr, "chat (%s template); Ctrl-D to quit\n", chat_template_name(tmpl));
  while (true) {
    if (tty) std::fprintf(stderr, "> ");
    if (!std::getline(std::cin, line)) break;
    if (line.empty()) continue;
    std::vector<ChatMessage> msgs;
    if (first && !o.system.empty()) msgs.push_back({"system", o.system});
    msgs.push_back({"user", line});
    std::vector<int32_t> turn = encode_chat(tok, tmpl, msgs, false);
    if (first) turn.insert(turn.begin(), history.begin(), history.end());
    first = false;
    if (s.n_past() + static_cast<int64_t>(turn.size()) + 1 > s.n_ctx())
      fail("the conversation no longer fits the context ({} tokens); start again with a larger -c",
           s.n_ctx());
    loop.feed(turn);
    for (int32_t t : turn) history.push_back(t);
    StreamDecoder dec(tok, true);
    bool ended = false;
    int generated = 0;
    for (; generated < o.n_predict && s.n_past() < s.n_ctx(); ++generated) {
      const int32_t next = loop.sample(history);
      history.push_back(next);
      ended = std::find(stops.begin(), stops.end(), next) != stops.end();
      // The end-of-turn token goes into the cache too, so the next turn follows the template.
      loop.feed(next);
      if (ended) break;
      const std::string piece = dec.push(next);
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    }
    const std::string tail = dec.flush();
    std::printf("%s\n", tail.c_str());
    std::fflush(stdout);
    if (!ended) {
      // Cut by -n or the context: the turn is closed as the template closes it, where it fits.
      const std::vector<int32_t> close = chat_turn_end(tok);
      const bool fits = s.n_past() + static_cast<int64_t>(close.size()) <= s.n_ctx();
      if (fits) {
        loop.feed(close);
        history.insert(history.end(), close.begin(), close.end());
      }
      std::fprintf(stderr, "[the answer was cut after %d tokens (%s)]\n", generated,
                   fits ? "-n" : "the context is full");
    }
  }
}

}  // namespace

void register_chat(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("chat", "Interactive chat with the model's chat template (reads turns from stdin)");
  static Opts o;
  o.sampling.temperature = 0.7f;
  add_model_options(cmd, o.src, false);
  cmd->add_option("--system", o.system, "system prompt");
  cmd->add_option("--template", o.tmpl, "chat template: bitnet or llama3 (default: from the vocabulary)")
      ->check(CLI::IsMember({"bitnet", "llama3"}));
  cmd->add_option("-n,--n-predict", o.n_predict, "maximum tokens per answer")->check(CLI::Range(1, 1 << 20));
  cmd->add_option("-c,--ctx-size", o.n_ctx, "context size for the whole conversation")
      ->check(CLI::Range(int64_t{16}, int64_t{1} << 22));
  cmd->add_option("-t,--threads", o.threads, "threads")->check(CLI::Range(1, 1024));
  add_device_option(cmd, o.device);
  add_tp_options(cmd, o.tp);
  add_sampling_options(cmd, o.sampling);
  cmd->callback([] { run(o); });
}

}  // namespace bitnet::cli
