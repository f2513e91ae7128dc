// Tensor-parallel arithmetic on the CPU (quant/shard.h): products split by output rows, or by input
// columns with int32 partial sums added before one epilogue, equal the unsplit product bit for bit,
// for every token count the kernels treat differently (decode, batched decode, prompts).
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "quant/gemm.h"
#include "quant/random_data.h"
#include "quant/shard.h"

namespace bitnet {
namespace {

// A fused matrix of three logical tensors (q|k|v-like), each with its own scale.
TernaryMatrix fused(int64_t n, int64_t k, uint64_t seed) {
  const auto w = random_ternary(static_cast<size_t>(n * k), seed);
  std::vector<float> scales(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r)
    scales[static_cast<size_t>(r)] = r < n / 2 ? 0.031f : r < 3 * n / 4 ? 0.047f : 0.0125f;
  return pack_native(w.data(), n, k, scales.data());
}

QuantizedActs acts(Arena& arena, int64_t m, int64_t k, uint64_t seed) {
  auto x = random_floats(static_cast<size_t>(m * k), seed);
  for (size_t i = 0; i < x.size(); i += 13) x[i] *= 40.0f;  // a few large values set the row scale
  QuantizedActs q = alloc_quantized_acts(arena, m, k);
  quantize_acts(x.data(), k, q);
  return q;
}

const int64_t kTokens[] = {1, 5, 12, 37};  // GEMV, register path (groups of 8), prompt panels

TEST(Shard, RowShardsGiveTheUnsplitRows) {
  ThreadPool pool(2);
  const int64_t n = 70, k = 200;
  const TernaryMatrix w = fused(n, k, 1);
  const int64_t cuts[] = {0, 23, 50, 70};  // not row-block multiples, crossing the scale changes
  for (int64_t m : kTokens) {
    Arena arena;
    const QuantizedActs x = acts(arena, m, k, static_cast<uint64_t>(m));
    std::vector<float> whole(static_cast<size_t>(m * n));
    ternary_gemm(&pool, w, x, {nullptr, 0, whole.data(), n});
    for (int s = 0; s < 3; ++s) {
      const int64_t r0 = cuts[s], r1 = cuts[s + 1];
      const TernaryMatrix part = shard_rows(w, r0, r1);
      std::vector<float> y(static_cast<size_t>(m * (r1 - r0)));
      ternary_gemm(&pool, part, x, {nullptr, 0, y.data(), r1 - r0});
      for (int64_t t = 0; t < m; ++t)
        ASSERT_EQ(std::memcmp(y.data() + t * (r1 - r0), whole.data() + t * n + r0,
                              static_cast<size_t>(r1 - r0) * 4),
                  0)
            << "m=" << m << " shard " << s << " token " << t;
    }
  }
}

TEST(Shard, ColumnShardsSumToTheUnsplitIntegersAndOutputs) {
  ThreadPool pool(2);
  const int64_t n = 37, k = 300;
  const TernaryMatrix w = fused(n, k, 2);
  const int64_t cuts[] = {0, 100, 236, 300};  // K splits off the kernels' 64-column steps
  for (int64_t m : kTokens) {
    Arena arena;
    const QuantizedActs x = acts(arena, m, k, 10 + static_cast<uint64_t>(m));  // quantized on the full row
    std::vector<int32_t> whole_i(static_cast<size_t>(m * n));
    std::vector<float> whole_f(static_cast<size_t>(m * n));
    ternary_gemm(&pool, w, x, {whole_i.data(), n, whole_f.data(), n});
    std::vector<int32_t> sum(static_cast<size_t>(m * n), 0);  // the all-reduce
    for (int s = 0; s < 3; ++s) {
      const TernaryMatrix part = shard_cols(w, cuts[s], cuts[s + 1]);
      const QuantizedActs xs = shard_acts(arena, x, cuts[s], cuts[s + 1]);
      std::vector<int32_t> partial(static_cast<size_t>(m * n));
      ternary_gemm(&pool, part, xs, {partial.data(), n, nullptr, 0});
      for (size_t i = 0; i < sum.size(); ++i) sum[i] += partial[i];
    }
    ASSERT_EQ(sum, whole_i) << "m=" << m;
    std::vector<float> y(static_cast<size_t>(m * n));
    ternary_epilogue(sum.data(), n, w, x, y.data(), n);
    EXPECT_EQ(std::memcmp(y.data(), whole_f.data(), y.size() * 4), 0) << "m=" << m;
  }
}

// A rank's q|k|v: rows of three ranges (its queries, keys and values), each keeping its own
// tensor's scale; its products are those rows of the unsplit product.
TEST(Shard, RowRangesGiveThoseRowsInOrder) {
  ThreadPool pool(2);
  const int64_t n = 64, k = 128;
  const TernaryMatrix w = fused(n, k, 6);
  const std::vector<std::pair<int64_t, int64_t>> ranges = {{8, 20}, {34, 40}, {50, 56}};
  const TernaryMatrix part = shard_row_ranges(w, ranges);
  ASSERT_EQ(part.n, 24);
  for (int64_t m : kTokens) {
    Arena arena;
    const QuantizedActs x = acts(arena, m, k, 20 + static_cast<uint64_t>(m));
    std::vector<float> whole(static_cast<size_t>(m * n)), y(static_cast<size_t>(m * part.n));
    ternary_gemm(&pool, w, x, {nullptr, 0, whole.data(), n});
    ternary_gemm(&pool, part, x, {nullptr, 0, y.data(), part.n});
    for (int64_t t = 0; t < m; ++t) {
      int64_t at = 0;
      for (const auto& [r0, r1] : ranges) {
        ASSERT_EQ(std::memcmp(y.data() + t * part.n + at, whole.data() + t * n + r0,
                              static_cast<size_t>(r1 - r0) * 4),
                  0)
            << "m=" << m << " rows from " << r0 << " token " << t;
        at += r1 - r0;
      }
    }
  }
  EXPECT_EQ(part.row_scale()[0], 0.031f);
  EXPECT_EQ(part.row_scale()[12], 0.047f);
  EXPECT_EQ(part.row_scale()[18], 0.0125f);
}

// Why the activations are quantized on the gathered row: a shard that quantized only its own
// columns would use another scale and give other integers.
TEST(Shard, ShardLocalActivationScalesWouldDiffer) {
  const int64_t m = 4, k = 256;
  auto xf = random_floats(static_cast<size_t>(m * k), 5);
  xf[10] = 50.0f;  // token 0's maximum lies in the first half
  Arena arena;
  QuantizedActs full = alloc_quantized_acts(arena, m, k);
  quantize_acts(xf.data(), k, full);
  const QuantizedActs gathered = shard_acts(arena, full, 128, 256);
  QuantizedActs local = alloc_quantized_acts(arena, m, 128);
  quantize_acts(xf.data() + 128, k, local);
  EXPECT_EQ(gathered.scale[0], full.scale[0]);
  EXPECT_NE(local.scale[0], full.scale[0]);
  EXPECT_NE(std::memcmp(local.q, gathered.q, 128), 0);
}

TEST(Shard, BadRangesAreErrors) {
  const TernaryMatrix w = fused(20, 64, 3);
  EXPECT_THROW(shard_rows(w, 0, 21), Error);
  EXPECT_THROW(shard_rows(w, 5, 5), Error);
  EXPECT_THROW(shard_rows(w, -1, 4), Error);
  EXPECT_THROW(shard_cols(w, 0, 65), Error);
  EXPECT_THROW(shard_row_ranges(w, {}), Error);
  EXPECT_THROW(shard_row_ranges(w, {{0, 4}, {18, 22}}), Error);
  EXPECT_THROW(shard_cols(w, 10, 3), Error);
  Arena arena;
  const QuantizedActs x = acts(arena, 2, 64, 4);
  EXPECT_THROW(shard_acts(arena, x, 0, 65), Error);
}

}  // namespace
}  // namespace bitnet
