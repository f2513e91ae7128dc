#pragma once
// Where the CLI's tokenizer comes from: -m MODEL.gguf (its tokenizer.ggml.* keys) or
// --tokenizer FILE (tokenizer.json or a tiktoken rank file).
#include <CLI/CLI.hpp>
#include <string>

#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace bitnet::cli {

struct TokenizerSource {
  std::string model;      // GGUF
  std::string tokenizer;  // tokenizer.json or .tiktoken
};

void add_tokenizer_options(CLI::App* cmd, TokenizerSource& src);
Tokenizer load_tokenizer(const TokenizerSource& src);

// One line on stderr (chat, serve) where the chat template's markers are not special tokens of the
// vocabulary: they are then encoded as plain text, which the model was not trained on.
void warn_missing_chat_markers(const Tokenizer& tok, ChatTemplate t);

}  // namespace bitnet::cli
