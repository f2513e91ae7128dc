#pragma once
// The sampling flags shared by `run` and `chat` (llama.cpp's names).
#include <CLI/CLI.hpp>

#include "inference/sampler.h"

namespace bitnet::cli {

inline void add_sampling_options(CLI::App* cmd, SamplerOptions& s) {
  cmd->add_option("--temp", s.temperature, "temperature (0: greedy)");
  cmd->add_option("--top-k", s.top_k, "top-k (0: off)");
  cmd->add_option("--top-p", s.top_p, "top-p (1: off)");
  cmd->add_option("--min-p", s.min_p, "min-p (0: off)");
  cmd->add_option("--repeat-penalty", s.repeat_penalty, "repetition penalty (1: off)");
  cmd->add_option("--repeat-last-n", s.repeat_last_n, "tokens the penalty looks back over");
  cmd->add_option("--seed", s.seed, "sampling seed");
}

}  // namespace bitnet::cli
