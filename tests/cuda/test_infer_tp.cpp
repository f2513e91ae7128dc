// Tensor-parallel inference (cuda/infer_tp.h) against the single-GPU session, on one GPU: with
// every rank on it (same-device collectives) at 2 and 3 ranks, and as one NCCL rank. The split
// model's logits must equal the unsplit one's bit for bit (memcmp, not a tolerance): row shards
// give the same rows, column shards' int32 sums added before one epilogue give the same integers
// and floats, activations are quantized on the gathered full rows. Shapes: the tiny model (2 KV
// heads), the variant one (head_dim 32, SiLU, no sub-norms, interleaved RoPE) and one with 5 KV
// heads, split unevenly (3 + 2, 2 + 2 + 1) as the 2B4T's are, with FFN rows cut unevenly too.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "core/error.h"
#include "cuda/device.h"
#include "cuda/infer_session.h"
#include "cuda/infer_tp.h"
#include "cuda_test_util.h"
#include "model/synthetic.h"
#include "model/synthetic_gguf.h"

namespace bitnet::cuda {
namespace {

ModelConfig tp_config(int shape) {
  ModelConfig c = shape == 1 ? gpu_test::variant_config() : synthetic_config("tiny");
  if (shape == 2) {  // 5 KV heads of 2 query heads; 704 FFN rows = 11 column granules
    c.n_embd = 640;
    c.n_head = 10;
    c.n_head_kv = 5;
    c.head_dim = 64;
    c.rope_dim = 64;
    c.n_ff = 704;
    c.n_layer = 3;
  }
  return c;
}

std::vector<int32_t> prompt_of(size_t n, int64_t V, int salt) {
  std::vector<int32_t> p(n);
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<int32_t>((i * 7919 + 13 + 31 * salt) % V);
  return p;
}

bool same_bits(const float* a, const float* b, size_t n) {
  return std::memcmp(a, b, n * sizeof(float)) == 0;
}

struct TpCase {
  const char* name;
  int shape;  // tp_config
  std::vector<int> devices;
  DType embd;
};

class TpLogits : public ::testing::TestWithParam<TpCase> {};

// A 40-token prompt in three steps (all logits), then 12 decoded tokens (the first eager, the
// second captured, the rest graph replays), greedy from the plain session's logits.
TEST_P(TpLogits, PromptAndDecodeEqualTheSingleGpuSessionBitForBit) {
  SKIP_WITHOUT_GPU();
  const TpCase tc = GetParam();
  const Model model = make_synthetic_model(tp_config(tc.shape), 5, tc.embd);
  const int64_t V = model.cfg.n_vocab;
  CudaSession one(model, {256, 1, 16});
  CudaTpSession tp(model, {256, 1, 16}, tc.devices);
  EXPECT_EQ(tp.ranks(), static_cast<int>(tc.devices.size()));
  const std::vector<int32_t> prompt = prompt_of(40, V, tc.shape);
  const float* a = one.forward(prompt, true);
  const std::vector<float> want(a, a + prompt.size() * V);
  const float* b = tp.forward(prompt, true);
  ASSERT_TRUE(same_bits(b, want.data(), want.size())) << tc.name << ": prompt logits differ";
  int32_t tok = static_cast<int32_t>(std::max_element(want.end() - V, want.end()) - (want.end() - V));
  for (int i = 0; i < 12; ++i) {
    const float* x = one.forward(std::span(&tok, 1));
    const std::vector<float> w(x, x + V);
    const float* y = tp.forward(std::span(&tok, 1));
    ASSERT_TRUE(same_bits(y, w.data(), static_cast<size_t>(V))) << tc.name << ": decode step " << i;
    tok = static_cast<int32_t>(std::max_element(w.begin(), w.end()) - w.begin());
  }
  EXPECT_EQ(tp.n_past(), one.n_past());
}

// Several sequences a step, 12 and 5 (the tensor-core GEMV for the layers; cuBLASLt or the head
// kernel by head type), decode() and decode_greedy() against the plain session's.
TEST_P(TpLogits, BatchedDecodeEqualsTheSingleGpuSessionBitForBit) {
  SKIP_WITHOUT_GPU();
  const TpCase tc = GetParam();
  const Model model = make_synthetic_model(tp_config(tc.shape), 9, tc.embd);
  const int64_t V = model.cfg.n_vocab;
  constexpr int B = 12;
  CudaSession one(model, {128, B, 32});
  CudaTpSession tp(model, {128, B, 32}, tc.devices);
  std::vector<int32_t> toks(B), seqs(B);
  for (int b = 0; b < B; ++b) {
    const std::vector<int32_t> p = prompt_of(static_cast<size_t>(3 + 4 * b), V, b);
    one.forward_seq(b, p);
    tp.forward_seq(b, p);
    toks[static_cast<size_t>(b)] = static_cast<int32_t>(100 + b);
    seqs[static_cast<size_t>(b)] = b;
  }
  for (int n : {B, 5, B, 5, B}) {  // each size eager, then captured, then replayed
    const std::span<const int32_t> t(toks.data(), static_cast<size_t>(n)),
        s(seqs.data(), static_cast<size_t>(n));
    const float* x = one.decode(t, s);
    const std::vector<float> w(x, x + n * V);
    const float* y = tp.decode(t, s);
    ASSERT_TRUE(same_bits(y, w.data(), w.size())) << tc.name << ": decode of " << n;
    for (int b = 0; b < n; ++b)
      toks[static_cast<size_t>(b)] = static_cast<int32_t>(
          std::max_element(w.begin() + b * V, w.begin() + (b + 1) * V) - (w.begin() + b * V));
  }
  std::vector<int32_t> g1(B), g2(B);
  one.decode_greedy(toks, seqs, g1.data());
  tp.decode_greedy(toks, seqs, g2.data());
  EXPECT_EQ(g1, g2);
  for (int b = 0; b < B; ++b) EXPECT_EQ(tp.n_past(b), one.n_past(b));
}

std::vector<TpCase> tp_cases() {
  std::vector<TpCase> c = {
      {"tiny_tp2", 0, {0, 0}, DType::F16},    {"tiny_tp2_q6_k", 0, {0, 0}, DType::Q6_K},
      {"variant_tp2", 1, {0, 0}, DType::F16}, {"kv5_tp2", 2, {0, 0}, DType::F16},
      {"kv5_tp3", 2, {0, 0, 0}, DType::Q8_0}, {"kv5_tp5", 2, {0, 0, 0, 0, 0}, DType::F16},
  };
#if BITNET_HAVE_NCCL
  c.push_back({"tiny_nccl1", 0, {0}, DType::F16});  // one NCCL rank: the NCCL path on one GPU
  c.push_back({"kv5_nccl1", 2, {0}, DType::Q8_0});
#endif
  return c;
}

INSTANTIATE_TEST_SUITE_P(Splits, TpLogits, ::testing::ValuesIn(tp_cases()),
                         [](const auto& info) { return std::string(info.param.name); });

// Bad requests are errors that say what is wrong, before anything runs.
TEST(TpSession, BadDeviceListsAndSplitsAreClearErrors) {
  SKIP_WITHOUT_GPU();
  const Model model = make_synthetic_model(tp_config(0), 5, DType::F16);  // 2 KV heads
  auto message = [&](const std::vector<int>& d) -> std::string {
    try {
      CudaTpSession s(model, {64, 1, 16}, d);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(message({0, 0, 0}).find("2 KV heads"), std::string::npos) << message({0, 0, 0});
  EXPECT_NE(message({}).find("empty"), std::string::npos) << message({});
  const int have = static_cast<int>(devices().size());
  EXPECT_NE(message({have}).find("does not exist"), std::string::npos) << message({have});
  EXPECT_NE(message({-1}).find("does not exist"), std::string::npos);
  if (have >= 2) {
    EXPECT_NE(message({0, 0, 1}).find("repeats"), std::string::npos);
  }
  CudaSessionOptions fused{64, 1, 16};
  fused.fused_decode = true;
  EXPECT_THROW(CudaTpSession(model, fused, {0, 0}), Error);
}

}  // namespace
}  // namespace bitnet::cuda
