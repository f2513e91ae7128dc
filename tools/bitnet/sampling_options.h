#pragma once
// The sampling flags shared by `run`, `chat` and `serve` (llama.cpp's names), each checked at parse
// time: a NaN, or a value the sampler cannot use (a penalty of 0 divides by it), is refused with
// the flag's name rather than sampling garbage.
#include <CLI/CLI.hpp>
#include <cmath>
#include <string>

#include "inference/sampler.h"

namespace bitnet::cli {

// A finite number in [lo, hi] (CLI::Range lets NaN through: every comparison with it is false).
inline CLI::Validator finite_in(double lo, double hi) {
  return CLI::Validator(
      [lo, hi](std::string& s) -> std::string {
        double v = 0;
        try {
          size_t used = 0;
          v = std::stod(s, &used);
          if (used != s.size()) return "not a number: " + s;
        } catch (const std::exception&) {
          return "not a number: " + s;
        }
        if (!std::isfinite(v) || v < lo || v > hi)
          return s + " is outside [" + CLI::detail::to_string(lo) + ", " + CLI::detail::to_string(hi) + "]";
        return {};
      },
      "FLOAT in [" + CLI::detail::to_string(lo) + " - " + CLI::detail::to_string(hi) + "]");
}

inline void add_sampling_options(CLI::App* cmd, SamplerOptions& s) {
  cmd->add_option("--temp", s.temperature, "temperature (0: greedy)")->check(finite_in(0, 100));
  cmd->add_option("--top-k", s.top_k, "top-k (0: off)")->check(CLI::Range(0, 1 << 30));
  cmd->add_option("--top-p", s.top_p, "top-p (1: off)")->check(finite_in(0, 1));
  cmd->add_option("--min-p", s.min_p, "min-p (0: off)")->check(finite_in(0, 1));
  cmd->add_option("--repeat-penalty", s.repeat_penalty, "repetition penalty (1: off)")
      ->check(finite_in(0.01, 100));
  cmd->add_option("--repeat-last-n", s.repeat_last_n, "tokens the penalty looks back over")
      ->check(CLI::Range(0, 1 << 30));
  cmd->add_option("--seed", s.seed, "sampling seed");
}

}  // namespace bitnet::cli
