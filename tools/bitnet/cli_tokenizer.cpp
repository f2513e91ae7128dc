#include "cli_tokenizer.h"

#include "core/error.h"

namespace bitnet::cli {

void add_tokenizer_options(CLI::App* cmd, TokenizerSource& src) {
  cmd->add_option("--tokenizer", src.tokenizer, "HF tokenizer.json or tiktoken rank file (LLaMA-3 specials)");
}

Tokenizer load_tokenizer(const TokenizerSource& src) {
  if (!src.tokenizer.empty()) return Tokenizer::from_file(src.tokenizer);
  fail("no tokenizer: pass --tokenizer FILE");
}

}  // namespace bitnet::cli
