#pragma once
// `--device cpu|cuda` for the inference commands (run, chat, perplexity, bench). The default
// (auto) is CUDA when this build has it and a GPU is present, said once on stderr; `--device cuda`
// without one is an error naming the reason, never a silent CPU run.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <memory>
#include <string>

#include "inference/engine.h"
#include "model/model.h"

namespace bitnet::cli {

void add_device_option(CLI::App* cmd, std::string& device);
// Resolves "auto"; throws for "cuda" where it cannot run.
bool use_cuda(const std::string& device);
// A Session (CPU, `threads`) or a CUDA session over n_ctx tokens.
std::unique_ptr<Engine> make_engine(const Model& model, int64_t n_ctx, int threads, bool cuda);

}  // namespace bitnet::cli
