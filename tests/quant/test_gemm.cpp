// Every ternary GEMM/GEMV variant the CPU supports, forced through the dispatch table
// (BITNET_KERNEL), must reproduce the plain int8 reference's int32 accumulators bit for bit, on
// awkward sizes and extreme activations, single- and multi-threaded.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "core/cpu.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "ops/vec.h"
#include "quant/dispatch.h"
#include "quant/gemm.h"
#include "quant/random_data.h"

namespace bitnet {
namespace {

// BITNET_KERNEL=name for the scope (the variable itself is read once per process).
struct ForceKernel {
  explicit ForceKernel(const char* name) : saved(forced_kernels()) { set_forced_kernels({name, saved.head}); }
  ~ForceKernel() { set_forced_kernels(saved); }
  ForcedKernels saved;
};

// acc[m][n] = sum_k x[m][k] * w[n][k] straight from int8 matrices: independent of the native layout.
std::vector<int32_t> plain_reference(const std::vector<int8_t>& w, const QuantizedActs& x, int64_t n) {
  std::vector<int32_t> acc(static_cast<size_t>(x.m * n));
  for (int64_t m = 0; m < x.m; ++m)
    for (int64_t j = 0; j < n; ++j) {
      int32_t s = 0;
      for (int64_t k = 0; k < x.k; ++k) s += w[static_cast<size_t>(j * x.k + k)] * x.q[m * x.k_pad + k];
      acc[static_cast<size_t>(m * n + j)] = s;
    }
  return acc;
}

enum class Fill { kRandom, kAllMin, kAllMax, kAlternating };

QuantizedActs make_acts(Arena& arena, int64_t m, int64_t k, Fill fill, uint64_t seed) {
  auto x = alloc_quantized_acts(arena, m, k);
  if (fill == Fill::kRandom) {
    auto xf = random_floats(static_cast<size_t>(m * k), seed, -2.0f, 2.0f);
    quantize_acts(xf.data(), k, x);
    return x;
  }
  for (int64_t i = 0; i < m; ++i) {
    int32_t sum = 0;
    for (int64_t j = 0; j < x.k_pad; ++j) {
      int8_t v = 0;
      if (j < k) v = fill == Fill::kAllMin ? -128 : fill == Fill::kAllMax ? 127 : (j % 2 ? -128 : 127);
      x.q[i * x.k_pad + j] = v;
      sum += v;
    }
    x.sum[i] = sum;
    x.scale[i] = 1.0f;
    x.dq[i] = 1.0f;
  }
  return x;
}

}  // namespace

class GemmVariantTest : public ::testing::TestWithParam<std::string> {};

TEST_P(GemmVariantTest, BitExactOnAwkwardShapes) {
  const GemmVariant& v = gemm_variant(GetParam());
  if (!v.cpu_ok()) GTEST_SKIP() << GetParam() << " is not supported by this CPU";
  ForceKernel force(v.name);
  ThreadPool pool2(2), pool3(3);
  // 2 - 16: batched decode's register path (5 - 8 tokens over two row blocks at once, fewer over one).
  const int64_t ms[] = {1, 2, 3, 5, 6, 7, 8, 13, 16, 17, 130};
  const int64_t ns[] = {1, 15, 33, 100};
  const int64_t ks[] = {64, 100, 1000, 2593};
  int cases = 0;
  for (int64_t m : ms)
    for (int64_t n : ns)
      for (int64_t k : ks) {
        if (m * n * k > 20'000'000) continue;  // keep the plain reference cheap under sanitizers
        auto wq = random_ternary(static_cast<size_t>(n * k), static_cast<uint64_t>(m * 7 + n * 13 + k));
        auto W = pack_native(wq.data(), n, k, 0.5f);
        Arena arena;
        const Fill fill = cases % 4 == 1   ? Fill::kAllMin
                          : cases % 4 == 2 ? Fill::kAllMax
                          : cases % 4 == 3 ? Fill::kAlternating
                                           : Fill::kRandom;
        auto X = make_acts(arena, m, k, fill, static_cast<uint64_t>(cases));
        const auto want = plain_reference(wq, X, n);
        ThreadPool* pool = cases % 3 == 0 ? nullptr : cases % 3 == 1 ? &pool2 : &pool3;
        std::vector<int32_t> got(want.size(), 0x7eadbeef);  // poisoned: every element must be written
        ternary_gemm(pool, W, X, {got.data(), n, nullptr, 0});
        ASSERT_EQ(got, want) << v.name << " m=" << m << " n=" << n << " k=" << k;
        ++cases;
      }
  EXPECT_GT(cases, 30);
}

TEST_P(GemmVariantTest, BitExactOnLongInputsAndManyRowPanels) {
  // Long enough (m * k_pad > 1 MiB) that blocked kernels split tokens into several chunks, with
  // many K blocks, several row panels per thread, a partial last panel and a partial token tile.
  const GemmVariant& v = gemm_variant(GetParam());
  if (!v.cpu_ok()) GTEST_SKIP() << GetParam() << " is not supported by this CPU";
  ForceKernel force(v.name);
  ThreadPool pool2(2), pool3(3);
  const int64_t m = 403, n = 150, k = 2593;
  auto wq = random_ternary(static_cast<size_t>(n * k), 99);
  auto W = pack_native(wq.data(), n, k, 0.5f);
  Arena arena;
  auto X = make_acts(arena, m, k, Fill::kRandom, 11);
  const auto want = plain_reference(wq, X, n);
  for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &pool2, &pool3}) {
    std::vector<int32_t> got(want.size(), 0x7eadbeef);
    ternary_gemm(pool, W, X, {got.data(), n, nullptr, 0});
    ASSERT_EQ(got, want) << v.name << " threads=" << (pool ? pool->size() : 1);
  }
}

TEST_P(GemmVariantTest, DecodeRowsOfExtremeLengthDoNotOverflow) {
  // A decode row long enough (k > 2^19) that an accumulator holding 64 x a plane's dot product
  // (the AVX-512 GEMV's masked planes) would pass 2^31 with codes of 2 against -128 everywhere,
  // and the segments that prevent it end mid-row.
  const GemmVariant& v = gemm_variant(GetParam());
  if (!v.cpu_ok()) GTEST_SKIP() << GetParam() << " is not supported by this CPU";
  ForceKernel force(v.name);
  const int64_t n = 17, k = 600'001;
  std::vector<int8_t> wq(static_cast<size_t>(n * k), 1);
  for (size_t i = 0; i < wq.size(); i += 7) wq[i] = static_cast<int8_t>(i % 2 ? -1 : 0);
  auto W = pack_native(wq.data(), n, k, 0.5f);
  for (int64_t m : {1, 8})  // the GEMV and batched decode's register path
    for (Fill fill : {Fill::kAllMin, Fill::kAllMax, Fill::kAlternating}) {
      Arena arena;
      auto X = make_acts(arena, m, k, fill, 3);
      const auto want = plain_reference(wq, X, n);
      std::vector<int32_t> got(want.size(), 0x7eadbeef);
      ternary_gemm(nullptr, W, X, {got.data(), n, nullptr, 0});
      ASSERT_EQ(got, want) << v.name << " m=" << m << " fill=" << static_cast<int>(fill);
    }
}

TEST_P(GemmVariantTest, FloatEpilogueWithinDerivedTolerance) {
  // y = float(acc) * fl(row_scale * fl(1/s)): acc is exact in float (|acc| < 2^24) and three
  // roundings of relative size 2^-24 follow, so |y - acc*scale/s| <= 4 * 2^-24 * |acc*scale/s|.
  const GemmVariant& v = gemm_variant(GetParam());
  if (!v.cpu_ok()) GTEST_SKIP() << GetParam() << " is not supported by this CPU";
  ForceKernel force(v.name);
  const int64_t m = 5, n = 37, k = 777;
  auto wq = random_ternary(static_cast<size_t>(n * k), 77);
  std::vector<float> scales(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) scales[static_cast<size_t>(j)] = 0.01f * static_cast<float>(j + 1);
  auto W = pack_native(wq.data(), n, k, scales.data());
  Arena arena;
  auto X = make_acts(arena, m, k, Fill::kRandom, 5);
  std::vector<int32_t> acc(static_cast<size_t>(m * n));
  std::vector<float> y(acc.size(), std::nanf(""));
  ThreadPool pool(2);
  ternary_gemm(&pool, W, X, {acc.data(), n, y.data(), n});
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      const double exact = static_cast<double>(acc[static_cast<size_t>(i * n + j)]) *
                           scales[static_cast<size_t>(j)] / X.scale[i];
      EXPECT_LE(std::fabs(y[static_cast<size_t>(i * n + j)] - exact),
                4 * std::ldexp(1.0, -24) * std::fabs(exact) + 1e-30)
          << v.name << " " << i << "," << j;
    }
}

// GemmOut::add (the forward's residual stream): y = y0 + the stored product, bit for bit, for
// decode (m = 1) and prompts (m = 37: partial token tiles), with partial row blocks (n = 45).
TEST_P(GemmVariantTest, AddingEpilogueEqualsStoreThenAdd) {
  const GemmVariant& v = gemm_variant(GetParam());
  if (!v.cpu_ok()) GTEST_SKIP() << GetParam() << " is not supported by this CPU";
  ForceKernel force(v.name);
  const int64_t n = 45, k = 300;
  auto wq = random_ternary(static_cast<size_t>(n * k), 78);
  auto W = pack_native(wq.data(), n, k, 0.37f);
  for (int64_t m : {1, 37}) {
    Arena arena;
    auto X = make_acts(arena, m, k, Fill::kRandom, 6);
    const int64_t ld = n + 3;  // a wider row: columns past n must stay untouched
    auto y0 = random_floats(static_cast<size_t>(m * ld), 9, -3.0f, 3.0f);
    std::vector<float> prod(static_cast<size_t>(m * ld), 0.0f), y = y0;
    ThreadPool pool(2);
    ternary_gemm(&pool, W, X, {nullptr, 0, prod.data(), ld});
    ternary_gemm(&pool, W, X, {nullptr, 0, y.data(), ld, true});
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < ld; ++j) {
        const size_t at = static_cast<size_t>(i * ld + j);
        const float want = j < n ? y0[at] + prod[at] : y0[at];
        ASSERT_EQ(std::memcmp(&y[at], &want, 4), 0) << v.name << " m=" << m << " " << i << "," << j;
      }
  }
}

std::vector<std::string> all_variant_names() {
  std::vector<std::string> names;
  for (const auto& v : gemm_variants()) names.emplace_back(v.name);
  return names;
}

INSTANTIATE_TEST_SUITE_P(AllVariants, GemmVariantTest, ::testing::ValuesIn(all_variant_names()),
                         [](const auto& info) { return info.param; });

// The fused relu(gate)^2 * up (AMX only) equals the f32 product followed by relu2_mul bit for bit,
// on partial token tiles, several K blocks and sub-ranges of the gate rows.
TEST(GemmRelu2, FusedEqualsProductThenActivation) {
  const int64_t ff = 96, k = 4200;  // k > 4096: two K blocks in the AMX kernel
  auto wq = random_ternary(static_cast<size_t>(2 * ff * k), 5);
  std::vector<float> scales(static_cast<size_t>(2 * ff));
  for (size_t i = 0; i < scales.size(); ++i) scales[i] = 0.25f + 0.01f * static_cast<float>(i);
  auto W = pack_native(wq.data(), 2 * ff, k, scales.data());
  for (int64_t m : {16, 17, 130}) {
    Arena arena;
    auto X = make_acts(arena, m, k, Fill::kRandom, static_cast<uint64_t>(m));
    if (!relu2_fused_supported(W, X, ff)) GTEST_SKIP() << "no fused form here (AMX only): " << cpu_summary();
    std::vector<float> gu(static_cast<size_t>(m * 2 * ff)), want(static_cast<size_t>(m * ff));
    ternary_gemm(nullptr, W, X, {nullptr, 0, gu.data(), 2 * ff});
    for (int64_t t = 0; t < m; ++t)
      relu2_mul(gu.data() + t * 2 * ff, gu.data() + t * 2 * ff + ff, want.data() + t * ff, ff);
    for (auto [r0, r1] : {std::pair<int64_t, int64_t>{0, ff}, {16, 48}, {80, 96}}) {
      std::vector<float> got(static_cast<size_t>(m * ff), -7.0f);
      ternary_gemm_relu2(W, X, ff, r0, r1, got.data(), ff);
      for (int64_t t = 0; t < m; ++t)
        for (int64_t r = 0; r < ff; ++r) {
          const size_t i = static_cast<size_t>(t * ff + r);
          if (r >= r0 && r < r1) {
            ASSERT_EQ(std::memcmp(&got[i], &want[i], 4), 0) << "m=" << m << " t=" << t << " r=" << r;
          } else {
            ASSERT_EQ(got[i], -7.0f) << "wrote outside [" << r0 << ", " << r1 << ") at r=" << r;
          }
        }
    }
  }
}

TEST(GemmRelu2, UnsupportedCasesAreErrors) {
  const int64_t ff = 40, k = 64;  // ff not a whole number of row blocks
  auto wq = random_ternary(static_cast<size_t>(2 * ff * k), 6);
  auto W = pack_native(wq.data(), 2 * ff, k, 1.0f);
  Arena arena;
  auto X = make_acts(arena, 32, k, Fill::kRandom, 1);
  std::vector<float> act(static_cast<size_t>(32 * ff));
  EXPECT_FALSE(relu2_fused_supported(W, X, ff));
  EXPECT_THROW(ternary_gemm_relu2(W, X, ff, 0, ff, act.data(), ff), Error);
}

TEST(GemmDispatch, ForcingUnknownOrUnsupportedKernelIsAnError) {
  auto wq = random_ternary(16 * 64, 1);
  auto W = pack_native(wq.data(), 16, 64, 1.0f);
  Arena arena;
  auto X = make_acts(arena, 1, 64, Fill::kRandom, 1);
  std::vector<int32_t> out(16);
  {
    ForceKernel f("no-such-kernel");
    EXPECT_THROW(ternary_gemm(nullptr, W, X, {out.data(), 16, nullptr, 0}), Error);
  }
  for (const auto& v : gemm_variants()) {
    if (v.cpu_ok()) continue;
    ForceKernel f(v.name);
    EXPECT_THROW(ternary_gemm(nullptr, W, X, {out.data(), 16, nullptr, 0}), Error) << v.name;
  }
  auto X2 = make_acts(arena, 1, 100, Fill::kRandom, 1);  // k mismatch
  EXPECT_THROW(ternary_gemm(nullptr, W, X2, {out.data(), 16, nullptr, 0}), Error);
}

}  // namespace bitnet
