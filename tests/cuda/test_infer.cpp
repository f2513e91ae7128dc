// The CUDA inference backend against the CPU engine: each kernel on odd shapes and extreme
// activations (the ternary products' int32 accumulators bit for bit, their float outputs too,
// the fused norm + quantization's codes), then whole synthetic models: logits of a prompt and of
// decoded tokens close to the CPU Session's, the same greedy tokens, batched decode equal to one
// sequence at a time. Each test skips without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "core/arena.h"
#include "core/error.h"
#include "cuda/buffer.h"
#include "cuda/device.h"
#include "cuda/infer_gemm_lt.h"
#include "cuda/infer_kernels.h"
#include "cuda/infer_session.h"
#include "cuda/infer_tp_kernels.h"
#include "cuda/infer_weights.h"
#include "cuda/lt_plans.h"
#include "cuda_test_util.h"
#include "inference/forward.h"
#include "model/synthetic.h"
#include "model/synthetic_gguf.h"
#include "ops/layer_ops.h"
#include "quant/act_quant.h"
#include "quant/gemm.h"
#include "quant/native.h"
#include "quant/q6_kx.h"
#include "quant/quantize_rows.h"

namespace bitnet::cuda {
namespace {

using gpu_test::rel_err;
using gpu_test::variant_config;

template <typename T>
Buffer<T> on_device(const std::vector<T>& v) {
  Buffer<T> b;
  b.upload(v);
  return b;
}

// A random ternary matrix and m rows of int8 activations with their sums; `extreme` puts -128
// and 127 everywhere (the largest |products|) with random signs.
struct ProductCase {
  TernaryMatrix w;
  std::vector<int8_t> q;
  std::vector<float> dq;
  std::vector<int32_t> sum;
  int64_t m, k_pad;
};

ProductCase make_case(int64_t m, int64_t n, int64_t k, bool extreme, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int8_t> wv(static_cast<size_t>(n * k));
  for (auto& x : wv) x = static_cast<int8_t>(static_cast<int>(rng() % 3) - 1);
  std::vector<float> scales(static_cast<size_t>(n));
  for (auto& s : scales) s = 0.01f + static_cast<float>(rng() % 1000) * 1e-4f;
  ProductCase c{pack_native(wv.data(), n, k, scales.data()), {}, {}, {}, m, (k + 63) / 64 * 64};
  c.q.assign(static_cast<size_t>(m * c.k_pad), 0);
  c.dq.resize(static_cast<size_t>(m));
  c.sum.resize(static_cast<size_t>(m));
  for (int64_t t = 0; t < m; ++t) {
    int32_t s = 0;
    for (int64_t i = 0; i < k; ++i) {
      const int v = extreme ? (rng() % 2 ? 127 : -128) : static_cast<int>(rng() % 256) - 128;
      c.q[static_cast<size_t>(t * c.k_pad + i)] = static_cast<int8_t>(v);
      s += v;
    }
    c.sum[static_cast<size_t>(t)] = s;
    c.dq[static_cast<size_t>(t)] = 1.0f / (1.0f + static_cast<float>(t));
  }
  return c;
}

QuantizedActs cpu_acts(ProductCase& c) {
  QuantizedActs a;
  a.m = c.m;
  a.k = c.w.k;
  a.k_pad = c.k_pad;
  a.q = c.q.data();
  a.dq = c.dq.data();
  a.sum = c.sum.data();
  return a;
}

// cuBLASLt, its plans and the int8 route's scratch (infer_gemm_lt.h), sized for products of up
// to m tokens with n x k_pad matrices.
struct LtScratch {
  cublasLtHandle_t lt = nullptr;
  LtPlans plans;
  Buffer<unsigned char> workspace{size_t{4} << 20};
  Buffer<int8_t> w8;
  Buffer<int32_t> acc;
  TernaryLt t;
  LtScratch(int64_t n, int64_t k_pad, int m)
      : w8(static_cast<size_t>(n * k_pad)), acc(static_cast<size_t>(m * n)) {
    BN_CUBLAS(cublasLtCreate(&lt));
    t = {lt, &plans, workspace.data(), workspace.bytes(), w8.data(), w8.bytes(), acc.data(), acc.size()};
  }
  ~LtScratch() { (void)cublasLtDestroy(lt); }
  LtScratch(const LtScratch&) = delete;
  LtScratch& operator=(const LtScratch&) = delete;
};

class TernaryProduct : public ::testing::TestWithParam<std::tuple<int, int, int, bool>> {};

TEST_P(TernaryProduct, AccumulatorsAndOutputsEqualTheCpuReference) {
  SKIP_WITHOUT_GPU();
  const auto [m, n, k, extreme] = GetParam();
  ProductCase c = make_case(m, n, k, extreme, static_cast<uint32_t>(m * 1000003 + n * 31 + k));
  const QuantizedActs a = cpu_acts(c);
  std::vector<int32_t> want(static_cast<size_t>(m * n));
  std::vector<float> y0(static_cast<size_t>(m * n)), want_y(static_cast<size_t>(m * n)), want_add;
  for (size_t i = 0; i < y0.size(); ++i) y0[i] = static_cast<float>(i % 17) * 0.25f - 2.0f;
  ternary_gemm_ref(c.w, a, 0, n, {want.data(), n, want_y.data(), n});
  want_add = y0;
  ternary_gemm_ref(c.w, a, 0, n, {nullptr, 0, want_add.data(), n, true});

  Buffer<uint32_t> words = on_device(native_to_gpu_words(c.w));
  Buffer<float> rs;
  rs.upload(c.w.row_scale(), static_cast<size_t>(n));
  Buffer<int8_t> q = on_device(c.q);
  Buffer<float> dq = on_device(c.dq);
  const infer::DevTernary w{words.data(), rs.data(), n, k, c.w.k_pad};
  const infer::DevActs x{q.data(), dq.data(), k, c.k_pad};
  // Path 0: the GEMV; then the tensor-core GEMM with its automatic tile and each tile forced.
  const infer::GemmTile tiles[] = {infer::GemmTile::kAuto, infer::GemmTile::k32x32, infer::GemmTile::k64x32,
                                   infer::GemmTile::k64x128, infer::GemmTile::k128x128};
  // Split-K scratch (paths 6 – 8): automatic, 3 ranges, and 6 ranges of the smallest tile (with
  // 10 K steps, its last range is empty); the scratch must be left all zero.
  Buffer<int32_t> sums(static_cast<size_t>(m * n));
  Buffer<unsigned> counters(4096);
  sums.fill_bytes(0);
  counters.fill_bytes(0);
  // Paths 9 – 11: the tensor-core GEMV (decode batches up to 64) with its automatic row groups,
  // one and two.
  // Path 12: cuBLASLt's int8 GEMM on the expanded codes (prompts), where it has an algorithm;
  // from kTernaryLtMinTokens tokens (where sessions use it) it must have one.
  LtScratch lt(n, c.w.k_pad, m);
  for (int path = 0; path < 13; ++path) {
    if (path == 0 && m > 8) continue;  // the GEMV serves decode batches up to 8
    if (path >= 9 && path < 12 && m > infer::kGemvMmaMaxTokens) continue;
    SCOPED_TRACE(path == 0   ? "gemv"
                 : path < 6  ? "mma tile " + std::to_string(path - 1)
                 : path < 9  ? "split-K " + std::to_string(path)
                 : path < 12 ? "gemv_mma, row groups " + std::to_string(path - 9)
                             : std::string("cuBLASLt int8"));
    const infer::GemmTile tile = path < 6    ? tiles[std::max(0, path - 1)]
                                 : path == 8 ? infer::GemmTile::k32x32
                                             : infer::GemmTile::kAuto;
    const infer::GemmSplitK sk =
        path < 6 ? infer::GemmSplitK{}
                 : infer::GemmSplitK{sums.data(), counters.data(), sums.size(), counters.size(),
                                     path == 6   ? 0
                                     : path == 7 ? 3
                                                 : 6};
    Buffer<int32_t> acc(static_cast<size_t>(m * n));
    acc.fill_bytes(0xFF);
    Buffer<float> y(static_cast<size_t>(m * n));
    y.fill_bytes(0xFF);
    Buffer<float> ya = on_device(y0);
    if (path == 0) {
      infer::ternary_acc_gemv(w, x, m, acc.data(), nullptr);
      infer::ternary_gemv(w, x, m, y.data(), n, false, nullptr);
      infer::ternary_gemv(w, x, m, ya.data(), n, true, nullptr);
    } else if (path == 12) {
      const bool ran = ternary_acc_lt(lt.t, w, x, m, acc.data(), nullptr);
      EXPECT_TRUE(ran || m < kTernaryLtMinTokens) << "cuBLASLt has no int8 algorithm";
      if (!ran) continue;
      EXPECT_TRUE(ternary_gemm_lt(lt.t, w, x, m, y.data(), n, false, nullptr));
      EXPECT_TRUE(ternary_gemm_lt(lt.t, w, x, m, ya.data(), n, true, nullptr));
      // The output in the sums' own buffer (a session lends its gate|up buffer): converted in
      // place; added or strided outputs there are refused.
      float* in_place = reinterpret_cast<float*>(lt.acc.data());
      EXPECT_FALSE(ternary_gemm_lt(lt.t, w, x, m, in_place, n, true, nullptr));
      EXPECT_TRUE(ternary_gemm_lt(lt.t, w, x, m, in_place, n, false, nullptr));
      BN_CUDA(cudaDeviceSynchronize());
      std::vector<float> got_in_place(static_cast<size_t>(m * n));
      BN_CUDA(cudaMemcpy(got_in_place.data(), in_place, got_in_place.size() * 4, cudaMemcpyDeviceToHost));
      EXPECT_EQ(0, std::memcmp(got_in_place.data(), want_y.data(), want_y.size() * 4)) << "in place";
    } else if (path >= 9) {
      infer::ternary_acc_gemv_mma(w, x, m, acc.data(), nullptr, path - 9);
      infer::ternary_gemv_mma(w, x, m, y.data(), n, false, nullptr, path - 9);
      infer::ternary_gemv_mma(w, x, m, ya.data(), n, true, nullptr, path - 9);
    } else {
      infer::ternary_acc_mma(w, x, m, acc.data(), nullptr, tile, sk);
      infer::ternary_gemm_mma(w, x, m, y.data(), n, false, nullptr, tile, sk);
      infer::ternary_gemm_mma(w, x, m, ya.data(), n, true, nullptr, tile, sk);
    }
    BN_CUDA(cudaDeviceSynchronize());
    if (path >= 6) {
      const auto left = sums.download();
      EXPECT_TRUE(std::all_of(left.begin(), left.end(), [](int32_t v) { return v == 0; })) << "sums left";
      const auto cl = counters.download();
      EXPECT_TRUE(std::all_of(cl.begin(), cl.end(), [](unsigned v) { return v == 0; })) << "counters left";
    }
    EXPECT_EQ(acc.download(), want);
    const auto got_y = y.download(), got_add = ya.download();
    EXPECT_EQ(0, std::memcmp(got_y.data(), want_y.data(), want_y.size() * 4)) << "stored outputs differ";
    EXPECT_EQ(0, std::memcmp(got_add.data(), want_add.data(), want_add.size() * 4)) << "added outputs differ";
  }
}

INSTANTIATE_TEST_SUITE_P(
    OddShapes, TernaryProduct,
    ::testing::Values(std::make_tuple(1, 37, 100, false), std::make_tuple(1, 64, 2560, true),
                      std::make_tuple(3, 130, 4100, false), std::make_tuple(8, 96, 192, true),
                      std::make_tuple(5, 1000, 6912, false), std::make_tuple(13, 37, 100, false),
                      std::make_tuple(70, 300, 640, true), std::make_tuple(129, 257, 320, false),
                      std::make_tuple(64, 2560, 2560, false), std::make_tuple(300, 1100, 1000, true),
                      std::make_tuple(2, 8200, 320, true), std::make_tuple(33, 77, 1000, true),
                      std::make_tuple(64, 200, 6912, true), std::make_tuple(17, 9000, 192, false)));

// The KV geometry of two layers and two slots (the kernels are run on layer 1, slot 1 or both),
// and the halves each of its key and value caches holds.
infer::KvGeom two_layer_kv(int64_t n_kv, int64_t n_ctx, int64_t hd) {
  infer::KvGeom kv;
  kv.n_layer = 2;
  kv.n_head_kv = n_kv;
  kv.n_ctx = n_ctx;
  kv.head_dim = hd;
  return kv;
}
size_t cache_halves(const infer::KvGeom& kv) {
  return static_cast<size_t>(2 * kv.n_layer * kv.n_head_kv * kv.n_ctx * kv.head_dim);
}

// The prompt's tensor-core attention against the one-block kernel (whose softmax is the CPU's):
// a chunk of m tokens at positions p0 .. p0 + m - 1 of slot 1, layer 1, over random keys and
// values. Only the order of float additions differs (a probability on a half rounding boundary
// may round the other way), so the outputs agree to 1e-3 (relative L2), not bit for bit.
TEST(CudaInfer, PromptAttentionMatchesTheOneBlockKernel) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  // Chunks of two, three and five query blocks over one, two and three steps of 128 keys (two
  // groups of warps take 64 each; the last chunk's copies wrap around the double buffer, and a
  // group sees no key in some steps).
  const int64_t chunks[][2] = {{77, 37}, {150, 45}, {260, 50}};  // tokens, first position
  for (const auto& chunk : chunks)
    for (const int64_t hd : {32, 64, 128}) {
      const int m = static_cast<int>(chunk[0]);
      const int64_t p0 = chunk[1], n_head = 8, n_kv = 2, n_ctx = 320;
      SCOPED_TRACE("head_dim " + std::to_string(hd) + ", m " + std::to_string(m));
      infer::KvGeom kv = two_layer_kv(n_kv, n_ctx, hd);
      const size_t cache = cache_halves(kv);
      std::vector<__half> kh(cache), vh(cache);
      for (size_t i = 0; i < cache; ++i) {
        kh[i] = __float2half(u(rng));
        vh[i] = __float2half(u(rng));
      }
      Buffer<__half> kb = on_device(kh), vb = on_device(vh);
      kv.k = kb.data();
      kv.v = vb.data();
      const int64_t ld = (n_head + 2 * n_kv) * hd;
      std::vector<float> qkv(static_cast<size_t>(m * ld));
      for (auto& x : qkv) x = u(rng);
      std::vector<int32_t> pos(static_cast<size_t>(m)), slot(static_cast<size_t>(m), 1);
      for (int t = 0; t < m; ++t) pos[static_cast<size_t>(t)] = static_cast<int32_t>(p0 + t);
      Buffer<float> qb = on_device(qkv);
      Buffer<int32_t> pb = on_device(pos), sb = on_device(slot);
      Buffer<float> want(static_cast<size_t>(m * n_head * hd)), got(static_cast<size_t>(m * n_head * hd));
      got.fill_bytes(0xFF);
      infer::attention(qb.data(), m, pb.data(), sb.data(), n_head, kv, 1, 1, nullptr, want.data(), nullptr);
      infer::attention_prompt(qb.data(), m, pb.data(), sb.data(), n_head, kv, 1, got.data(), nullptr);
      BN_CUDA(cudaDeviceSynchronize());
      const auto w = want.download(), g = got.download();
      double num = 0, den = 0;
      for (size_t i = 0; i < w.size(); ++i) {
        num += (static_cast<double>(g[i]) - w[i]) * (static_cast<double>(g[i]) - w[i]);
        den += static_cast<double>(w[i]) * w[i];
      }
      EXPECT_LT(std::sqrt(num / den), 1e-3);
    }
}

// Not a check: the products' time per kernel on the 2B4T layer shapes (512 prompt tokens, decode
// batches of 64 and 8), the weights cycled through copies larger than L2 so that they come from
// HBM, as in a decode step. Run with --gtest_also_run_disabled_tests.
TEST(CudaGemmTiming, DISABLED_TilesOn2B4TShapes) {
  SKIP_WITHOUT_GPU();
  const int64_t shapes[4][2] = {
      {3840, 2560}, {2560, 2560}, {13824, 2560}, {2560, 6912}};  // qkv o gate|up down
  const char* names[] = {"auto",     "32x32",   "64x32",   "64x128", "128x128",
                         "gemv_mma", "mma rg1", "mma rg2", "dp4a",   "lt"};
  cudaEvent_t e0, e1;
  BN_CUDA(cudaEventCreate(&e0));
  BN_CUDA(cudaEventCreate(&e1));
  for (int m : {512, 64, 32, 8, 4}) {
    for (const auto& [n, k] : shapes) {
      ProductCase c = make_case(m, n, k, false, 7);
      const std::vector<uint32_t> host_words = native_to_gpu_words(c.w);
      const size_t copies = std::max<size_t>(2, (size_t{160} << 20) / (host_words.size() * 4));
      std::vector<Buffer<uint32_t>> words(copies);
      for (auto& b : words) b.upload(host_words);
      Buffer<float> rs;
      rs.upload(c.w.row_scale(), static_cast<size_t>(n));
      Buffer<int8_t> q = on_device(c.q);
      Buffer<float> dq = on_device(c.dq);
      Buffer<float> y(static_cast<size_t>(m * n));
      const infer::DevActs x{q.data(), dq.data(), k, c.k_pad};
      std::printf("[   time   ] m %d n %lld k %lld:", m, static_cast<long long>(n),
                  static_cast<long long>(k));
      LtScratch lt(n, c.w.k_pad, m);
      for (int t = 0; t < 10; ++t) {
        if (t >= 5 && t < 9 && m > infer::kGemvMmaMaxTokens) continue;
        if (t == 8 && m > 8) continue;
        if ((t < 5 || t == 9) && m < 32) continue;
        auto run = [&](size_t i) {
          const infer::DevTernary w{words[i % copies].data(), rs.data(), n, k, c.w.k_pad};
          if (t < 5)
            infer::ternary_gemm_mma(w, x, m, y.data(), n, false, nullptr, static_cast<infer::GemmTile>(t));
          else if (t < 8)
            infer::ternary_gemv_mma(w, x, m, y.data(), n, false, nullptr, t - 5);
          else if (t == 8)
            infer::ternary_gemv(w, x, m, y.data(), n, false, nullptr);
          else if (!ternary_gemm_lt(lt.t, w, x, m, y.data(), n, false, nullptr))
            std::printf(" (no cuBLASLt algorithm)");
        };
        constexpr int reps = 40;
        run(0);
        BN_CUDA(cudaEventRecord(e0));
        for (int r = 0; r < reps; ++r) run(static_cast<size_t>(r + 1));
        BN_CUDA(cudaEventRecord(e1));
        BN_CUDA(cudaEventSynchronize(e1));
        float ms = 0;
        BN_CUDA(cudaEventElapsedTime(&ms, e0, e1));
        const double us = 1e3 * ms / reps;
        std::printf("  %s %.1f us (%.0f GB/s)", names[t], us, host_words.size() * 4.0 / (us * 1e-6) * 1e-9);
      }
      std::printf("\n");
    }
  }
  (void)cudaEventDestroy(e0);
  (void)cudaEventDestroy(e1);
}

// RMSNorm + quantization (and the gated form): the same codes as the CPU's rms_norm +
// quantize_act_row_ref. The sum of squares is double in both, summed in another order, so a
// code may differ by one where a value sits on a rounding boundary: at most 1 in 1000.
TEST(CudaInfer, NormQuantMatchesCpu) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  // k = 101: the one-float path (rows not in 16-byte steps); 40 tokens: the prompt's block size;
  // no norm: a model without sub-norms quantizes the attention output and the FFN product as is.
  for (const bool with_norm : {true, false})
    for (const bool gated : {false, true})
      for (const int64_t k : {int64_t{100}, int64_t{101}, int64_t{2560}, int64_t{6912}})
        for (const int m : {5, 40}) {
          const int64_t k_pad = (k + 63) / 64 * 64, ld = gated ? 2 * k : k;
          std::vector<float> in(static_cast<size_t>(m * ld)), norm(static_cast<size_t>(k));
          for (auto& v : in) v = nd(rng) * 3.0f;
          in[3] = 1e4f;  // an outlier: everything else quantizes near zero
          for (auto& v : norm) v = 0.5f + std::fabs(nd(rng));
          std::vector<int8_t> want(static_cast<size_t>(m * k_pad));
          std::vector<float> want_dq(static_cast<size_t>(m));
          std::vector<int32_t> want_sum(static_cast<size_t>(m));
          for (int t = 0; t < m; ++t) {
            std::vector<float> h(static_cast<size_t>(k));
            if (gated)
              gated_act(in.data() + t * ld, in.data() + t * ld + k, k, FfnAct::kRelu2, h.data());
            else
              std::copy(in.data() + t * ld, in.data() + t * ld + k, h.begin());
            if (with_norm) rms_norm(h.data(), norm.data(), k, 1e-5f, h.data());
            float s;
            quantize_act_row_ref(h.data(), k, k_pad, want.data() + t * k_pad, &s,
                                 &want_dq[static_cast<size_t>(t)], &want_sum[static_cast<size_t>(t)]);
          }
          Buffer<float> din = on_device(in), dnorm = on_device(norm);
          Buffer<int8_t> q(want.size());
          q.fill_bytes(0x55);
          Buffer<float> dq(static_cast<size_t>(m));
          infer::norm_quant(din.data(), ld, m, with_norm ? dnorm.data() : nullptr, 1e-5f, gated, 0,
                            {q.data(), dq.data(), k, k_pad}, nullptr);
          const auto got = q.download();
          int diff = 0;
          for (size_t i = 0; i < got.size(); ++i) {
            ASSERT_LE(std::abs(got[i] - want[i]), 1) << "code " << i;
            diff += got[i] != want[i];
          }
          EXPECT_LE(diff, static_cast<int>(got.size() / 1000))
              << "k " << k << " gated " << gated << " norm " << with_norm;
          const auto gdq = dq.download();
          for (int t = 0; t < m; ++t)
            EXPECT_NEAR(gdq[static_cast<size_t>(t)], want_dq[static_cast<size_t>(t)],
                        1e-6f * want_dq[static_cast<size_t>(t)]);
        }
}

// The gated norm from a product's int32 sums equals acc_epilogue's floats through the float
// norm, bit for bit (codes and scales), also with the sums' 1/s in the output's own buffer.
TEST(CudaInfer, GatedNormFromSumsIsTheEpilogueThenTheNorm) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(9);
  for (const int64_t k : {int64_t{101}, int64_t{768}, int64_t{6912}})
    for (const int m : {3, 130}) {
      const int64_t k_pad = (k + 63) / 64 * 64;
      std::vector<int32_t> acc(static_cast<size_t>(m * 2 * k));
      for (auto& v : acc) v = static_cast<int32_t>(rng() % 200001) - 100000;
      acc[5] = 1 << 30;  // an outlier
      std::vector<float> rs(static_cast<size_t>(2 * k)), dq(static_cast<size_t>(m)),
          norm(static_cast<size_t>(k));
      for (auto& v : rs) v = 0.01f + static_cast<float>(rng() % 1000) * 1e-4f;
      for (auto& v : dq) v = 1e-4f + static_cast<float>(rng() % 1000) * 1e-6f;
      for (auto& v : norm) v = 0.5f + static_cast<float>(rng() % 1000) * 1e-3f;
      Buffer<int32_t> dacc = on_device(acc);
      Buffer<float> drs = on_device(rs), ddq = on_device(dq), dnorm = on_device(norm);
      Buffer<float> y(acc.size());
      infer::acc_epilogue(dacc.data(), m, 2 * k, drs.data(), ddq.data(), y.data(), 2 * k, false, nullptr);
      for (const int act : {0, 1}) {
        Buffer<int8_t> qa(static_cast<size_t>(m * k_pad)), qb(static_cast<size_t>(m * k_pad));
        Buffer<float> dqa(static_cast<size_t>(m)), dqb = on_device(dq);  // b: 1/s in and out in one buffer
        infer::norm_quant(y.data(), 2 * k, m, dnorm.data(), 1e-5f, true, act,
                          {qa.data(), dqa.data(), k, k_pad}, nullptr);
        infer::norm_quant_gated_acc(dacc.data(), drs.data(), dqb.data(), 2 * k, m, dnorm.data(), 1e-5f, act,
                                    {qb.data(), dqb.data(), k, k_pad}, nullptr);
        EXPECT_EQ(qa.download(), qb.download()) << "k " << k << " m " << m << " act " << act;
        EXPECT_EQ(dqa.download(), dqb.download()) << "k " << k << " m " << m << " act " << act;
      }
    }
}

// The residual step from a product's sums fused into the next norm equals acc_epilogue's add into
// x then the float norm, bit for bit: the new x, the codes and the scales.
TEST(CudaInfer, ResidualNormFromSumsIsTheEpilogueAddThenTheNorm) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(10);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  for (const int64_t k : {int64_t{101}, int64_t{2560}})
    for (const int m : {3, 130}) {
      const int64_t k_pad = (k + 63) / 64 * 64;
      std::vector<int32_t> acc(static_cast<size_t>(m * k));
      for (auto& v : acc) v = static_cast<int32_t>(rng() % 200001) - 100000;
      std::vector<float> x(static_cast<size_t>(m * k)), rs(static_cast<size_t>(k)),
          dq(static_cast<size_t>(m)), norm(static_cast<size_t>(k));
      for (auto& v : x) v = nd(rng);
      for (auto& v : rs) v = 0.01f + static_cast<float>(rng() % 1000) * 1e-4f;
      for (auto& v : dq) v = 1e-4f + static_cast<float>(rng() % 1000) * 1e-6f;
      for (auto& v : norm) v = 0.5f + static_cast<float>(rng() % 1000) * 1e-3f;
      Buffer<int32_t> dacc = on_device(acc);
      Buffer<float> xa = on_device(x), xb = on_device(x), drs = on_device(rs), ddq = on_device(dq),
                    dnorm = on_device(norm);
      Buffer<int8_t> qa(static_cast<size_t>(m * k_pad)), qb(static_cast<size_t>(m * k_pad));
      Buffer<float> dqa(static_cast<size_t>(m)), dqb = on_device(dq);  // b: 1/s in and out in one buffer
      infer::acc_epilogue(dacc.data(), m, k, drs.data(), ddq.data(), xa.data(), k, true, nullptr);
      infer::norm_quant(xa.data(), k, m, dnorm.data(), 1e-5f, false, 0, {qa.data(), dqa.data(), k, k_pad},
                        nullptr);
      infer::norm_quant_residual_acc(dacc.data(), drs.data(), dqb.data(), xb.data(), m, dnorm.data(), 1e-5f,
                                     {qb.data(), dqb.data(), k, k_pad}, nullptr);
      EXPECT_EQ(xa.download(), xb.download()) << "k " << k << " m " << m;
      EXPECT_EQ(qa.download(), qb.download()) << "k " << k << " m " << m;
      EXPECT_EQ(dqa.download(), dqb.download()) << "k " << k << " m " << m;
    }
}

// RoPE + KV store from the qkv product's sums equals acc_epilogue's floats through the float
// kernel, bit for bit: the rotated queries and the cache's keys and values (both styles, a rotated
// part narrower than the head, tokens spread over two slots).
TEST(CudaInfer, RopeFromSumsIsTheEpilogueThenRope) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(11);
  for (const bool neox : {true, false})
    for (const int64_t rope_dim : {int64_t{64}, int64_t{32}})
      for (const int m : {3, 130}) {
        SCOPED_TRACE("neox " + std::to_string(neox) + " rope_dim " + std::to_string(rope_dim) + " m " +
                     std::to_string(m));
        const int64_t hd = 64, n_head = 6, n_kv = 2, n_ctx = 256, width = (n_head + 2 * n_kv) * hd;
        infer::KvGeom kv = two_layer_kv(n_kv, n_ctx, hd);
        const size_t cache = cache_halves(kv);
        std::vector<int32_t> acc(static_cast<size_t>(m * width));
        for (auto& v : acc) v = static_cast<int32_t>(rng() % 200001) - 100000;
        acc[7] = 1 << 30;  // an outlier
        std::vector<float> rs(static_cast<size_t>(width)), dq(static_cast<size_t>(m));
        for (auto& v : rs) v = 0.01f + static_cast<float>(rng() % 1000) * 1e-4f;
        for (auto& v : dq) v = 1e-4f + static_cast<float>(rng() % 1000) * 1e-6f;
        std::vector<int32_t> pos(static_cast<size_t>(m)), slot(static_cast<size_t>(m));
        for (int t = 0; t < m; ++t) {
          pos[static_cast<size_t>(t)] = static_cast<int32_t>((t * 37 + 5) % n_ctx);
          slot[static_cast<size_t>(t)] = t % 2;
        }
        std::vector<double> inv(static_cast<size_t>(rope_dim / 2));
        for (int64_t i = 0; i < rope_dim / 2; ++i)
          inv[static_cast<size_t>(i)] =
              std::pow(10000.0, -2.0 * static_cast<double>(i) / static_cast<double>(rope_dim));
        Buffer<int32_t> dacc = on_device(acc), dpos = on_device(pos), dslot = on_device(slot);
        Buffer<float> drs = on_device(rs), ddq = on_device(dq);
        Buffer<double> dinv = on_device(inv);
        Buffer<float> qa(acc.size()), qb(acc.size());
        Buffer<__half> ka(cache), va(cache), kb(cache), vb(cache);
        for (auto* b : {&ka, &va, &kb, &vb}) b->fill_bytes(0);
        infer::KvGeom kva = kv, kvb = kv;
        kva.k = ka.data(), kva.v = va.data(), kvb.k = kb.data(), kvb.v = vb.data();
        infer::acc_epilogue(dacc.data(), m, width, drs.data(), ddq.data(), qa.data(), width, false, nullptr);
        infer::rope_kv_store(qa.data(), m, dpos.data(), dslot.data(), n_head, rope_dim, dinv.data(), neox,
                             kva, 1, nullptr);
        infer::rope_kv_store_acc(dacc.data(), drs.data(), ddq.data(), qb.data(), m, dpos.data(), dslot.data(),
                                 n_head, rope_dim, dinv.data(), neox, kvb, 1, nullptr);
        const auto a = qa.download(), b = qb.download();
        for (int t = 0; t < m; ++t)
          for (int64_t i = 0; i < n_head * hd; ++i)
            ASSERT_EQ(a[static_cast<size_t>(t * width + i)], b[static_cast<size_t>(t * width + i)])
                << "token " << t << " query value " << i;
        const auto bits = [](const Buffer<__half>& h) {
          const auto v = h.download();
          std::vector<uint16_t> out(v.size());
          std::memcpy(out.data(), v.data(), v.size() * sizeof(uint16_t));
          return out;
        };
        const auto kbits = bits(ka);
        EXPECT_EQ(kbits, bits(kb));
        EXPECT_EQ(bits(va), bits(vb));
        EXPECT_NE(std::count(kbits.begin(), kbits.end(), uint16_t{0}),
                  static_cast<std::ptrdiff_t>(kbits.size()));
      }
}

// A session's prompt chunks of 128 tokens or more multiply through cuBLASLt (gate|up's sums read
// by the gated norm, o's and down's by the next norm, directly); with BITNET_CUDA_LT=0 they take
// the tile GEMM. The same exact sums and the same float operations: the prompt's logits are the
// same bits. Returns the cuBLASLt route's session, the prompt in its cache, and the logits.
std::unique_ptr<CudaSession> prompt_through_both_routes(const Model& model, const CudaSessionOptions& o,
                                                        std::span<const int32_t> prompt,
                                                        std::vector<float>& logits) {
  const int64_t V = model.cfg.n_vocab;
  setenv("BITNET_CUDA_LT", "0", 1);
  CudaSession tile(model, o);  // first, so a one-time allocation is not counted in lt's bytes below
  unsetenv("BITNET_CUDA_LT");
  auto lt = std::make_unique<CudaSession>(model, o);
  const float* a = tile.forward(prompt, true);
  const std::vector<float> want(a, a + prompt.size() * V);
  const float* b = lt->forward(prompt, true);
  EXPECT_EQ(std::memcmp(b, want.data(), want.size() * 4), 0)
      << "rel. error " << rel_err(b, want.data(), want.size());
  EXPECT_GT(lt->device_bytes(), tile.device_bytes());  // the expanded-matrix scratch: the route was set up
  logits.assign(b, b + prompt.size() * V);
  return lt;
}

TEST(CudaInfer, PromptThroughCublasLtGivesTheTileGemmsLogits) {
  SKIP_WITHOUT_GPU();
  // An F32 head: the head kernel (the F16 head's cuBLASLt GEMM need not repeat its float order).
  const Model model = make_synthetic_model(synthetic_config("tiny"), 8, DType::F32);
  const int64_t V = model.cfg.n_vocab;
  std::vector<int32_t> prompt(300);  // chunks of 256 (cuBLASLt) and 44 (the tile GEMM)
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>((i * 613 + 29) % V);
  std::vector<float> logits;
  prompt_through_both_routes(model, {512, 1, 256}, prompt, logits);
}

// The CPU's regrouped Q8_0X head uploads to the same codes and scales as plain Q8_0.
TEST(CudaInfer, Q8_0XUploadsAsQ8_0) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(3);
  std::vector<float> v(3 * 1024);
  for (auto& x : v) x = static_cast<float>(static_cast<int>(rng() % 2001) - 1000) * 1e-3f;
  Tensor plain = Tensor::empty(DType::Q8_0, {3, 1024}, "t");
  const auto bytes = quantize_rows(DType::Q8_0, v.data(), 3, 1024);
  std::memcpy(plain.mutable_data(), bytes.data(), bytes.size());
  const Tensor grouped = regroup_q8_0x(plain);
  ASSERT_EQ(grouped.dtype(), DType::Q8_0X);
  const DeviceTable a = upload_table(plain, "plain"), b = upload_table(grouped, "grouped");
  EXPECT_EQ(a.data.download(), b.data.download());
  EXPECT_EQ(a.scales.download(), b.scales.download());
}

// The CPU's interleaved Q6_KX head uploads as the Q6_K bytes it was made from (37 rows: a last
// group of 5).
TEST(CudaInfer, Q6_KXUploadsAsQ6_K) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(4);
  std::vector<float> v(37 * 512);
  for (auto& x : v) x = static_cast<float>(static_cast<int>(rng() % 2001) - 1000) * 1e-3f;
  Tensor plain = Tensor::empty(DType::Q6_K, {37, 512}, "t");
  const auto bytes = quantize_rows(DType::Q6_K, v.data(), 37, 512);
  std::memcpy(plain.mutable_data(), bytes.data(), bytes.size());
  Tensor grouped = Tensor::empty(DType::Q6_KX, {37, 512}, "t");
  repack_q6_kx_rows(plain.data(), 37, 512, grouped.mutable_data());
  const DeviceTable a = upload_table(plain, "plain"), b = upload_table(grouped, "grouped");
  EXPECT_EQ(a.type, b.type);
  EXPECT_EQ(a.data.download(), b.data.download());
}

size_t argmax(const float* x, size_t n) {
  return static_cast<size_t>(std::max_element(x, x + n) - x);
}

struct ModelCase {
  const char* name;
  DType embd;
  bool variant;  // interleaved RoPE, SiLU, no sub-norms, 4 query heads per KV head, head_dim 32
};

class WholeModel : public ::testing::TestWithParam<ModelCase> {};

// The gap between the largest and the second largest logit.
float top_margin(const float* x, size_t n) {
  float a = -INFINITY, b = -INFINITY;
  for (size_t i = 0; i < n; ++i) {
    if (x[i] > a) {
      b = a;
      a = x[i];
    } else if (x[i] > b) {
      b = x[i];
    }
  }
  return a - b;
}

// A KV cache larger than the GPU's free memory is refused by size, with the sizes in the message,
// before anything is allocated; a context whose count of bytes passes 2^64 too.
TEST(CudaInfer, SessionRefusesAKvCacheLargerThanTheGpu) {
  SKIP_WITHOUT_GPU();
  const Model model = make_synthetic_model(synthetic_config("tiny"), 5, DType::F32);
  for (const int64_t n_ctx : {int64_t{1} << 40, int64_t{1} << 62}) {
    try {
      CudaSession gpu(model, {n_ctx, 1, 16});
      ADD_FAILURE() << "a KV cache of " << n_ctx << " positions was taken";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("GiB; the GPU has"), std::string::npos) << e.what();
    }
  }
  CudaSession ok(model, {256, 1, 16});  // and the GPU is usable after
  EXPECT_EQ(ok.n_ctx(), 256);
}

// A prompt (all logits), then 32 decode steps. These random models are chaotic: the CPU's own
// logits move by 2 % (relative L2) when its KV cache is float instead of half, so the GPU's are
// held to 5 % (an indexing or layout error gives order 1), and its greedy token must be the CPU's
// wherever the CPU's top two logits are apart by more than 1 % of the largest logit's size; both
// continue with the CPU's token (teacher forcing), so one near-tie does not end the comparison.
TEST_P(WholeModel, LogitsAndGreedyTokensMatchTheCpuSession) {
  SKIP_WITHOUT_GPU();
  const ModelCase mc = GetParam();
  const ModelConfig cfg = mc.variant ? variant_config() : synthetic_config("tiny");
  const Model model = make_synthetic_model(cfg, 5, mc.embd);
  const int64_t V = cfg.n_vocab;
  Session cpu(model, {256, 2});
  CudaSession gpu(model, {256, 1, 16});  // n_ubatch 16: the 40-token prompt takes three steps
  std::vector<int32_t> prompt(40);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>((i * 7919 + 13) % V);
  const float* wl = cpu.forward(prompt, true);
  const std::vector<float> want_all(wl, wl + prompt.size() * V);
  const float* gl = gpu.forward(prompt, true);
  const double prompt_err = rel_err(gl, want_all.data(), want_all.size());
  EXPECT_LT(prompt_err, 5e-2);
  std::vector<float> cv(want_all.end() - V, want_all.end()),
      gv(gl + (prompt.size() - 1) * V, gl + prompt.size() * V);
  double worst = 0;
  int compared = 0;
  for (int i = 0; i < 32; ++i) {
    const int32_t tc = static_cast<int32_t>(argmax(cv.data(), V)),
                  tg = static_cast<int32_t>(argmax(gv.data(), V));
    const float big =
        *std::max_element(cv.begin(), cv.end(), [](float a, float b) { return std::fabs(a) < std::fabs(b); });
    if (top_margin(cv.data(), V) > 0.01f * std::fabs(big)) {
      EXPECT_EQ(tc, tg) << "step " << i;
      ++compared;
    }
    const float* c = cpu.forward(std::span(&tc, 1));
    cv.assign(c, c + V);
    const float* g = gpu.forward(std::span(&tc, 1));
    gv.assign(g, g + V);
    const double e = rel_err(gv.data(), cv.data(), V);
    worst = std::max(worst, e);
    EXPECT_LT(e, 5e-2) << "step " << i;
  }
  EXPECT_GE(compared, 16);
  std::printf(
      "[   info   ] %s: prompt logits rel. error %.2e, decode worst %.2e, %d of 32 greedy tokens compared\n",
      mc.name, prompt_err, worst, compared);
}

INSTANTIATE_TEST_SUITE_P(
    HeadTypes, WholeModel,
    ::testing::Values(ModelCase{"f16", DType::F16, false}, ModelCase{"bf16", DType::BF16, false},
                      ModelCase{"f32", DType::F32, false}, ModelCase{"q8_0", DType::Q8_0, false},
                      ModelCase{"q6_k", DType::Q6_K, false}, ModelCase{"q4_0", DType::Q4_0, false},
                      ModelCase{"variant", DType::F16, true}),
    [](const auto& info) { return std::string(info.param.name); });

// Several sequences in one decode step equal each sequence decoded alone (same integer products
// per token, own KV slots, the same attention probabilities), and decode_greedy's device argmax
// equals the host's. 12 sequences: the layers take the tensor-core GEMM, an F16/BF16 head takes
// cuBLASLt and a Q8_0/Q6_K head its 32-token kernel, against the 1-token paths.
class BatchedDecode : public ::testing::TestWithParam<ModelCase> {};

TEST_P(BatchedDecode, EqualsSingleSequences) {
  SKIP_WITHOUT_GPU();
  const Model model = make_synthetic_model(synthetic_config("tiny"), 9, GetParam().embd);
  const int64_t V = model.cfg.n_vocab;
  constexpr int B = 12;
  CudaSession batched(model, {128, B, 32});
  std::vector<std::vector<float>> alone(B);
  std::vector<int32_t> toks(B), seqs(B);
  for (int b = 0; b < B; ++b) {
    std::vector<int32_t> prompt(static_cast<size_t>(3 + 4 * b));
    for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>((i * 31 + 17 * b + 1) % V);
    batched.forward_seq(b, prompt);
    CudaSession one(model, {128, 1, 32});
    one.forward(prompt);
    toks[static_cast<size_t>(b)] = static_cast<int32_t>(100 + b);
    const float* l = one.forward(std::span(&toks[static_cast<size_t>(b)], 1));
    alone[static_cast<size_t>(b)].assign(l, l + V);
    seqs[static_cast<size_t>(b)] = b;
  }
  const float* l = batched.decode(toks, seqs);
  for (int b = 0; b < B; ++b)
    EXPECT_LT(rel_err(l + b * V, alone[static_cast<size_t>(b)].data(), V), 1e-4) << "sequence " << b;
  // Next steps: graph replays (the first ran eagerly); greedy on the device equals the host's.
  const std::vector<float> step1(l, l + B * V);
  std::vector<int32_t> next(B), want(B);
  for (int b = 0; b < B; ++b)
    toks[static_cast<size_t>(b)] = static_cast<int32_t>(argmax(step1.data() + b * V, V));
  const float* l2 = batched.decode(toks, seqs);
  for (int b = 0; b < B; ++b) want[static_cast<size_t>(b)] = static_cast<int32_t>(argmax(l2 + b * V, V));
  batched.truncate_seq(0, batched.n_past(0));  // (no-op: keeps the API exercised)
  for (int b = 0; b < B; ++b) batched.truncate_seq(b, batched.n_past(b) - 1);
  batched.decode_greedy(toks, seqs, next.data());
  EXPECT_EQ(next, want);
  for (int b = 0; b < B; ++b) EXPECT_EQ(batched.n_past(b), 3 + 4 * b + 2);
}

INSTANTIATE_TEST_SUITE_P(HeadTypes, BatchedDecode,
                         ::testing::Values(ModelCase{"f16", DType::F16, false},
                                           ModelCase{"bf16", DType::BF16, false},
                                           ModelCase{"q8_0", DType::Q8_0, false},
                                           ModelCase{"q6_k", DType::Q6_K, false}),
                         [](const auto& info) { return std::string(info.param.name); });

// FFN rows of more than 48 KB of floats (8B-class models have 14,336 values and more): the norm
// kernels opt in to the larger shared memory. A prompt through both product routes gives the same
// bits; its logits and four decode steps (decode_gemv) follow the CPU Session's within the 5 % of
// WholeModel: this random model is as chaotic (one ulp more on every ffn_sub_norm weight moves the
// CPU's own prompt logits by 1.5e-3 at n_ff 12,288, on every attn_norm weight by 4.6e-3), and the
// GPU sums the norms' squares in another order (8e-3 on an H100), where a wrong layout or a row
// cut short gives order 1. n_ff 1,024 is the same prompt on a row under 48 KB.
TEST(CudaInfer, FfnRowsWiderThan48KbMatchTheCpu) {
  SKIP_WITHOUT_GPU();
  // 12,288: 48 KB exactly, over the default limit with the kernel's static shared memory; 13,000:
  // over it; 13,001: the one-float path (not a multiple of 4).
  for (const int64_t n_ff : {int64_t{1024}, int64_t{12288}, int64_t{13000}, int64_t{13001}}) {
    SCOPED_TRACE("n_ff " + std::to_string(n_ff));
    ModelConfig cfg = synthetic_config("tiny");
    cfg.n_ff = n_ff;
    cfg.n_layer = 2;
    const Model model = make_synthetic_model(cfg, 12, DType::F32);
    const int64_t V = cfg.n_vocab;
    std::vector<int32_t> prompt(150);  // one chunk of 150: cuBLASLt, the gated norm from sums
    for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>((i * 389 + 17) % V);
    std::vector<float> g;
    const std::unique_ptr<CudaSession> gpu = prompt_through_both_routes(model, {256, 1, 256}, prompt, g);
    Session cpu(model, {256, 2});
    const float* c = cpu.forward(prompt, true);
    const std::vector<float> cl(c, c + prompt.size() * V);
    const double prompt_err = rel_err(g.data(), cl.data(), cl.size());
    EXPECT_LT(prompt_err, 5e-2);
    double worst = 0;
    int32_t tok = static_cast<int32_t>(argmax(cl.data() + (prompt.size() - 1) * V, V));
    for (int i = 0; i < 4; ++i) {
      const float* cd = cpu.forward(std::span(&tok, 1));
      const std::vector<float> cv(cd, cd + V);
      const float* gd = gpu->forward(std::span(&tok, 1));
      worst = std::max(worst, rel_err(gd, cv.data(), V));
      EXPECT_LT(rel_err(gd, cv.data(), V), 5e-2) << "step " << i;
      tok = static_cast<int32_t>(argmax(cv.data(), V));
    }
    std::printf("[   info   ] n_ff %lld: prompt logits rel. error %.2e, decode worst %.2e\n",
                static_cast<long long>(n_ff), prompt_err, worst);
  }
}

// The fused decode kernel (infer_decode.h) against the per-op kernels, on the same session
// shapes: decode steps of 5, 1 and 2 sequences (each in its own slot, at different depths) give
// the same logits within float rounding (the integer products are exact in both; the attention's
// key ranges differ, so its partial sums are added in another order) and the same greedy tokens.
// The longest sequence passes 256 keys, where the fused kernel splits each head's keys in ranges.
// Shapes: the tiny model; SiLU, interleaved RoPE, no sub-norms and 4 query heads per KV head of
// 32 values; and an odd one (FFN rows padded, RoPE on half of each head, one query head per KV
// head) with more blocks than rows in some matrices.
struct FusedCase {
  const char* name;
  int variant;  // 0 tiny, 1 variant, 2 odd; 3 – 6: tiny with one of variant's choices each
};
class FusedDecode : public ::testing::TestWithParam<FusedCase> {};

TEST_P(FusedDecode, EqualsThePerOpKernels) {
  SKIP_WITHOUT_GPU();
  ModelConfig cfg = GetParam().variant == 1 ? variant_config() : synthetic_config("tiny");
  if (GetParam().variant == 2) {
    cfg.n_embd = 192;
    cfg.n_head = 3;
    cfg.n_head_kv = 3;
    cfg.head_dim = 64;
    cfg.rope_dim = 32;
    cfg.n_ff = 328;
    cfg.n_layer = 3;
  }
  // variant's choices one at a time, so that a difference it shows is pinned to one of them.
  if (GetParam().variant == 3) cfg.act = FfnAct::kSilu;
  if (GetParam().variant == 4) cfg.rope = RopeStyle::kNorm;
  if (GetParam().variant == 5) cfg.sub_norms = false;
  if (GetParam().variant == 6) {
    cfg.n_head = 8;
    cfg.n_head_kv = 2;
    cfg.head_dim = 32;
    cfg.rope_dim = 32;
  }
  const Model model = make_synthetic_model(cfg, 21, DType::F16);
  const int64_t V = cfg.n_vocab;
  constexpr int B = 5;
  CudaSessionOptions on{512, B, 16}, off = on;
  on.fused_decode = true;
  CudaSession fused(model, on), plain(model, off);
  EXPECT_FALSE(plain.fused_decode_ok(1));
  for (int m = 1; m <= B; ++m) ASSERT_TRUE(fused.fused_decode_ok(m)) << m;
  for (int b = 0; b < B; ++b) {
    std::vector<int32_t> prompt(static_cast<size_t>(5 + 70 * b));  // over 256 keys: several ranges
    for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>((i * 131 + 7 * b + 3) % V);
    fused.forward_seq(b, prompt);
    plain.forward_seq(b, prompt);
  }
  std::vector<int32_t> tok(B);
  for (int b = 0; b < B; ++b) tok[static_cast<size_t>(b)] = static_cast<int32_t>(11 + 5 * b);
  // Sequence 3 (215 + 8 keys) never shares a step with sequence 4 (285 and more): the fused
  // kernel splits every token of a step into the ranges of the step's longest sequence, so a
  // sequence that shared one would carry keys and values from split sums into later steps, and
  // the one-range bound below holds only for caches written without ranges.
  const std::vector<std::vector<int32_t>> groups = {{0, 1, 2, 4}, {3}, {4, 0}};
  double worst = 0, worst_split = 0;
  for (int step = 0; step < 24; ++step) {
    const std::vector<int32_t>& seqs = groups[static_cast<size_t>(step % 3)];
    std::vector<int32_t> in;
    for (int32_t q : seqs) in.push_back(tok[static_cast<size_t>(q)]);
    const float* lf = fused.decode(in, seqs);
    const std::vector<float> got(lf, lf + seqs.size() * V);
    const float* lp = plain.decode(in, seqs);
    int64_t longest = 0;  // the fused kernel's key ranges follow the step's longest sequence
    for (int32_t q : seqs) longest = std::max(longest, fused.n_past(q));
    for (size_t i = 0; i < seqs.size(); ++i) {
      const double e = rel_err(got.data() + i * V, lp + i * V, V);
      // Up to 256 keys both paths add each head's weighted values in key order, in one range:
      // only rounding (the RMS sums' order) differs. Past that the fused kernel adds two ranges'
      // partial sums where the per-op kernels take one; a flipped activation code then changes
      // the logits of these chaotic random models by up to about 1 % (WholeModel's reasoning).
      const bool one_range = longest <= 256;
      (one_range ? worst : worst_split) = std::max(one_range ? worst : worst_split, e);
      EXPECT_LT(e, one_range ? 1e-4 : 5e-2) << "step " << step << " sequence " << seqs[i];
      const float* want = lp + i * V;
      if (top_margin(want, V) > 1e-2f * std::fabs(want[argmax(want, V)])) {
        EXPECT_EQ(argmax(got.data() + i * V, V), argmax(want, V)) << "step " << step;
      }
      tok[static_cast<size_t>(seqs[i])] = static_cast<int32_t>(argmax(want, V));
    }
  }
  for (int b = 0; b < B; ++b) EXPECT_EQ(fused.n_past(b), plain.n_past(b));
  std::printf(
      "[   info   ] %s: fused against per-op decode, worst logits rel. error %.2e (one key range), %.2e "
      "(two)\n",
      GetParam().name, worst, worst_split);
}

INSTANTIATE_TEST_SUITE_P(Shapes, FusedDecode,
                         ::testing::Values(FusedCase{"tiny", 0}, FusedCase{"variant", 1}, FusedCase{"odd", 2},
                                           FusedCase{"silu", 3}, FusedCase{"norm_rope", 4},
                                           FusedCase{"no_sub_norms", 5}, FusedCase{"gqa4_hd32", 6}),
                         [](const auto& info) { return std::string(info.param.name); });

// decode_gemv (the default for decode steps of up to 8 sequences) against the separate norm,
// RoPE, attention and product kernels, with a context long enough that the attention splits each
// head's keys into several ranges (whose partial outputs decode_gemv adds as it reads o's input)
// and sequences past 1,024 keys. Both paths compute the same integer products; only the RMS sum's
// order differs (a rare flipped activation code moves these chaotic random models' logits by up
// to about 1 %), so most steps agree to float rounding and none by less than 5 %.
struct GemvCase {
  const char* name;
  bool variant;
  int64_t n_ctx;
};
class DecodeGemvSession : public ::testing::TestWithParam<GemvCase> {};

TEST_P(DecodeGemvSession, EqualsTheSeparateKernels) {
  SKIP_WITHOUT_GPU();
  const GemvCase gc = GetParam();
  const ModelConfig cfg = gc.variant ? variant_config() : synthetic_config("tiny");
  const Model model = make_synthetic_model(cfg, 33, DType::F16);
  const int64_t V = cfg.n_vocab;
  constexpr int B = 6;
  CudaSessionOptions on{gc.n_ctx, B, 256}, off = on;
  on.decode_gemv_max = 8;  // every step of this test, not only the default's single-sequence ones
  off.decode_gemv_max = 0;
  CudaSession gemv(model, on), sep(model, off);
  ASSERT_TRUE(gemv.decode_gemv_ok(B));
  ASSERT_FALSE(sep.decode_gemv_ok(1));
  const int64_t longest = std::min<int64_t>(gc.n_ctx - 40, 1100);
  for (int b = 0; b < B; ++b) {
    std::vector<int32_t> prompt(static_cast<size_t>(b == 0 ? longest : 3 + (gc.n_ctx / 4 - 10) / 2 * b / 2));
    for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>((i * 193 + 11 * b + 5) % V);
    gemv.forward_seq(b, prompt);
    sep.forward_seq(b, prompt);
  }
  std::vector<int32_t> tok(B);
  for (int b = 0; b < B; ++b) tok[static_cast<size_t>(b)] = static_cast<int32_t>(7 + 3 * b);
  const std::vector<std::vector<int32_t>> groups = {{0, 1, 2, 3, 4, 5}, {0}, {5, 2, 0}, {1, 4}};
  std::vector<double> errs;
  for (int step = 0; step < 20; ++step) {
    const std::vector<int32_t>& seqs = groups[static_cast<size_t>(step % groups.size())];
    std::vector<int32_t> in;
    for (int32_t q : seqs) in.push_back(tok[static_cast<size_t>(q)]);
    const float* lg = gemv.decode(in, seqs);
    const std::vector<float> got(lg, lg + seqs.size() * V);
    const float* lp = sep.decode(in, seqs);
    for (size_t i = 0; i < seqs.size(); ++i) {
      const float* want = lp + i * V;
      const double e = rel_err(got.data() + i * V, want, V);
      errs.push_back(e);
      EXPECT_LT(e, 5e-2) << "step " << step << " sequence " << seqs[i];
      if (top_margin(want, V) > 1e-2f * std::fabs(want[argmax(want, V)])) {
        EXPECT_EQ(argmax(got.data() + i * V, V), argmax(want, V)) << "step " << step;
      }
      tok[static_cast<size_t>(seqs[i])] = static_cast<int32_t>(argmax(want, V));
    }
  }
  for (int b = 0; b < B; ++b) EXPECT_EQ(gemv.n_past(b), sep.n_past(b));
  std::sort(errs.begin(), errs.end());
  const double median = errs[errs.size() / 2];
  EXPECT_LT(median, 1e-3);  // an indexing error is of order 1 everywhere, not only at a flipped code
  std::printf(
      "[   info   ] %s, n_ctx %lld: decode_gemv against separate kernels, median rel. error %.2e, worst "
      "%.2e\n",
      gc.name, static_cast<long long>(gc.n_ctx), median, errs.back());
}

INSTANTIATE_TEST_SUITE_P(Contexts, DecodeGemvSession,
                         ::testing::Values(GemvCase{"tiny", false, 512}, GemvCase{"tiny", false, 4096},
                                           GemvCase{"variant", true, 2048}),
                         [](const auto& info) {
                           return std::string(info.param.name) + "_" + std::to_string(info.param.n_ctx);
                         });

}  // namespace
}  // namespace bitnet::cuda
