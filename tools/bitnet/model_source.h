#pragma once
// Where a subcommand's model comes from: a GGUF file (-m, with its embedded tokenizer; run, chat
// and perplexity default to the project's own trained model) or a synthetic model generated in
// memory (--synthetic; random weights, meaningless text, no tokenizer: only for `bench`).
#include <CLI/CLI.hpp>
#include <memory>
#include <optional>
#include <string>

#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace bitnet::cli {

struct ModelSource {
  std::string path;       // -m
  std::string synthetic;  // "2b4t", "tiny" or empty
  std::string embd_type = "f16";
  uint64_t seed = 1;
  bool use_default = false;  // no -m: the project's own model (default_model_path)
};

// $BITNET_MODEL, else the model shipped in the repository's models/ folder (its path compiled in).
std::string default_model_path();
// default_model_path(), or an error "<instead> (the default model PATH is missing)" where it is.
std::string existing_default_model(const char* instead);

struct LoadedModel {
  std::unique_ptr<Model> model;
  std::optional<Tokenizer> tokenizer;  // from the GGUF file
  std::string label;
  size_t file_bytes = 0;
};

// allow_synthetic adds --synthetic/--embd-type/--seed-model.
void add_model_options(CLI::App* cmd, ModelSource& src, bool allow_synthetic);
// Throws bitnet::Error when no source was given or it cannot be loaded.
LoadedModel load_model(const ModelSource& src, bool need_tokenizer);

}  // namespace bitnet::cli
