// Data-parallel training on the CPU (training/collective.h, cpu_backend over a Collective): ranks
// as threads in one process. The collectives give every rank the same bits (sums in rank order);
// R ranks, each with its share of the global batch's rows and of the optimizer's parameters,
// follow one rank's run of the whole batch within float rounding, and hold identical parameters
// after every step.
#include <gtest/gtest.h>

#include <cmath>
#include <thread>
#include <vector>

#include "training/backend.h"
#include "training/collective.h"
#include "training/grad_buckets.h"
#include "training/model.h"
#include "training/rng.h"
#include "training/small_config.h"
#include "training/trainer.h"

namespace bitnet::train {
namespace {

TEST(Collective, ShardOffsetsSplitEvenlyAndCoverEverything) {
  EXPECT_EQ(shard_offsets(10, 3), (std::vector<size_t>{0, 3, 6, 10}));
  EXPECT_EQ(shard_offsets(2, 4), (std::vector<size_t>{0, 0, 1, 1, 2}));
  EXPECT_EQ(shard_offsets(7, 1), (std::vector<size_t>{0, 7}));
}

// Runs f(rank) on `size` threads at once.
template <typename F>
void on_ranks(int size, F&& f) {
  std::vector<std::thread> t;
  for (int r = 0; r < size; ++r) t.emplace_back([&f, r] { f(r); });
  for (auto& x : t) x.join();
}

TEST(Collective, SumsInRankOrderAndGathersShares) {
  constexpr int R = 3;
  constexpr size_t N = 1001;
  auto cs = thread_collectives(R);
  std::vector<std::vector<float>> f(R);
  std::vector<std::vector<double>> d(R);
  for (int r = 0; r < R; ++r) {
    Rng rng(static_cast<uint64_t>(r + 1));
    for (size_t i = 0; i < N; ++i) {
      f[static_cast<size_t>(r)].push_back(static_cast<float>(rng.below(1u << 20)) * 1e-3f - 500.0f);
      d[static_cast<size_t>(r)].push_back(1.0 / static_cast<double>(i + 1 + static_cast<size_t>(r)));
    }
  }
  std::vector<float> want(N);
  std::vector<double> want_d(N);
  for (size_t i = 0; i < N; ++i) {
    want[i] = (f[0][i] + f[1][i]) + f[2][i];
    want_d[i] = (d[0][i] + d[1][i]) + d[2][i];
  }
  // Rank r's parameters: its own share known, the rest garbage until gathered.
  const std::vector<size_t> off = shard_offsets(N, R);
  std::vector<std::vector<float>> p(R, std::vector<float>(N, -1.0f));
  for (int r = 0; r < R; ++r)
    for (size_t i = off[static_cast<size_t>(r)]; i < off[static_cast<size_t>(r) + 1]; ++i)
      p[static_cast<size_t>(r)][i] = static_cast<float>(i);
  on_ranks(R, [&](int r) {
    const Collective& c = cs[static_cast<size_t>(r)];
    for (int round = 0; round < 3; ++round) {  // reused calls: the barriers must not mix rounds
      std::vector<float> x = f[static_cast<size_t>(r)];
      std::vector<double> y = d[static_cast<size_t>(r)];
      c.all_reduce_sum(x.data(), N);
      c.all_reduce_sum_f64(y.data(), N);
      EXPECT_EQ(x, want) << "rank " << r;
      EXPECT_EQ(y, want_d) << "rank " << r;
    }
    c.all_gather(p[static_cast<size_t>(r)].data(), off.data());
  });
  for (int r = 0; r < R; ++r)
    for (size_t i = 0; i < N; ++i) ASSERT_EQ(p[static_cast<size_t>(r)][i], static_cast<float>(i)) << r;
}

// `steps` steps of the whole batch on one rank, then on R ranks; per step the losses and, after
// every step, the ranks' parameters (identical across ranks) against the one rank's.
void expect_ranks_follow_one(int R, bool quantize, int64_t batch, double loss_tol, double param_tol) {
  const int64_t V = 37, S = 9, accum = 2, steps = 4;
  const ModelConfig cfg = small_config(V);
  Rng rng(99);
  std::vector<int32_t> in(static_cast<size_t>(steps * accum * batch * S)), tg(in.size());
  for (auto& x : in) x = static_cast<int32_t>(rng.below(V));
  for (auto& x : tg) x = static_cast<int32_t>(rng.below(V));
  const float scale = 1.0f / static_cast<float>(accum * batch * S);
  const size_t per_step = static_cast<size_t>(accum * batch * S);

  TrainModel one = make_train_model(cfg, false, quantize, 7);
  AdamWState one_opt;
  TrainBackend b1 = cpu_backend(one, one_opt, 1);
  std::vector<double> loss1;
  std::vector<std::vector<float>> params1;
  for (int64_t s = 0; s < steps; ++s) {
    loss1.push_back(
        b1.step(in.data() + s * per_step, tg.data() + s * per_step, accum, batch, S, scale, 1.0f, 3e-3f, 0.1f)
            .loss_sum);
    params1.push_back(one.params);
  }

  auto cs = thread_collectives(R);
  std::vector<TrainModel> models;
  std::vector<AdamWState> opts(static_cast<size_t>(R));
  for (int r = 0; r < R; ++r) models.push_back(make_train_model(cfg, false, quantize, 7));
  std::vector<std::vector<double>> loss(static_cast<size_t>(R));
  std::vector<std::vector<std::vector<float>>> params(static_cast<size_t>(R));
  on_ranks(R, [&](int r) {
    const size_t ur = static_cast<size_t>(r);
    TrainBackend b = cpu_backend(models[ur], opts[ur], 1, cs[ur]);
    for (int64_t s = 0; s < steps; ++s) {
      loss[ur].push_back(b.step(in.data() + s * per_step, tg.data() + s * per_step, accum, batch, S, scale,
                                1.0f, 3e-3f, 0.1f)
                             .loss_sum);
      params[ur].push_back(models[ur].params);
    }
  });
  for (int64_t s = 0; s < steps; ++s) {
    const size_t us = static_cast<size_t>(s);
    for (int r = 0; r < R; ++r) {
      EXPECT_EQ(loss[static_cast<size_t>(r)][us], loss[0][us]) << "rank " << r << " step " << s;
      EXPECT_EQ(params[static_cast<size_t>(r)][us], params[0][us]) << "rank " << r << " step " << s;
    }
    EXPECT_NEAR(loss[0][us], loss1[us], loss_tol * std::fabs(loss1[us])) << "step " << s;
    double num = 0, den = 0;
    for (size_t i = 0; i < params1[us].size(); ++i) {
      const double e = static_cast<double>(params[0][us][i]) - params1[us][i];
      num += e * e;
      den += static_cast<double>(params1[us][i]) * params1[us][i];
    }
    EXPECT_LT(std::sqrt(num / den), param_tol) << "step " << s;
  }
  // The run moved: a comparison of unchanged parameters would prove nothing.
  const TrainModel start = make_train_model(cfg, false, quantize, 7);
  EXPECT_NE(params[0].back(), start.params);
}

// to_host leaves every rank with the whole optimizer state (a checkpoint written from rank 0 then
// resumes exactly): under ZeRO-1 each rank updates only its share of the moments.
TEST(DataParallel, ToHostGathersTheRanksShareOfTheMoments) {
  constexpr int R = 3;
  const int64_t V = 37, S = 9, batch = 3;
  const ModelConfig cfg = small_config(V);
  Rng rng(5);
  std::vector<int32_t> in(static_cast<size_t>(batch * S)), tg(in.size());
  for (auto& x : in) x = static_cast<int32_t>(rng.below(V));
  for (auto& x : tg) x = static_cast<int32_t>(rng.below(V));
  const float scale = 1.0f / static_cast<float>(batch * S);
  auto cs = thread_collectives(R);
  std::vector<TrainModel> models;
  std::vector<AdamWState> opts(static_cast<size_t>(R));
  for (int r = 0; r < R; ++r) models.push_back(make_train_model(cfg, false, false, 7));
  on_ranks(R, [&](int r) {
    const size_t ur = static_cast<size_t>(r);
    TrainBackend b = cpu_backend(models[ur], opts[ur], 1, cs[ur]);
    for (int s = 0; s < 2; ++s) b.step(in.data(), tg.data(), 1, batch, S, scale, 1.0f, 3e-3f, 0.1f);
    b.to_host();
  });
  for (int r = 0; r < R; ++r) {
    EXPECT_EQ(opts[static_cast<size_t>(r)].step, opts[0].step);
    EXPECT_EQ(opts[static_cast<size_t>(r)].m, opts[0].m) << "rank " << r;
    EXPECT_EQ(opts[static_cast<size_t>(r)].v, opts[0].v) << "rank " << r;
  }
  // Every share moved: rank 0 holds the other ranks' moments, not its own zeros.
  const std::vector<size_t> off = shard_offsets(models[0].params.size(), R);
  for (int r = 0; r < R; ++r) {
    bool moved = false;
    for (size_t i = off[static_cast<size_t>(r)]; i < off[static_cast<size_t>(r) + 1]; ++i)
      moved = moved || opts[0].v[i] != 0.0f;
    EXPECT_TRUE(moved) << "rank " << r << "'s share";
  }
}

TEST(DataParallel, TwoAndThreeRanksFollowOneRankOfTheWholeBatch) {
  for (const int R : {2, 3}) {
    SCOPED_TRACE(R);
    expect_ranks_follow_one(R, /*quantize=*/false, /*batch=*/6, 1e-5, 1e-5);
  }
}

// Quantized: a gradient summed in another order can move a weight across a ternary rounding
// boundary, so the tolerance is looser than float rounding.
TEST(DataParallel, QuantizedRanksFollowOneRank) {
  expect_ranks_follow_one(2, /*quantize=*/true, /*batch=*/4, 1e-3, 1e-3);
}

// A batch of fewer rows than ranks: a rank with no rows adds a zero gradient and still updates
// its share of the parameters.
TEST(DataParallel, RanksWithoutRowsStillStep) {
  expect_ranks_follow_one(3, /*quantize=*/false, /*batch=*/2, 1e-5, 1e-5);
}

// The CUDA data-parallel backend sums the gradients in these buckets as the backward goes: every
// parameter in exactly one, and a bucket summed after layer il's backward holds only layers il and
// above (their gradients complete), never the embedding or the head.
TEST(GradBuckets, CoverEveryGradientOnceInTheBackwardsOrder) {
  for (const bool tied : {false, true})
    for (const int64_t layers : {1, 3}) {
      ModelConfig cfg = small_config(37);
      cfg.n_layer = layers;
      const TrainModel m = make_train_model(cfg, tied, false, 7);
      const size_t per_layer =
          static_cast<size_t>(m.layers.size() > 1 ? m.layers[1].attn_norm - m.layers[0].attn_norm
                                                  : m.output_norm - m.layers[0].attn_norm);
      for (const size_t bucket : {size_t{1}, 2 * per_layer, SIZE_MAX}) {
        SCOPED_TRACE(testing::Message() << "tied " << tied << " layers " << layers << " bucket " << bucket);
        const GradBuckets b = grad_buckets(m, bucket);
        ASSERT_EQ(b.after_layer.size(), static_cast<size_t>(layers));
        std::vector<int> seen(m.params.size(), 0);
        auto mark = [&](ParamRange r) {
          for (size_t i = r.first; i < r.second; ++i) ++seen[i];
        };
        size_t buckets = 0;
        for (size_t il = 0; il < b.after_layer.size(); ++il) {
          const ParamRange r = b.after_layer[il];
          if (r.second <= r.first) continue;
          ++buckets;
          EXPECT_EQ(r.first, static_cast<size_t>(m.layers[il].attn_norm)) << il;
          EXPECT_LE(r.second, static_cast<size_t>(m.output_norm)) << il;
          mark(r);
        }
        for (const ParamRange& r : b.after_embedding) mark(r);
        for (size_t i = 0; i < seen.size(); ++i) ASSERT_EQ(seen[i], 1) << "parameter " << i;
        const size_t want = bucket == 1          ? static_cast<size_t>(layers)
                            : bucket == SIZE_MAX ? 1
                                                 : (layers + 1) / 2;
        EXPECT_EQ(buckets, want);
        EXPECT_EQ(b.after_embedding[0].first, 0u);  // the embedding (a tied head too) goes last
      }
    }
}

}  // namespace
}  // namespace bitnet::train
