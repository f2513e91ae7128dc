#include "model_source.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "core/error.h"
#include "io/gguf.h"
#include "model/load_gguf.h"
#include "model/synthetic.h"
#include "model/synthetic_gguf.h"
#include "option_checks.h"

namespace bitnet::cli {

std::string default_model_path() {
  if (const char* e = std::getenv("BITNET_MODEL"); e && *e) return e;
  return BITNET_DEFAULT_MODEL;
}

std::string existing_default_model(const char* instead) {
  std::string path = default_model_path();
  if (!std::filesystem::exists(path)) fail("{} (the default model {} is missing)", instead, path);
  return path;
}

void add_model_options(CLI::App* cmd, ModelSource& src, bool allow_synthetic) {
  cmd->add_option("-m,--model", src.path,
                  allow_synthetic ? "model file (GGUF)"
                                  : "model file (GGUF; default: $BITNET_MODEL or " BITNET_DEFAULT_MODEL ")");
  if (!allow_synthetic) src.use_default = true;
  if (!allow_synthetic) return;
  cmd->add_option("--synthetic", src.synthetic,
                  "instead of -m: a random model generated in memory, 2b4t (BitNet b1.58 2B4T shape) or tiny")
      ->check(CLI::IsMember({"2b4t", "tiny"}));
  cmd->add_option("--embd-type", src.embd_type, "synthetic model's embedding/head type")
      ->check(CLI::IsMember({"f32", "f16", "bf16", "q8_0", "q4_0", "q6_k"}));
  cmd->add_option("--seed-model", src.seed, "synthetic model's random seed")->check(seed_value());
}

LoadedModel load_model(const ModelSource& src, bool need_tokenizer) {
  LoadedModel lm;
  if (!src.path.empty() && !src.synthetic.empty()) fail("pass either -m or --synthetic, not both");
  if (!src.synthetic.empty()) {
    lm.model = std::make_unique<Model>(
        make_synthetic_model(synthetic_config(src.synthetic), src.seed, *dtype_from_name(src.embd_type)));
    lm.label = "synthetic " + src.synthetic + " (" + src.embd_type + " head)";
    return lm;
  }
  std::string path = src.path;
  if (path.empty() && src.use_default) {
    path = existing_default_model("no model: pass -m MODEL.gguf");
  }
  if (path.empty())
    fail("no model: pass -m MODEL.gguf or --synthetic 2b4t|tiny");  // (commands with no default)
  const bool tty = isatty(STDERR_FILENO);
  const auto t0 = std::chrono::steady_clock::now();
  GgufFile f = GgufFile::open(path);
  lm.model = load_gguf_model(f, [&](int64_t done, int64_t total) {
    if (!tty) return;
    const int width = 30, fill = static_cast<int>(width * done / total);
    std::fprintf(stderr, "\rloading %s [%.*s%*s] %lld/%lld layers", path.c_str(), fill,
                 "##############################", width - fill, "", static_cast<long long>(done),
                 static_cast<long long>(total));
    std::fflush(stderr);
  });
  if (need_tokenizer) lm.tokenizer = Tokenizer::from_vocab(tokenizer_vocab_from_gguf(f));
  lm.label = path;
  lm.file_bytes = f.file_size();
  if (tty)
    std::fprintf(stderr, "\r\033[Kloaded %s in %.1f s (%s)\n", path.c_str(),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                 describe(lm.model->cfg).c_str());
  return lm;
}

}  // namespace bitnet::cli
