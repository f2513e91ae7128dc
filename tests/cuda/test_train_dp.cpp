// Data-parallel training on the GPU (cuda/train_dp.h). Several ranks need several GPUs for NCCL,
// so the algorithm is tested with ranks as threads sharing GPU 0 through the same-device
// collective (sums in rank order): R ranks follow one GPU's run of the whole batch within float
// rounding and hold identical parameters after every step. NCCL itself runs one rank here, which
// must equal the plain one-GPU backend.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <thread>

#include "core/error.h"
#include "cuda/buffer.h"
#include "cuda/device.h"
#include "cuda/dp_collective.h"
#include "cuda/dp_nccl.h"
#include "cuda/train_backend.h"
#include "cuda/train_dp.h"
#include "cuda_test_util.h"
#include "training/collective.h"
#include "training/model.h"
#include "training/rng.h"
#include "training/trainer.h"

namespace bitnet::cuda {
namespace {

using gpu_test::rel_err;

using namespace bitnet::train;

// f(rank) on `size` threads at once, GPU 0 current on each; a failure is reported, not thrown.
template <typename F>
void on_ranks(int size, F&& f) {
  std::vector<std::thread> t;
  for (int r = 0; r < size; ++r)
    t.emplace_back([&f, r] {
      try {
        BN_CUDA(cudaSetDevice(0));
        f(r);
      } catch (const std::exception& e) {
        ADD_FAILURE() << "rank " << r << ": " << e.what();
      }
    });
  for (auto& x : t) x.join();
}

TEST(CudaDataParallel, SameDeviceCollectiveSumsInRankOrderAndGathers) {
  SKIP_WITHOUT_GPU();
  constexpr int R = 3;
  constexpr size_t N = 100003, shard = 1000;
  std::vector<std::vector<float>> f(R);
  for (int r = 0; r < R; ++r) {
    Rng rng(static_cast<uint64_t>(r + 1));
    for (size_t i = 0; i < N; ++i)
      f[static_cast<size_t>(r)].push_back(static_cast<float>(rng.below(1u << 20)) * 1e-3f - 500.0f);
  }
  std::vector<float> want(N);
  for (size_t i = 0; i < N; ++i) want[i] = (f[0][i] + f[1][i]) + f[2][i];
  auto cs = same_device_ranks(R);
  std::vector<std::vector<float>> sum(R), gathered(R);
  std::vector<double> sum64(R);
  on_ranks(R, [&](int r) {
    const size_t ur = static_cast<size_t>(r);
    Buffer<float> x;
    for (int round = 0; round < 3; ++round) {  // reused calls: the barriers must not mix rounds
      x.upload(f[ur]);
      cs[ur].all_reduce_sum(x.data(), N, nullptr);
    }
    sum[ur] = x.download();
    Buffer<double> d;
    d.upload(std::vector<double>{0.5 * (r + 1)});
    cs[ur].all_reduce_sum_f64(d.data(), 1, nullptr);
    sum64[ur] = d.download()[0];
    // Rank r's share holds r + i / 1e4; the rest is NaN until gathered.
    Buffer<float> p(R * shard);
    p.fill_bytes(0xFF);
    std::vector<float> mine(shard);
    for (size_t i = 0; i < shard; ++i) mine[i] = static_cast<float>(r) + static_cast<float>(i) * 1e-4f;
    BN_CUDA(cudaMemcpy(p.data() + ur * shard, mine.data(), shard * 4, cudaMemcpyHostToDevice));
    cs[ur].all_gather(p.data(), shard, nullptr);
    gathered[ur] = p.download();
  });
  for (int r = 0; r < R; ++r) {
    EXPECT_EQ(sum[static_cast<size_t>(r)], want) << "rank " << r;
    EXPECT_EQ(sum64[static_cast<size_t>(r)], 0.5 + 1.0 + 1.5) << "rank " << r;
    for (size_t i = 0; i < R * shard; ++i)
      ASSERT_EQ(gathered[static_cast<size_t>(r)][i],
                static_cast<float>(i / shard) + static_cast<float>(i % shard) * 1e-4f)
          << "rank " << r << " element " << i;
  }
}

struct DpRun {
  std::vector<double> loss;                // per step (every rank's: checked equal)
  std::vector<std::vector<float>> params;  // after each step
  AdamWState opt;                          // rank 0's after the last step (gathered moments)
};

constexpr int64_t kV = 320, kS = 17, kAccum = 2;

ModelConfig dp_config() {
  ModelConfig c = train_config("tiny", kV);
  c.n_layer = 3;
  return c;
}

std::vector<int32_t> tokens(size_t n, uint64_t seed) {
  Rng r(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = static_cast<int32_t>(r.below(kV));
  return t;
}

// Steps [first, first + steps) of the fixed batch sequence, each of accum x batch rows.
template <typename Step>
void run_steps(int64_t first, int64_t steps, int64_t batch, Step&& step) {
  for (int64_t s = first; s < first + steps; ++s) {
    const size_t n = static_cast<size_t>(kAccum * batch * kS);
    step(tokens(n, 100 + static_cast<uint64_t>(s)), tokens(n, 200 + static_cast<uint64_t>(s)));
  }
}

constexpr float kClip = 1.0f, kLr = 3e-3f, kWd = 0.1f;

// The plain one-GPU backend from (m, opt).
DpRun one_gpu(TrainModel m, AdamWState opt, int64_t first, int64_t steps, int64_t batch) {
  TrainBackend b = cuda_backend(m, opt);
  DpRun out;
  const float gs = 1.0f / static_cast<float>(kAccum * batch * kS);
  run_steps(first, steps, batch, [&](const std::vector<int32_t>& in, const std::vector<int32_t>& tg) {
    out.loss.push_back(b.step(in.data(), tg.data(), kAccum, batch, kS, gs, kClip, kLr, kWd).loss_sum);
    b.to_host();
    out.params.push_back(m.params);
  });
  out.opt = opt;
  return out;
}

// R ranks on GPU 0 from (m, opt), each checked to hold the same loss and parameters after every step.
DpRun same_device(int R, TrainModel m, AdamWState opt, int64_t first, int64_t steps, int64_t batch,
                  size_t bucket_floats) {
  auto cs = same_device_ranks(R);
  std::vector<TrainModel> models(static_cast<size_t>(R), m);
  std::vector<AdamWState> opts(static_cast<size_t>(R), opt);
  std::vector<DpRun> runs(static_cast<size_t>(R));
  const float gs = 1.0f / static_cast<float>(kAccum * batch * kS);
  on_ranks(R, [&](int r) {
    const size_t ur = static_cast<size_t>(r);
    TrainBackend b = cuda_backend(models[ur], opts[ur], cs[ur], bucket_floats);
    run_steps(first, steps, batch, [&](const std::vector<int32_t>& in, const std::vector<int32_t>& tg) {
      runs[ur].loss.push_back(b.step(in.data(), tg.data(), kAccum, batch, kS, gs, kClip, kLr, kWd).loss_sum);
      b.to_host();
      runs[ur].params.push_back(models[ur].params);
    });
  });
  for (int r = 1; r < R; ++r) {
    EXPECT_EQ(runs[static_cast<size_t>(r)].loss, runs[0].loss) << "rank " << r;
    for (size_t s = 0; s < runs[0].params.size(); ++s)
      EXPECT_EQ(runs[static_cast<size_t>(r)].params[s], runs[0].params[s]) << "rank " << r << " step " << s;
  }
  runs[0].opt = opts[0];
  return runs[0];
}

// Per step: the losses within loss_tol and the parameters within param_tol (relative).
void expect_follows(const DpRun& dp, const DpRun& one, double loss_tol, double param_tol,
                    const std::string& what) {
  ASSERT_EQ(dp.loss.size(), one.loss.size()) << what;
  for (size_t s = 0; s < one.loss.size(); ++s) {
    const double pe = rel_err(dp.params[s], one.params[s]);
    std::printf("[   info ] %s step %zu: loss %.9g vs %.9g (%.1e), params %.1e relative\n", what.c_str(), s,
                dp.loss[s], one.loss[s], std::fabs(dp.loss[s] - one.loss[s]) / std::fabs(one.loss[s]), pe);
    EXPECT_NEAR(dp.loss[s], one.loss[s], loss_tol * std::fabs(one.loss[s])) << what << " step " << s;
    EXPECT_LT(pe, param_tol) << what << " step " << s;
  }
}

void expect_ranks_follow_one_gpu(int R, bool quantize, int64_t batch, size_t bucket_floats, double loss_tol,
                                 double param_tol) {
  SKIP_WITHOUT_GPU();
  const TrainModel m = make_train_model(dp_config(), false, quantize, 7);
  const int64_t steps = 4;
  const DpRun one = one_gpu(m, {}, 0, steps, batch);
  const DpRun dp = same_device(R, m, {}, 0, steps, batch, bucket_floats);
  expect_follows(
      dp, one, loss_tol, param_tol,
      "R=" + std::to_string(R) + " quantize=" + std::to_string(quantize) + " batch=" + std::to_string(batch));
  EXPECT_NE(dp.params.back(), m.params);  // the run moved: unchanged parameters would prove nothing
}

// One bucket per layer (bucket 1), then the default (the whole tiny model in one bucket).
// Float (not quantized) training on the GPU: cuBLASLt picks its fp32 GEMM algorithm by shape, so a
// rank's share of the rows is summed in another order than the whole batch's. AdamW's first steps
// (m / sqrt(v) about +-1 per component) turn a rounding-sized difference in a gradient component
// that cancels to near zero into a whole learning-rate step of the other sign. Measured on an H100:
// losses within 7e-5 relative over 4 steps, parameters 1.8e-4 relative after the first step and
// 1.7e-3 after the fourth, moments 6e-3 after two, where the quantized run (int8 forward, bf16
// backward products) agrees to 5e-8. The sizes fit a few such flips; that they are the only cause
// is not shown. So float runs are held to these bounds, not to the CPU test's 1e-5.
constexpr double kFloatLossTol = 2e-4, kFloatParamTol = 5e-3, kFloatMomentTol = 2e-2;

TEST(CudaDataParallel, TwoAndThreeRanksFollowOneGpu) {
  for (const int R : {2, 3})
    expect_ranks_follow_one_gpu(R, /*quantize=*/false, 6, 1, kFloatLossTol, kFloatParamTol);
  expect_ranks_follow_one_gpu(2, false, 6, kDpBucketFloats, kFloatLossTol, kFloatParamTol);
}

// Quantized: a gradient summed in another order can move a weight across a ternary rounding
// boundary, so the tolerance is looser than float rounding (as the CPU's test).
TEST(CudaDataParallel, QuantizedRanksFollowOneGpu) {
  expect_ranks_follow_one_gpu(2, /*quantize=*/true, 4, 1, 1e-3, 1e-3);
}

// A batch of fewer rows than ranks: a rank with no rows adds a zero gradient to the same sums.
TEST(CudaDataParallel, RanksWithoutRowsStillStep) {
  expect_ranks_follow_one_gpu(3, /*quantize=*/false, 2, 1, kFloatLossTol, kFloatParamTol);
}

// Checkpoints stay independent of the rank count: rank 0's to_host gathers the full moments, and
// a run resumed from them on another rank count takes its shards of them.
TEST(CudaDataParallel, MomentsGatherAndReshardAcrossRankCounts) {
  SKIP_WITHOUT_GPU();
  const TrainModel m = make_train_model(dp_config(), false, /*quantize=*/false, 7);
  const int64_t batch = 6;
  const DpRun one = one_gpu(m, {}, 0, 4, batch);
  const DpRun two = same_device(2, m, {}, 0, 2, batch, 1);
  const DpRun one_half = one_gpu(m, {}, 0, 2, batch);
  ASSERT_EQ(two.opt.step, 2);
  EXPECT_LT(rel_err(two.opt.m, one_half.opt.m), kFloatMomentTol);
  EXPECT_LT(rel_err(two.opt.v, one_half.opt.v), kFloatMomentTol);
  TrainModel resumed = m;
  resumed.params = two.params.back();
  const DpRun three = same_device(3, resumed, two.opt, 2, 2, batch, 1);
  DpRun tail = one;
  tail.loss.erase(tail.loss.begin(), tail.loss.begin() + 2);
  tail.params.erase(tail.params.begin(), tail.params.begin() + 2);
  expect_follows(three, tail, kFloatLossTol, kFloatParamTol, "resumed on 3 ranks");
}

#if BITNET_HAVE_NCCL
// --gpus 1: NCCL with one rank runs the same kernels as the plain backend, so the same bits.
TEST(CudaDataParallel, OneRankThroughNcclEqualsOneGpu) {
  SKIP_WITHOUT_GPU();
  for (const bool quantize : {false, true}) {
    TrainModel m = make_train_model(dp_config(), false, quantize, 7);
    const int64_t batch = 4;
    const DpRun one = one_gpu(m, {}, 0, 3, batch);
    AdamWState opt;
    TrainBackend b = cuda_backend_gpus(m, opt, 1);
    EXPECT_NE(b.name.find("data parallel over 1 rank"), std::string::npos) << b.name;
    const float gs = 1.0f / static_cast<float>(kAccum * batch * kS);
    size_t s = 0;
    run_steps(0, 3, batch, [&](const std::vector<int32_t>& in, const std::vector<int32_t>& tg) {
      EXPECT_EQ(b.step(in.data(), tg.data(), kAccum, batch, kS, gs, kClip, kLr, kWd).loss_sum, one.loss[s])
          << "step " << s << " quantize " << quantize;
      b.to_host();
      EXPECT_EQ(m.params, one.params[s]) << "step " << s << " quantize " << quantize;
      ++s;
    });
    EXPECT_EQ(opt.m, one.opt.m);
    EXPECT_EQ(opt.v, one.opt.v);
    const auto in = tokens(static_cast<size_t>(batch * kS), 9), tg = tokens(in.size(), 10);
    EXPECT_GT(b.eval(in.data(), tg.data(), batch, kS), 0.0);
  }
}

// Runs in CI too: no GPU is fewer than asked for.
TEST(CudaDataParallel, MoreGpusThanTheMachineHasIsAnError) {
  TrainModel m = make_train_model(dp_config(), false, true, 7);
  AdamWState opt;
  const int ask = static_cast<int>(devices().size()) + 1;
  try {
    cuda_backend_gpus(m, opt, ask);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--gpus " + std::to_string(ask) + ": this machine has"),
              std::string::npos)
        << e.what();
  }
}
#endif

}  // namespace
}  // namespace bitnet::cuda
