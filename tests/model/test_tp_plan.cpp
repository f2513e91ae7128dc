// The tensor-parallel split of a model over ranks (model/tp_plan.h): every head, FFN row and input
// column is owned by exactly one rank, in order; KV heads split unevenly where they must (the
// 2B4T shape's 5 over 2 ranks), FFN and column cuts on 64-column boundaries; impossible splits are
// errors that say why.
#include <gtest/gtest.h>

#include "core/error.h"
#include "model/tp_plan.h"

namespace bitnet {
namespace {

ModelConfig b2b4t() {
  ModelConfig c;
  c.n_embd = 2560;
  c.n_head = 20;
  c.n_head_kv = 5;
  c.head_dim = 128;
  c.n_ff = 6912;
  return c;
}

// Consecutive ranges covering [0, total) with no gap or overlap.
void expect_cover(const std::vector<Range>& rs, int64_t total) {
  int64_t at = 0;
  for (const Range& r : rs) {
    EXPECT_EQ(r.begin, at);
    EXPECT_GT(r.size(), 0);
    at = r.end;
  }
  EXPECT_EQ(at, total);
}

TEST(TpPlan, SplitEvenIsAsEvenAsTheGranuleAllows) {
  EXPECT_EQ(split_even(5, 2, 1, "x"), (std::vector<Range>{{0, 3}, {3, 5}}));
  EXPECT_EQ(split_even(6912, 2, 64, "x"), (std::vector<Range>{{0, 3456}, {3456, 6912}}));
  // 200 = 3 granules of 64 and a partial one: the first rank takes the extra granule, the last
  // ends at 200.
  EXPECT_EQ(split_even(200, 3, 64, "x"), (std::vector<Range>{{0, 128}, {128, 192}, {192, 200}}));
  EXPECT_EQ(split_even(64, 1, 64, "x"), (std::vector<Range>{{0, 64}}));
  EXPECT_THROW(split_even(100, 3, 64, "x"), Error);  // 2 granules for 3 ranks
  EXPECT_THROW(split_even(100, 0, 64, "x"), Error);
}

TEST(TpPlan, The2B4TShapeOverTwoAndThreeRanks) {
  const ModelConfig c = b2b4t();
  for (int n = 1; n <= 5; ++n) {
    const std::vector<TpRank> p = tp_plan(c, n);
    ASSERT_EQ(p.size(), static_cast<size_t>(n));
    std::vector<Range> kv, q, ff, oc;
    for (const TpRank& r : p) {
      kv.push_back(r.kv_heads);
      q.push_back(r.q_heads);
      ff.push_back(r.ff);
      oc.push_back(r.o_cols);
      EXPECT_EQ(r.q_heads.begin, r.kv_heads.begin * 4);  // 4 query heads per KV head
      EXPECT_EQ(r.q_heads.end, r.kv_heads.end * 4);
      EXPECT_EQ(r.ff.begin % kTpColumnGranule, 0);
      EXPECT_EQ(r.o_cols.begin % kTpColumnGranule, 0);
    }
    expect_cover(kv, 5);
    expect_cover(q, 20);
    expect_cover(ff, 6912);
    expect_cover(oc, 2560);
  }
  const std::vector<TpRank> p2 = tp_plan(c, 2);
  EXPECT_EQ(p2[0].kv_heads, (Range{0, 3}));  // uneven: 3 + 2
  EXPECT_EQ(p2[1].kv_heads, (Range{3, 5}));
  EXPECT_EQ(p2[1].q_heads, (Range{12, 20}));
  const std::vector<TpRank> p3 = tp_plan(c, 3);
  EXPECT_EQ(p3[2].kv_heads, (Range{4, 5}));
  EXPECT_EQ(p3[2].ff, (Range{4608, 6912}));
}

TEST(TpPlan, ImpossibleSplitsAreErrors) {
  const ModelConfig c = b2b4t();
  EXPECT_THROW(tp_plan(c, 6), Error);  // 5 KV heads
  EXPECT_THROW(tp_plan(c, 0), Error);
  ModelConfig narrow = c;
  narrow.n_ff = 100;  // 2 granules of 64
  EXPECT_THROW(tp_plan(narrow, 3), Error);
  try {
    tp_plan(c, 6);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("5 KV heads"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace bitnet
