#pragma once
// Option checks the subcommands share (CLI11's own cover integers; its Range lets NaN through).
#include <CLI/CLI.hpp>
#include <cmath>
#include <string>

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

// An integer >= lo (CLI11's PositiveNumber and NonNegativeNumber print a 300-digit bound).
inline CLI::Validator at_least(long long lo) {
  return CLI::Validator(
      [lo](std::string& s) -> std::string {
        try {
          size_t used = 0;
          const long long v = std::stoll(s, &used);
          if (used != s.size()) return "not an integer: " + s;
          return v < lo ? s + " is below " + std::to_string(lo) : std::string();
        } catch (const std::exception&) {
          return "not an integer: " + s;
        }
      },
      "INT >= " + std::to_string(lo));
}

// A seed: a whole number in [0, 2^64) (CLI11 takes "-5" for an unsigned option as 2^64 - 5 and
// saturates numbers past the range, so two different flags gave the same run).
inline CLI::Validator seed_value() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos)
          return "not a whole number >= 0: " + s;
        try {
          (void)std::stoull(s);
        } catch (const std::exception&) {
          return s + " is past 2^64 - 1";
        }
        return {};
      },
      "in [0, 2^64 - 1]");
}

}  // namespace bitnet::cli
