#include "cli_tokenizer.h"

#include <cstdio>

#include "core/error.h"
#include "model_source.h"

namespace bitnet::cli {

void add_tokenizer_options(CLI::App* cmd, TokenizerSource& src) {
  cmd->add_option("-m,--model", src.model,
                  "GGUF model file whose tokenizer to use (default: $BITNET_MODEL or " BITNET_DEFAULT_MODEL
                  ")");
  cmd->add_option("--tokenizer", src.tokenizer, "HF tokenizer.json or tiktoken rank file (LLaMA-3 specials)");
}

Tokenizer load_tokenizer(const TokenizerSource& src) {
  if (!src.model.empty() && !src.tokenizer.empty()) fail("give -m MODEL.gguf or --tokenizer FILE, not both");
  if (!src.model.empty()) return Tokenizer::from_gguf_file(src.model);
  if (!src.tokenizer.empty()) return Tokenizer::from_file(src.tokenizer);
  // Neither: the default model's, as `run` and `chat` use it.
  return Tokenizer::from_gguf_file(
      existing_default_model("no tokenizer: pass -m MODEL.gguf or --tokenizer FILE"));
}

void warn_missing_chat_markers(const Tokenizer& tok, ChatTemplate t) {
  const std::vector<std::string> missing = missing_chat_markers(tok, t);
  if (missing.empty()) return;
  std::string list;
  for (const std::string& m : missing) list += (list.empty() ? "" : ", ") + m;
  std::fprintf(stderr,
               "warning: the vocabulary has no special token for %s: the %s chat template's markers are "
               "encoded as plain text\n",
               list.c_str(), chat_template_name(t));
}

}  // namespace bitnet::cli
