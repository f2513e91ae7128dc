#pragma once
// Where a subcommand's model comes from: a model file (-m) or a synthetic model generated
// deterministically in memory (--synthetic), whose text is meaningless.
#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "inference/model.h"

namespace bitnet::cli {

struct ModelSource {
  std::string synthetic;  // "2b4t", "tiny" or empty
  std::string embd_type = "f16";
  uint64_t seed = 1;
};

void add_model_options(CLI::App* cmd, ModelSource& src);
// Throws bitnet::Error when no source was given or it cannot be loaded.
std::unique_ptr<Model> load_model(const ModelSource& src);
std::string model_label(const ModelSource& src);

}  // namespace bitnet::cli
