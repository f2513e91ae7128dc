// The k largest logits on the device (infer_kernels.h topk_rows, CudaSession::decode_top) against
// the host's list (inference/sampler.h top_k_logits): the same values and ids in the same order,
// ties to the lowest id, on rows of ties, signed zeros, infinities and the largest floats, over one
// pass and over several merge passes; and each row's log-sum-exp against the CPU's.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "core/error.h"
#include "cuda/buffer.h"
#include "cuda/infer_kernels.h"
#include "cuda/infer_session.h"
#include "cuda_test_util.h"
#include "inference/sampler.h"
#include "model/synthetic.h"
#include "ops/vec.h"

namespace bitnet::cuda {
namespace {

// Row r of m: few distinct values (many ties); row 1 also has signed zeros, row 2 the extremes,
// row 3 no positive value, so that its signed zeros are its largest.
std::vector<float> tie_rows(int m, int64_t n, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, 3.0f);
  std::vector<float> x(static_cast<size_t>(m * n));
  for (auto& v : x) v = std::round(d(g) * 2.0f) / 2.0f;
  const float inf = std::numeric_limits<float>::infinity(), big = std::numeric_limits<float>::max();
  for (int64_t j = 0; j < n; j += 7) {
    if (m > 1) x[static_cast<size_t>(n + j)] = (j / 7) % 2 ? -0.0f : 0.0f;
    if (m > 3) x[static_cast<size_t>(3 * n + j)] = (j / 7) % 2 ? -0.0f : 0.0f;
    if (m > 2 && j % 5 == 0) {
      const float e[] = {inf, -inf, big, -big, 1e-40f, -1e-40f, 9.5f};
      x[static_cast<size_t>(2 * n + j)] = e[(j / 35) % 7];
    }
  }
  if (m > 3)
    for (int64_t j = 0; j < n; ++j)
      if (j % 7) x[static_cast<size_t>(3 * n + j)] = -std::fabs(x[static_cast<size_t>(3 * n + j)]) - 0.5f;
  return x;
}

uint32_t bits(float v) {
  uint32_t b;
  std::memcpy(&b, &v, 4);
  return b;
}

TEST(CudaTopK, EqualsTheHostsListOnTiesZerosAndInfinities) {
  SKIP_WITHOUT_GPU();
  constexpr int m = 4;
  // One block a row (1,000 and 4,096), two passes (4,097 and the 2B4T vocabulary) and three
  // (300,001 values at k = 256: 74 lists of 256, then 5, then 1).
  for (const int64_t n : {1000L, 4096L, 4097L, 128256L, 300001L}) {
    const std::vector<float> x = tie_rows(m, n, static_cast<uint32_t>(n));
    Buffer<float> dx;
    dx.upload(x);
    for (const int k : {1, 3, 40, 64, 200, 256}) {
      Buffer<unsigned char> scratch(infer::topk_scratch_bytes(m, n, k));
      Buffer<float> val(static_cast<size_t>(m * k)), lz(m);
      Buffer<int32_t> id(static_cast<size_t>(m * k));
      infer::topk_rows(dx.data(), m, n, n, k, scratch.data(), val.data(), id.data(), lz.data(), nullptr);
      const std::vector<float> gv = val.download(), gz = lz.download();
      const std::vector<int32_t> gi = id.download();
      for (int r = 0; r < m; ++r) {
        const std::span<const float> row(x.data() + r * n, static_cast<size_t>(n));
        const auto want = top_k_logits(row, static_cast<size_t>(k));
        for (int i = 0; i < k; ++i) {
          const size_t at = static_cast<size_t>(r * k + i);
          ASSERT_EQ(gi[at], want[static_cast<size_t>(i)].second)
              << "n " << n << " k " << k << " row " << r << " #" << i;
          ASSERT_EQ(bits(gv[at]), bits(want[static_cast<size_t>(i)].first))  // -0 stays -0
              << "n " << n << " k " << k << " row " << r << " #" << i;
        }
        if (r != 2) {  // the finite rows
          const double cpu = log_sum_exp_row(row.data(), n);
          EXPECT_NEAR(gz[static_cast<size_t>(r)], cpu, 1e-5 * std::fabs(cpu) + 1e-5)
              << "n " << n << " row " << r;
        }
      }
    }
  }
}

// Greedy steps' argmax on the device is the CPU's argmax (the first largest logit), also where the
// largest is -FLT_MAX, every logit is -inf, or the largest repeats.
TEST(CudaTopK, ArgmaxRowsIsTheCpusArgmax) {
  SKIP_WITHOUT_GPU();
  const float inf = std::numeric_limits<float>::infinity(), big = std::numeric_limits<float>::max();
  for (const int64_t n : {1L, 33L, 5000L, 128256L}) {
    std::mt19937 g(static_cast<uint32_t>(n));
    std::vector<float> x(static_cast<size_t>(4 * n), -inf);  // row 0: all -inf
    const size_t last = static_cast<size_t>(n - 1);
    x[static_cast<size_t>(n) + last] = -big;  // row 1: -FLT_MAX at the end
    for (int64_t j = 0; j < n; ++j) {
      x[static_cast<size_t>(2 * n + j)] = static_cast<float>(g() % 5);  // row 2: ties of 4
      x[static_cast<size_t>(3 * n + j)] = static_cast<float>(g() % 100000) * 1e-3f - 50.0f;
    }
    Buffer<float> dx;
    dx.upload(x);
    Buffer<int32_t> out(4);
    infer::argmax_rows(dx.data(), 4, n, n, out.data(), nullptr);
    const std::vector<int32_t> got = out.download();
    for (int r = 0; r < 4; ++r)
      EXPECT_EQ(got[static_cast<size_t>(r)],
                argmax(std::span<const float>(x.data() + r * n, static_cast<size_t>(n))))
          << "n " << n << " row " << r;
  }
}

// A decode step's candidates equal the host's list of the same step's logits (decode()).
TEST(CudaTopK, DecodeTopIsTheHostsListOfTheStepsLogits) {
  SKIP_WITHOUT_GPU();
  const Model model = make_synthetic_model(synthetic_config("tiny"), 5, DType::F16);
  const int64_t V = model.cfg.n_vocab;
  constexpr int B = 3;
  CudaSession s(model, {128, B, 16});
  for (int b = 0; b < B; ++b) {
    std::vector<int32_t> prompt(static_cast<size_t>(4 + 3 * b));
    for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>((i * 37 + 5 * b + 1) % V);
    s.forward_seq(b, prompt);
  }
  const std::vector<int32_t> tok = {7, 8, 9}, seqs = {2, 0, 1};
  for (const int k : {1, 40, CudaSession::kDecodeTopMax}) {
    std::vector<int64_t> past(B);
    for (int b = 0; b < B; ++b) past[static_cast<size_t>(b)] = s.n_past(b);
    const float* l = s.decode(tok, seqs);
    const std::vector<float> logits(l, l + B * V);
    for (int b = 0; b < B; ++b) s.truncate_seq(b, past[static_cast<size_t>(b)]);
    std::vector<float> val(static_cast<size_t>(B * k)), lz(B);
    std::vector<int32_t> id(static_cast<size_t>(B * k));
    s.decode_top(tok, seqs, k, val.data(), id.data(), lz.data());
    for (int b = 0; b < B; ++b) {
      EXPECT_EQ(s.n_past(b), past[static_cast<size_t>(b)] + 1);
      const std::span<const float> row(logits.data() + b * V, static_cast<size_t>(V));
      const auto want = top_k_logits(row, static_cast<size_t>(k));
      for (int i = 0; i < k; ++i) {
        ASSERT_EQ(id[static_cast<size_t>(b * k + i)], want[static_cast<size_t>(i)].second)
            << "k " << k << " row " << b;
        ASSERT_EQ(val[static_cast<size_t>(b * k + i)], want[static_cast<size_t>(i)].first) << "k " << k;
      }
      const double cpu = log_sum_exp_row(row.data(), V);
      EXPECT_NEAR(lz[static_cast<size_t>(b)], cpu, 1e-5 * std::fabs(cpu) + 1e-5);
    }
    for (int b = 0; b < B; ++b) s.truncate_seq(b, past[static_cast<size_t>(b)]);
  }
  std::vector<float> val(V + 1), lz(B);
  std::vector<int32_t> id(V + 1);
  EXPECT_THROW(s.decode_top(tok, seqs, 0, val.data(), id.data(), lz.data()), Error);
  EXPECT_THROW(s.decode_top(tok, seqs, CudaSession::kDecodeTopMax + 1, val.data(), id.data(), lz.data()),
               Error);
}

}  // namespace
}  // namespace bitnet::cuda
