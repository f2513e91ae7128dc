#pragma once
// What the CUDA test files share: the skip where no GPU can be used, the relative error their
// float comparisons use, and the variant model shape.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "cuda/device.h"
#include "model/synthetic_gguf.h"

// Skips the test, with the reason, on a machine without a usable GPU (CI has nvcc but no GPU).
#define SKIP_WITHOUT_GPU()                                                                   \
  do {                                                                                       \
    if (bitnet::cuda::devices().empty()) GTEST_SKIP() << bitnet::cuda::unavailable_reason(); \
  } while (0)

namespace bitnet::cuda::gpu_test {

// ||got - want|| / ||want|| in double (||want|| floored at 1e-30).
inline double rel_err(const float* got, const float* want, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(got[i]) - want[i];
    num += d * d;
    den += static_cast<double>(want[i]) * want[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}
inline double rel_err(const std::vector<float>& got, const std::vector<float>& want) {
  return rel_err(got.data(), want.data(), std::min(got.size(), want.size()));
}

// The tiny synthetic shape with the other choices: interleaved RoPE, SiLU, no sub-norms, 4 query
// heads per KV head of 32 values.
inline ModelConfig variant_config() {
  ModelConfig c = synthetic_config("tiny");
  c.rope = RopeStyle::kNorm;
  c.act = FfnAct::kSilu;
  c.sub_norms = false;
  c.n_head = 8;
  c.n_head_kv = 2;
  c.head_dim = 32;
  c.rope_dim = 32;
  return c;
}

}  // namespace bitnet::cuda::gpu_test
