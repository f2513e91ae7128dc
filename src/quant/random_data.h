#pragma once
// Deterministic random ternary weights and activations for tests, self-checks and benchmarks.
#include <cstdint>
#include <random>
#include <vector>

namespace bitnet {

// Ternary values with P(0) = zero_frac and +-1 equally likely otherwise.
inline std::vector<int8_t> random_ternary(size_t n, uint64_t seed, double zero_frac = 1.0 / 3) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<int8_t> w(n);
  for (auto& v : w) {
    const double r = u(rng);
    v = r < zero_frac ? 0 : (r < zero_frac + (1 - zero_frac) / 2 ? -1 : 1);
  }
  return w;
}

inline std::vector<float> random_floats(size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> x(n);
  for (auto& v : x) v = u(rng);
  return x;
}

}  // namespace bitnet
