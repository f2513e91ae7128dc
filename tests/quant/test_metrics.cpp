#include <gtest/gtest.h>

#include <cmath>

#include "quant/metrics.h"

namespace bitnet {

TEST(Metrics, ErrorStatistics) {
  const float a[4] = {1, 2, 3, 4}, b[4] = {1, 2, 3, 5};
  auto e = quant_error(a, b, 4);
  EXPECT_DOUBLE_EQ(e.mse, 0.25);
  EXPECT_NEAR(e.sqnr_db, 10 * std::log10(30.0 / 1.0), 1e-12);
  EXPECT_NEAR(e.cosine, 34.0 / std::sqrt(30.0 * 39.0), 1e-12);
  EXPECT_DOUBLE_EQ(e.max_abs_err, 1.0);
  EXPECT_TRUE(std::isinf(quant_error(a, a, 4).sqnr_db));
}

TEST(Metrics, TernaryAndScaleStats) {
  const int8_t q[6] = {-1, 0, 0, 1, 1, 1};
  auto s = ternary_stats(q, 6);
  EXPECT_EQ(s.neg, 1u);
  EXPECT_EQ(s.zero, 2u);
  EXPECT_EQ(s.pos, 3u);
  EXPECT_NEAR(s.sparsity(), 1.0 / 3, 1e-12);
  const float sc[3] = {0.5f, 1.5f, 1.0f};
  auto ss = scale_stats(sc, 3);
  EXPECT_EQ(ss.min, 0.5);
  EXPECT_EQ(ss.max, 1.5);
  EXPECT_DOUBLE_EQ(ss.mean, 1.0);
}

}  // namespace bitnet
