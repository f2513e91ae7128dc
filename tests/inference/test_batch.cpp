// Several sequences in one Session (forward_batch): every token's logits equal, bit for bit, those
// of the same sequence run alone in its own session, whatever else shares its step (prompts,
// decodes, long contexts, other thread counts), and bad batches are refused before any work.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "core/error.h"
#include "inference/forward.h"
#include "model/synthetic.h"
#include "tiny_config.h"

namespace bitnet {
namespace {

// The shared tiny shape with a vocabulary of another size than the other tests'. A Q6_K head
// needs rows of whole 256-value super-blocks (held as Q6_KX where its kernel runs; 211 rows leave
// a last group of 3).
ModelConfig small_config(DType embd = DType::F16) {
  ModelConfig c = tiny_config(RopeStyle::kNeox, FfnAct::kRelu2, true);
  c.n_vocab = 211;
  if (embd == DType::Q6_K) c.n_embd = 256;
  return c;
}

std::vector<int32_t> random_tokens(size_t n, int32_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> t(n);
  for (auto& v : t) v = static_cast<int32_t>(rng() % static_cast<uint64_t>(vocab));
  return t;
}

// Each sequence alone: logits of every token of `tokens`, fed as a prompt of `prompt` tokens,
// then one token at a time.
std::vector<std::vector<float>> alone(const Model& m, const SessionOptions& o,
                                      const std::vector<int32_t>& tokens, size_t prompt) {
  Session s(m, o);
  std::vector<std::vector<float>> out;
  const size_t V = static_cast<size_t>(m.cfg.n_vocab);
  const float* l = s.forward(std::span(tokens).first(prompt), true);
  for (size_t t = 0; t < prompt; ++t) out.emplace_back(l + t * V, l + (t + 1) * V);
  for (size_t t = prompt; t < tokens.size(); ++t) {
    l = s.forward(std::span(tokens).subspan(t, 1));
    out.emplace_back(l, l + V);
  }
  return out;
}

bool same_bits(const float* a, const std::vector<float>& b) {
  return std::memcmp(a, b.data(), b.size() * 4) == 0;
}

struct Case {
  bool kv_f16;
  int threads;
  size_t long_prompt;  // one sequence's prompt; >= 512 takes the single decode's split attention
  DType embd = DType::F16;
};

class BatchEqualsAlone : public ::testing::TestWithParam<Case> {};

// Four sequences with prompts of different lengths start at different steps: each step holds the
// running sequences' next tokens plus a chunk of at most 5 tokens of one still-reading prompt, as
// a server's continuous batching does.
TEST_P(BatchEqualsAlone, EveryTokensLogits) {
  const Case k = GetParam();
  const ModelConfig c = small_config(k.embd);
  const Model m = make_synthetic_model(c, 21, k.embd);
  SessionOptions one;
  one.n_ctx = 700;
  one.kv_f16 = k.kv_f16;
  one.threads = k.threads;
  const size_t prompts[4] = {7, 1, k.long_prompt, 12};
  const size_t decode = 9;
  std::vector<std::vector<int32_t>> toks;
  std::vector<std::vector<std::vector<float>>> want;
  for (size_t s = 0; s < 4; ++s) {
    toks.push_back(random_tokens(prompts[s] + decode, c.n_vocab, 100 + s));
    want.push_back(alone(m, one, toks[s], prompts[s]));
  }
  SessionOptions multi = one;
  multi.n_seq = 4;
  multi.threads = k.threads == 1 ? 2 : 1;  // another thread count than the reference's
  multi.n_ubatch = 8;                      // batches span micro-batches
  Session s(m, multi);
  std::vector<size_t> fed(4, 0);  // tokens of each sequence given so far
  const size_t V = static_cast<size_t>(c.n_vocab);
  for (int step = 0; step < 1000; ++step) {
    std::vector<BatchToken> batch;
    std::vector<std::pair<size_t, size_t>> who;  // (sequence, token index) of each logits row
    bool chunk_taken = false;
    for (size_t q = 0; q < 4; ++q) {
      if (static_cast<size_t>(step) < q * 2 || fed[q] == toks[q].size()) continue;  // not started / done
      size_t take = 1;
      if (fed[q] < prompts[q]) {  // still reading its prompt: one chunk per step
        if (chunk_taken) continue;
        chunk_taken = true;
        take = std::min<size_t>(q == 2 ? 200 : 5, prompts[q] - fed[q]);
      }
      for (size_t i = 0; i < take; ++i) {
        const size_t t = fed[q] + i;
        batch.push_back({toks[q][t], static_cast<int32_t>(q), true});
        who.emplace_back(q, t);
      }
      fed[q] += take;
    }
    if (batch.empty()) break;
    const float* l = s.forward_batch(batch);
    for (size_t r = 0; r < who.size(); ++r) {
      const auto [q, t] = who[r];
      ASSERT_TRUE(same_bits(l + r * V, want[q][t])) << "sequence " << q << " token " << t << " step " << step;
    }
  }
  for (size_t q = 0; q < 4; ++q) {
    EXPECT_EQ(fed[q], toks[q].size());
    EXPECT_EQ(s.n_past(static_cast<int>(q)), static_cast<int64_t>(toks[q].size()));
  }
}

INSTANTIATE_TEST_SUITE_P(Kv, BatchEqualsAlone,
                         ::testing::Values(Case{true, 2, 30}, Case{false, 2, 30}, Case{true, 1, 40},
                                           Case{true, 2, 600}, Case{true, 2, 30, DType::Q6_K}));

// A slot freed with truncate(seq, 0) serves a new sequence as a fresh session would, beside a
// sequence that keeps running.
TEST(Batch, FreedSlotIsReused) {
  const ModelConfig c = small_config();
  const Model m = make_synthetic_model(c, 22);
  SessionOptions o;
  o.n_ctx = 64;
  const auto a = random_tokens(20, c.n_vocab, 1), b = random_tokens(10, c.n_vocab, 2);
  const auto want_b = alone(m, o, b, 10);
  o.n_seq = 2;
  Session s(m, o);
  std::vector<BatchToken> batch;
  for (int32_t t : a) batch.push_back({t, 1, false});
  s.forward_batch(batch);
  s.truncate(1, 0);
  batch.clear();
  for (int32_t t : b) batch.push_back({t, 1, true});
  batch.push_back({a[0], 0, false});
  const float* l = s.forward_batch(batch);
  for (size_t t = 0; t < b.size(); ++t)
    EXPECT_TRUE(same_bits(l + t * static_cast<size_t>(c.n_vocab), want_b[t])) << t;
  EXPECT_EQ(s.n_past(0), 1);
  EXPECT_EQ(s.n_past(1), 10);
}

// Bad batches: clear errors, and no cache moves.
TEST(Batch, BadBatchesAreRefusedBeforeAnyWork) {
  const ModelConfig c = small_config();
  const Model m = make_synthetic_model(c, 23);
  SessionOptions o;
  o.n_ctx = 8;
  o.n_seq = 2;
  Session s(m, o);
  s.forward_batch(std::vector<BatchToken>{{1, 0, false}, {2, 1, false}});
  auto refused = [&](std::vector<BatchToken> b, const char* what) {
    try {
      s.forward_batch(b);
      ADD_FAILURE() << "accepted: " << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
    EXPECT_EQ(s.n_past(0), 1);
    EXPECT_EQ(s.n_past(1), 1);
  };
  refused({{1, 2, true}}, "sequence 2 does not exist");
  refused({{1, -1, true}}, "sequence -1 does not exist");
  refused({{1, 0, true}, {1, 1, true}, {1, 0, true}}, "sequence 0 appears in two runs");
  refused({{1, 1, true}, {500, 1, true}}, "token id 500 is out of range");
  refused(std::vector<BatchToken>(8, BatchToken{3, 1, false}), "context overflow: 1 cached + 8 new tokens");
  refused({}, "no tokens");
  EXPECT_THROW(s.n_past(2), Error);
  SessionOptions bad = o;
  bad.n_seq = 0;
  EXPECT_THROW(Session(m, bad), Error);
}

}  // namespace
}  // namespace bitnet
