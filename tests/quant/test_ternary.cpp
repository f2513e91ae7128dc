#include <gtest/gtest.h>

#include <cmath>

#include "quant/ternary.h"

namespace bitnet {

TEST(Ternary, AbsmeanScaleAndRounding) {
  const float w[] = {0.5f, -1.5f, 0.0f, 2.0f};  // mean |w| = 1.0
  const float s = absmean_scale(w, 4);
  EXPECT_FLOAT_EQ(s, 1.0f);
  int8_t q[4];
  ternarize(w, 4, s, q);
  // 0.5 -> 0 (half to even), -1.5 -> -2 -> clamp -1, 0 -> 0, 2 -> 1
  EXPECT_EQ(q[0], 0);
  EXPECT_EQ(q[1], -1);
  EXPECT_EQ(q[2], 0);
  EXPECT_EQ(q[3], 1);
  const float w2[] = {1.5f, 0.5f, -0.5f, -2.5f};  // mean 1.25: 1.2 -> 1, 0.4 -> 0, -0.4 -> 0, -2 -> -1
  ternarize(w2, 4, absmean_scale(w2, 4), q);
  EXPECT_EQ(q[0], 1);
  EXPECT_EQ(q[1], 0);
  EXPECT_EQ(q[2], 0);
  EXPECT_EQ(q[3], -1);
}

TEST(Ternary, ScaleClampedForZeroTensor) {
  const float z[3] = {0, 0, 0};
  EXPECT_FLOAT_EQ(absmean_scale(z, 3), 1e-5f);
  int8_t q[3];
  ternarize(z, 3, absmean_scale(z, 3), q);
  EXPECT_EQ(q[0] | q[1] | q[2], 0);
  float back[3];
  dequantize_ternary(q, 3, 2.0f, back);
  EXPECT_EQ(back[0], 0.0f);
}

TEST(Ternary, MultipliesByReciprocalLikeTheReference) {
  // x * (1/s) and x / s round differently here; the reference (transformers) multiplies.
  const float s = 3.0f, x = 1.5f;  // 1.5 * fl(1/3) = 0.49999997 -> 0; 1.5 / 3 = 0.5 -> 0 too
  int8_t q;
  ternarize(&x, 1, s, &q);
  EXPECT_EQ(q, static_cast<int8_t>(std::clamp(std::nearbyint(x * (1.0f / s)), -1.0f, 1.0f)));
}

}  // namespace bitnet
