#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "quant/act_quant.h"
#include "quant/random_data.h"

namespace bitnet {
namespace {

void expect_same(const QuantizedActs& a, const QuantizedActs& b, const char* name) {
  ASSERT_EQ(a.m, b.m);
  ASSERT_EQ(std::memcmp(a.q, b.q, static_cast<size_t>(a.m * a.k_pad)), 0) << name;
  for (int64_t i = 0; i < a.m; ++i) {
    EXPECT_EQ(a.sum[i], b.sum[i]) << name;
    EXPECT_EQ(std::memcmp(&a.scale[i], &b.scale[i], 4), 0) << name;
    EXPECT_EQ(std::memcmp(&a.dq[i], &b.dq[i], 4), 0) << name;
  }
}

}  // namespace

TEST(ActQuant, ReferenceMatchesSpec) {
  const float x[5] = {1.0f, -2.0f, 0.5f, 0.0f, 2.0f};  // max 2 -> s = 63.5
  Arena arena;
  auto a = alloc_quantized_acts(arena, 1, 5);
  quantize_act_row_ref(x, 5, a.k_pad, a.q, a.scale, a.dq, a.sum);
  EXPECT_EQ(a.k_pad, 64);
  EXPECT_FLOAT_EQ(a.scale[0], 63.5f);
  // 63.5 -> 64 (half to even), -127, 31.75 -> 32, 0, 127
  const int8_t want[5] = {64, -127, 32, 0, 127};
  for (int i = 0; i < 5; ++i) EXPECT_EQ(a.q[i], want[i]) << i;
  for (int i = 5; i < 64; ++i) EXPECT_EQ(a.q[i], 0);
  EXPECT_EQ(a.sum[0], 64 - 127 + 32 + 127);
}

TEST(ActQuant, HalfToEvenAndZeroRow) {
  // max 127 -> s = 1: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -0.5 -> 0, -1.5 -> -2
  const float x[6] = {127.0f, 0.5f, 1.5f, 2.5f, -0.5f, -1.5f};
  Arena arena;
  auto a = alloc_quantized_acts(arena, 2, 6);
  std::vector<float> rows(12, 0.0f);
  std::memcpy(rows.data(), x, sizeof x);
  quantize_acts(rows.data(), 6, a);
  const int8_t want[6] = {127, 0, 2, 2, 0, -2};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(a.q[i], want[i]) << i;
  EXPECT_FLOAT_EQ(a.scale[1], 127.0f / 1e-5f);  // all-zero row: max clamped to 1e-5
  for (int i = 0; i < 6; ++i) EXPECT_EQ(a.q[a.k_pad + i], 0);
}

TEST(ActQuant, EveryVariantIsBitExact) {
  const auto vs = act_quant_variants();
  const int count = static_cast<int>(vs.size());
  for (int64_t k : {1, 7, 15, 16, 17, 63, 64, 100, 2560, 6913}) {
    for (int seed = 0; seed < 3; ++seed) {
      const int64_t m = 3;
      auto x = random_floats(static_cast<size_t>(m * k), 100 + static_cast<uint64_t>(seed * 7 + k), -4.0f, 4.0f);
      if (seed == 1) x[0] = 1e30f;    // extreme outlier: everything else rounds to 0
      if (seed == 2) for (auto& v : x) v = std::round(v * 8) / 8;  // many exact halves
      Arena arena;
      auto ref = alloc_quantized_acts(arena, m, k);
      quantize_acts_with(vs[0], x.data(), k, ref);
      for (int i = 1; i < count; ++i) {
        if (!vs[i].cpu_ok()) continue;
        auto got = alloc_quantized_acts(arena, m, k);
        std::memset(got.q, 0x5A, static_cast<size_t>(m * got.k_pad));  // poison
        quantize_acts_with(vs[i], x.data(), k, got);
        expect_same(ref, got, vs[i].name);
      }
    }
  }
}

}  // namespace bitnet
