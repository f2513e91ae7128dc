#pragma once
// The sampling flags shared by `run`, `chat` and `serve` (llama.cpp's names), each checked at parse
// time: a NaN, or a value the sampler cannot use (a penalty of 0 divides by it), is refused with
// the flag's name rather than sampling garbage.
#include <CLI/CLI.hpp>

#include "inference/sampler.h"
#include "option_checks.h"

namespace bitnet::cli {

inline void add_sampling_options(CLI::App* cmd, SamplerOptions& s) {
  cmd->add_option("--temp", s.temperature, "temperature (0: greedy)")->check(finite_in(0, 100));
  cmd->add_option("--top-k", s.top_k, "top-k (0: off)")->check(CLI::Range(0, 1 << 30));
  cmd->add_option("--top-p", s.top_p, "top-p (1: off)")->check(finite_in(0, 1));
  cmd->add_option("--min-p", s.min_p, "min-p (0: off)")->check(finite_in(0, 1));
  cmd->add_option("--repeat-penalty", s.repeat_penalty, "repetition penalty (1: off)")
      ->check(finite_in(0.01, 100));
  cmd->add_option("--repeat-last-n", s.repeat_last_n, "tokens the penalty looks back over")
      ->check(CLI::Range(0, 1 << 30));
  cmd->add_option("--seed", s.seed, "sampling seed")->check(seed_value());
}

}  // namespace bitnet::cli
