#pragma once
// Helpers shared by the trainer's op tests on the CPU (training/test_ops.cpp) and the GPU
// (cuda/test_train_ops.cpp).
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace bitnet::test_util {

using Vec = std::vector<float>;

// n floats uniform in [lo, hi), the same for the same seed.
inline Vec random_vec(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  Vec v(n);
  for (float& x : v) x = u(rng);
  return v;
}

}  // namespace bitnet::test_util
