#pragma once
// Where the CLI's tokenizer comes from: -m MODEL.gguf (its tokenizer.ggml.* keys) or
// --tokenizer FILE (tokenizer.json or a tiktoken rank file).
#include <string>

#include <CLI/CLI.hpp>

#include "tokenizer/tokenizer.h"

namespace bitnet::cli {

struct TokenizerSource {
  std::string model;      // GGUF
  std::string tokenizer;  // tokenizer.json or .tiktoken
};

void add_tokenizer_options(CLI::App* cmd, TokenizerSource& src);
Tokenizer load_tokenizer(const TokenizerSource& src);

}  // namespace bitnet::cli
