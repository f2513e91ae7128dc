// decode_gemv (infer_decode_gemv.cu) against a CPU model of what it computes: the RMSNorm with the
// kernel's own order of the double sum of squares, the spec's quantizer, the scalar ternary
// product and the CPU's epilogues (residual add, relu² gating, RoPE + KV store). Outputs are
// compared bit for bit, RoPE's within the rounding of its angles (the GPU's double sincos).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <random>
#include <vector>

#include "cuda/buffer.h"
#include "cuda/infer_kernels.h"
#include "cuda/infer_weights.h"
#include "cuda_test_util.h"
#include "ops/layer_ops.h"
#include "quant/act_quant.h"
#include "quant/gemm.h"
#include "quant/native.h"

namespace bitnet::cuda {
namespace {

template <typename T>
Buffer<T> on_device(const std::vector<T>& v) {
  Buffer<T> b;
  b.upload(v);
  return b;
}

// The kernel's sum of squares: 256 partials (partial v adds the values v, v + 256, ... in
// order), 32 lanes adding 8 partials each in order, then the xor butterfly; lane 0's result.
double kernel_sum_squares(const float* x, int64_t k) {
  double part[256] = {};
  for (int v = 0; v < 256; ++v)
    for (int64_t i = v; i < k; i += 256) part[v] += static_cast<double>(x[i]) * x[i];
  double lanes[32];
  for (int l = 0; l < 32; ++l) {
    double s = 0;
    for (int j = 0; j < 8; ++j) s += part[l * 8 + j];
    lanes[l] = s;
  }
  for (int o = 16; o > 0; o >>= 1) {
    double next[32];
    for (int l = 0; l < 32; ++l) next[l] = lanes[l] + lanes[l ^ o];
    std::copy(next, next + 32, lanes);
  }
  return lanes[0];
}

struct Weights {
  TernaryMatrix w;
  Buffer<uint32_t> words;
  Buffer<float> scales;
  infer::DevTernary dev() const { return {words.data(), scales.data(), w.n, w.k, w.k_pad}; }
};

Weights make_weights(int64_t n, int64_t k, std::mt19937& rng) {
  std::vector<int8_t> wv(static_cast<size_t>(n * k));
  for (auto& x : wv) x = static_cast<int8_t>(static_cast<int>(rng() % 3) - 1);
  std::vector<float> sc(static_cast<size_t>(n));
  for (auto& s : sc) s = 0.01f + static_cast<float>(rng() % 1000) * 1e-4f;
  Weights W{pack_native(wv.data(), n, k, sc.data()), {}, {}};
  W.words.upload(native_to_gpu_words(W.w));
  W.scales.upload(W.w.row_scale(), static_cast<size_t>(n));
  return W;
}

// The product's float outputs [m][n] on the CPU, from m input rows of k floats.
std::vector<float> cpu_product(const TernaryMatrix& w, const std::vector<float>& in, int m, const float* norm,
                               float eps) {
  const int64_t k = w.k, k_pad = w.k_pad, n = w.n;
  std::vector<int8_t> q(static_cast<size_t>(m * k_pad), 0);
  std::vector<float> scale(static_cast<size_t>(m)), dq(static_cast<size_t>(m));
  std::vector<int32_t> sum(static_cast<size_t>(m));
  for (int t = 0; t < m; ++t) {
    std::vector<float> h(in.begin() + t * k, in.begin() + (t + 1) * k);
    if (norm) {
      const float mean = static_cast<float>(kernel_sum_squares(h.data(), k) / static_cast<double>(k));
      const float s = 1.0f / std::sqrt(mean + eps);
      for (int64_t i = 0; i < k; ++i) h[static_cast<size_t>(i)] = h[static_cast<size_t>(i)] * s * norm[i];
    }
    quantize_act_row_ref(h.data(), k, k_pad, q.data() + t * k_pad, &scale[static_cast<size_t>(t)],
                         &dq[static_cast<size_t>(t)], &sum[static_cast<size_t>(t)]);
  }
  QuantizedActs a;
  a.m = m;
  a.k = k;
  a.k_pad = k_pad;
  a.q = q.data();
  a.scale = scale.data();
  a.dq = dq.data();
  a.sum = sum.data();
  std::vector<float> y(static_cast<size_t>(m * n));
  ternary_gemm_ref(w, a, 0, n, {nullptr, 0, y.data(), n});
  return y;
}

std::vector<float> random_rows(int m, int64_t k, std::mt19937& rng, float outlier) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(m * k));
  for (auto& x : v) x = nd(rng) * 3.0f;
  v[static_cast<size_t>(k / 2)] = outlier;  // token 0: everything else quantizes near zero
  return v;
}

// kAdd (with and without a norm) and kStore, on odd row counts (a last block of fewer than 16
// rows), inputs from 1 to 6,912 wide, 1 – 8 tokens.
TEST(CudaDecodeGemv, AddAndStoreMatchTheCpu) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(11);
  for (const int64_t k : {int64_t{1}, int64_t{100}, int64_t{2560}, int64_t{6912}})
    for (const int64_t n : {int64_t{37}, int64_t{256}, int64_t{40000}})  // 40,000: blocks take several groups
      for (const int m : {1, 2, 3, 5, 8})
        for (const bool with_norm : {true, false}) {
          if (n > 256 && k > 100) continue;  // the CPU reference's time
          SCOPED_TRACE("k " + std::to_string(k) + " n " + std::to_string(n) + " m " + std::to_string(m) +
                       (with_norm ? " norm" : " no norm"));
          ASSERT_TRUE(infer::decode_gemv_supported(m, k));
          Weights W = make_weights(n, k, rng);
          const std::vector<float> in = random_rows(m, k, rng, 1e4f);
          std::vector<float> norm(static_cast<size_t>(k));
          for (auto& v : norm) v = 0.5f + static_cast<float>(rng() % 1000) * 1e-3f;
          const float* nrm = with_norm ? norm.data() : nullptr;
          const std::vector<float> prod = cpu_product(W.w, in, m, nrm, 1e-5f);
          std::vector<float> y0(static_cast<size_t>(m * n));
          for (size_t i = 0; i < y0.size(); ++i) y0[i] = static_cast<float>(i % 13) * 0.5f - 3.0f;
          std::vector<float> want_add = y0;
          for (size_t i = 0; i < y0.size(); ++i) want_add[i] = y0[i] + prod[i];

          Buffer<float> din = on_device(in), dnorm = on_device(norm), ya = on_device(y0), ys = on_device(y0);
          const infer::DecodeGemvIn a{din.data(), k, 1, 0, 0, with_norm ? dnorm.data() : nullptr, 1e-5f};
          infer::DecodeGemvOut add;
          add.kind = infer::DecodeEpilogue::kAdd;
          add.y = ya.data();
          add.ldy = n;
          infer::decode_gemv(W.dev(), a, m, add, nullptr);
          infer::DecodeGemvOut st = add;
          st.kind = infer::DecodeEpilogue::kStore;
          st.y = ys.data();
          infer::decode_gemv(W.dev(), a, m, st, nullptr);
          BN_CUDA(cudaDeviceSynchronize());
          EXPECT_EQ(ya.download(), want_add);
          EXPECT_EQ(ys.download(), prod);
        }
}

// The input as the attention's partial outputs (ranges added in order), as attention_parts
// leaves them: 3 ranges of 4 heads of 32.
TEST(CudaDecodeGemv, AddsTheAttentionParts) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(12);
  const int64_t heads = 4, hd = 32, k = heads * hd, n = 40;
  const int splits = 3;
  for (const int m : {1, 4, 7}) {
    Weights W = make_weights(n, k, rng);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> parts(static_cast<size_t>(m * heads * splits * hd));
    for (auto& v : parts) v = nd(rng);
    std::vector<float> in(static_cast<size_t>(m * k));
    for (int t = 0; t < m; ++t)
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t d = 0; d < hd; ++d) {
          float o = 0;
          for (int s = 0; s < splits; ++s)
            o += parts[static_cast<size_t>(((t * heads + h) * splits + s) * hd + d)];
          in[static_cast<size_t>(t * k + h * hd + d)] = o;
        }
    std::vector<float> norm(static_cast<size_t>(k), 1.25f);
    const std::vector<float> want = cpu_product(W.w, in, m, norm.data(), 1e-6f);
    Buffer<float> dp = on_device(parts), dnorm = on_device(norm), y(static_cast<size_t>(m * n));
    infer::DecodeGemvOut st;
    st.kind = infer::DecodeEpilogue::kStore;
    st.y = y.data();
    st.ldy = n;
    infer::decode_gemv(W.dev(), {dp.data(), 0, splits, heads, hd, dnorm.data(), 1e-6f}, m, st, nullptr);
    BN_CUDA(cudaDeviceSynchronize());
    EXPECT_EQ(y.download(), want) << "m " << m;
  }
}

// kGated: rows i and ff + i of a gate|up matrix give relu(gate)² · up in column i (ff odd).
// ff 20,001: a block takes several groups, so the pair slots are used again (a race there gave
// wide FFNs' decode logits 13 - 19 % off the CPU's when compute-sanitizer's synccheck slowed warps).
TEST(CudaDecodeGemv, GatedPairsMatchTheCpu) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(13);
  for (const int64_t ff : {int64_t{37}, int64_t{200}, int64_t{20001}})
    for (const int m : {1, 3, 8}) {
      const int64_t k = 300, n = 2 * ff;
      Weights W = make_weights(n, k, rng);
      const std::vector<float> in = random_rows(m, k, rng, 50.0f);
      std::vector<float> norm(static_cast<size_t>(k));
      for (auto& v : norm) v = 0.5f + static_cast<float>(rng() % 1000) * 1e-3f;
      const std::vector<float> prod = cpu_product(W.w, in, m, norm.data(), 1e-5f);
      std::vector<float> want(static_cast<size_t>(m * ff));
      for (int t = 0; t < m; ++t)
        gated_act(prod.data() + t * n, prod.data() + t * n + ff, ff, FfnAct::kRelu2, want.data() + t * ff);
      Buffer<float> din = on_device(in), dnorm = on_device(norm), y(want.size());
      infer::DecodeGemvOut g;
      g.kind = infer::DecodeEpilogue::kGated;
      g.y = y.data();
      g.ldy = ff;
      g.ff = ff;
      g.act = 0;
      infer::decode_gemv(W.dev(), {din.data(), k, 1, 0, 0, dnorm.data(), 1e-5f}, m, g, nullptr);
      BN_CUDA(cudaDeviceSynchronize());
      EXPECT_EQ(y.download(), want) << "ff " << ff << " m " << m;
    }
}

// kRopeKv: queries and keys rotated as the CPU's rope_apply (NEOX and interleaved, whole and
// partial rotation), keys and values in each token's cache slot at its position.
TEST(CudaDecodeGemv, RopeAndKvStoreMatchTheCpu) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(14);
  const int64_t n_head = 4, n_head_kv = 2, hd = 32, qd = n_head * hd, kvd = n_head_kv * hd, n = qd + 2 * kvd;
  const int64_t k = 96, n_layer = 2, n_ctx = 1200, il = 1;
  const float theta = 10000.0f;
  for (const bool neox : {true, false})
    for (const int64_t rope_dim : {hd, hd / 2})
      for (const int m : {1, 3, 8}) {
        SCOPED_TRACE(std::string(neox ? "neox" : "norm") + " rope_dim " + std::to_string(rope_dim) + " m " +
                     std::to_string(m));
        Weights W = make_weights(n, k, rng);
        const std::vector<float> in = random_rows(m, k, rng, 20.0f);
        std::vector<float> norm(static_cast<size_t>(k), 0.75f);
        std::vector<float> want = cpu_product(W.w, in, m, norm.data(), 1e-5f);
        std::vector<int32_t> pos(static_cast<size_t>(m)), slot(static_cast<size_t>(m));
        for (int t = 0; t < m; ++t) {
          pos[static_cast<size_t>(t)] = static_cast<int32_t>((t * 389 + 7) % n_ctx);
          slot[static_cast<size_t>(t)] = m - 1 - t;
          std::vector<float> cs(static_cast<size_t>(rope_dim / 2)), sn(cs.size());
          rope_angles(pos[static_cast<size_t>(t)], rope_dim, theta, cs.data(), sn.data());
          rope_apply(want.data() + t * n, n_head + n_head_kv, hd, rope_dim, cs.data(), sn.data(),
                     neox ? RopeStyle::kNeox : RopeStyle::kNorm);
        }
        std::vector<double> inv(static_cast<size_t>(rope_dim / 2));
        for (int64_t i = 0; i < rope_dim / 2; ++i)
          inv[static_cast<size_t>(i)] = std::pow(
              static_cast<double>(theta), -2.0 * static_cast<double>(i) / static_cast<double>(rope_dim));
        Buffer<float> din = on_device(in), dnorm = on_device(norm), y(want.size());
        Buffer<int32_t> dpos = on_device(pos), dslot = on_device(slot);
        Buffer<double> dinv = on_device(inv);
        const size_t cache = static_cast<size_t>(m * n_layer * n_head_kv * n_ctx * hd);
        Buffer<__half> kc(cache), vc(cache);
        infer::DecodeGemvOut r;
        r.kind = infer::DecodeEpilogue::kRopeKv;
        r.y = y.data();
        r.ldy = n;
        r.pos = dpos.data();
        r.slot = dslot.data();
        r.inv_freq = dinv.data();
        r.n_head = n_head;
        r.rope_dim = rope_dim;
        r.il = il;
        r.neox = neox;
        r.kv = {kc.data(), vc.data(), n_layer, n_head_kv, n_ctx, hd};
        infer::decode_gemv(W.dev(), {din.data(), k, 1, 0, 0, dnorm.data(), 1e-5f}, m, r, nullptr);
        BN_CUDA(cudaDeviceSynchronize());
        const std::vector<float> got = y.download();
        const std::vector<__half> gk = kc.download(), gv = vc.download();
        for (size_t i = 0; i < want.size(); ++i)
          ASSERT_NEAR(got[i], want[i], 2e-6f * (1.0f + std::fabs(want[i]))) << "output " << i;
        for (int t = 0; t < m; ++t)
          for (int64_t j = 0; j < kvd; ++j) {
            const int64_t at =
                r.kv.at(slot[static_cast<size_t>(t)], il, j / hd, pos[static_cast<size_t>(t)]) + j % hd;
            // The cache holds the kernel's own outputs rounded to half.
            EXPECT_EQ(__half2float(gk[static_cast<size_t>(at)]),
                      __half2float(__float2half_rn(got[static_cast<size_t>(t * n + qd + j)])));
            EXPECT_EQ(__half2float(gv[static_cast<size_t>(at)]),
                      __half2float(__float2half_rn(got[static_cast<size_t>(t * n + qd + kvd + j)])));
          }
      }
}


// Lab, not a test: microseconds per launch of each decode kernel on the 2B4T shapes, as a chain
// of 64 launches of one kernel in a CUDA graph (each waits for the one before, as a decode step's
// kernels do). Run with --gtest_also_run_disabled_tests.
TEST(CudaDecodeTiming, DISABLED_KernelChains) {
  SKIP_WITHOUT_GPU();
  cudaStream_t s = nullptr;
  BN_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cudaEvent_t e0, e1;
  BN_CUDA(cudaEventCreate(&e0));
  BN_CUDA(cudaEventCreate(&e1));
  auto chain = [&](const char* name, const std::function<void()>& launch_one) {
    constexpr int kLaunches = 64, kReps = 20;
    launch_one();
    BN_CUDA(cudaStreamSynchronize(s));
    cudaGraph_t g = nullptr;
    BN_CUDA(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < kLaunches; ++i) launch_one();
    BN_CUDA(cudaStreamEndCapture(s, &g));
    cudaGraphExec_t exec = nullptr;
    BN_CUDA(cudaGraphInstantiate(&exec, g, 0));
    std::vector<float> per;
    for (int r = 0; r < kReps; ++r) {
      BN_CUDA(cudaEventRecord(e0, s));
      BN_CUDA(cudaGraphLaunch(exec, s));
      BN_CUDA(cudaEventRecord(e1, s));
      BN_CUDA(cudaEventSynchronize(e1));
      float ms = 0;
      BN_CUDA(cudaEventElapsedTime(&ms, e0, e1));
      per.push_back(1e3f * ms / kLaunches);
    }
    std::sort(per.begin(), per.end());
    std::printf("[   time   ] %-40s %6.2f us per launch (median of %d graphs of %d)\n", name, per[per.size() / 2],
                kReps, kLaunches);
    (void)cudaGraphExecDestroy(exec);
    (void)cudaGraphDestroy(g);
  };
  std::mt19937 rng(5);
  const int64_t d = 2560;
  const std::vector<float> xin = random_rows(8, 6912, rng, 30.0f);
  std::vector<float> norm(6912);
  for (auto& v : norm) v = 0.5f + static_cast<float>(rng() % 1000) * 1e-3f;
  Buffer<float> din = on_device(xin), dnorm = on_device(norm), y(static_cast<size_t>(8 * 13824));
  Buffer<int8_t> q(static_cast<size_t>(8 * 6912));
  Buffer<float> dq(8);
  chain("norm_quant m1 k64", [&] { infer::norm_quant(din.data(), 64, 1, dnorm.data(), 1e-5f, false, 0, {q.data(), dq.data(), 64, 64}, s); });
  chain("norm_quant m1 k2560", [&] { infer::norm_quant(din.data(), d, 1, dnorm.data(), 1e-5f, false, 0, {q.data(), dq.data(), d, d}, s); });
  const struct {
    const char* name;
    int64_t n, k;
  } shapes[] = {{"qkv 3840x2560", 3840, 2560}, {"o 2560x2560", 2560, 2560}, {"gate|up 13824x2560", 13824, 2560},
                {"down 2560x6912", 2560, 6912}};
  for (const auto& sh : shapes) {
    // Copies of the matrix, launch i reading copy i mod copies: together beyond the L2 cache, so
    // the weights come from HBM as in a decode step.
    Weights W = make_weights(sh.n, sh.k, rng);
    const size_t words = W.words.size();
    const int copies = static_cast<int>(std::max<size_t>(2, (size_t{160} << 20) / (4 * words)));
    Buffer<uint32_t> many(words * static_cast<size_t>(copies));
    for (int c = 0; c < copies; ++c)
      BN_CUDA(cudaMemcpy(many.data() + c * words, W.words.data(), 4 * words, cudaMemcpyDeviceToDevice));
    int next = 0;
    auto dev = [&] {
      infer::DevTernary t = W.dev();
      t.w = many.data() + static_cast<size_t>(next++ % copies) * words;
      return t;
    };
    const infer::DevActs acts{q.data(), dq.data(), sh.k, W.w.k_pad};
    infer::norm_quant(din.data(), sh.k, 8, dnorm.data(), 1e-5f, false, 0, acts, s);
    chain((std::string("ternary_gemv m1 ") + sh.name).c_str(),
          [&] { infer::ternary_gemv(dev(), acts, 1, y.data(), sh.n, false, s); });
    infer::DecodeGemvOut st;
    st.kind = infer::DecodeEpilogue::kStore;
    st.y = y.data();
    st.ldy = sh.n;
    for (int m : {1, 8})
      chain((std::string("decode_gemv m") + std::to_string(m) + " " + sh.name).c_str(), [&] {
        infer::decode_gemv(dev(), {din.data(), sh.k, 1, 0, 0, dnorm.data(), 1e-5f}, m, st, s);
      });
    // Where block 0's time goes (globaltimer, mean over 64 chained launches after a warm-up).
    {
      constexpr int kRuns = 65;
      Buffer<unsigned long long> trace(1 + 5 * kRuns);
      trace.fill_bytes(0, s);
      infer::DecodeGemvOut tr = st;
      tr.trace = trace.data();
      cudaGraph_t g = nullptr;
      BN_CUDA(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
      for (int i = 0; i < kRuns; ++i)
        infer::decode_gemv(dev(), {din.data(), sh.k, 1, 0, 0, dnorm.data(), 1e-5f}, 1, tr, s);
      BN_CUDA(cudaStreamEndCapture(s, &g));
      cudaGraphExec_t exec = nullptr;
      BN_CUDA(cudaGraphInstantiate(&exec, g, 0));
      BN_CUDA(cudaGraphLaunch(exec, s));
      BN_CUDA(cudaStreamSynchronize(s));
      (void)cudaGraphExecDestroy(exec);
      (void)cudaGraphDestroy(g);
      const std::vector<unsigned long long> t = trace.download();
      double part[5] = {}, gap = 0;
      for (int i = 1; i < kRuns; ++i) {
        const unsigned long long* r = t.data() + 1 + 5 * i;
        for (int p = 1; p < 5; ++p) part[p] += static_cast<double>(r[p] - r[p - 1]);
        gap += static_cast<double>(r[0] - (r - 5)[4]);
      }
      const double n = kRuns - 1;
      std::printf("[   time   ]   block 0, us: end of the last to entry %.2f | loads issued %.2f | wait %.2f | "
                  "norm %.2f | rows %.2f\n",
                  gap / n * 1e-3, part[1] / n * 1e-3, part[2] / n * 1e-3, part[3] / n * 1e-3, part[4] / n * 1e-3);
    }
    if (sh.n == d && sh.k == d)
      chain("decode_gemv m1 o, no norm",
            [&] { infer::decode_gemv(dev(), {din.data(), sh.k, 1, 0, 0, nullptr, 1e-5f}, 1, st, s); });
  }
  (void)cudaEventDestroy(e0);
  (void)cudaEventDestroy(e1);
  BN_CUDA(cudaStreamDestroy(s));
}

}  // namespace
}  // namespace bitnet::cuda
