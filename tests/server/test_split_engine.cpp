// The split engine (server/split_engine.h), which the GPU's server engine runs on, over steps made
// of a CPU Session: the same batches (decodes beside prompt chunks, logits asked for or not,
// sequences in any order, decodes alone) give the same logits, bit for bit, as
// Session::forward_batch, whose tokens' logits do not depend on their batch; and a refused batch
// changes nothing.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "core/error.h"
#include "inference/sampler.h"
#include "model/synthetic.h"
#include "model/synthetic_gguf.h"
#include "ops/vec.h"
#include "server/engine.h"
#include "server/mixed_batches.h"
#include "server/split_engine.h"

namespace bitnet::server {
namespace {

// A CPU Session's calls in the shape of the GPU session's: a decode step or one sequence's chunk.
class SessionSteps final : public SeqSteps {
 public:
  SessionSteps(const Model& m, const SessionOptions& o) : s_(m, o) {}
  const float* decode(std::span<const int32_t> tokens, std::span<const int32_t> seqs) override {
    std::vector<BatchToken> b;
    for (size_t i = 0; i < tokens.size(); ++i) b.push_back({tokens[i], seqs[i], true});
    ++decodes;
    return s_.forward_batch(b);
  }
  const float* prompt(int seq, std::span<const int32_t> tokens, bool all_logits) override {
    std::vector<BatchToken> b;
    for (size_t i = 0; i < tokens.size(); ++i)
      b.push_back({tokens[i], seq, all_logits || i + 1 == tokens.size()});
    ++prompts;
    return s_.forward_batch(b);
  }
  int64_t n_past(int seq) const override { return s_.n_past(seq); }
  void truncate(int seq, int64_t n) override { s_.truncate(seq, n); }
  int n_seq() const override { return s_.n_seq(); }
  int64_t n_ctx() const override { return s_.n_ctx(); }
  int32_t n_vocab() const override { return static_cast<int32_t>(s_.model().cfg.n_vocab); }
  // What the GPU's steps find on the device, found here from the decode step's logits.
  int max_top_k() const override { return top_max; }
  void decode_top(std::span<const int32_t> tokens, std::span<const int32_t> seqs, int k, float* val,
                  int32_t* id, float* log_z) override {
    const float* l = decode(tokens, seqs);
    const size_t V = static_cast<size_t>(n_vocab()), K = static_cast<size_t>(k);
    for (size_t r = 0; r < tokens.size(); ++r)
      top_row(std::span<const float>(l + r * V, V), K, val + r * K, id + r * K, log_z + r);
    ++tops;
  }
  int decodes = 0, prompts = 0, tops = 0, top_max = 0;

 private:
  Session s_;
};

// The Session's engine (want) and the split engine over a Session of the same model (got).
struct Engines {
  Model model = make_synthetic_model(synthetic_config("tiny"), 3);
  int64_t V = model.cfg.n_vocab;
  SessionOptions so = test::four_slots();
  std::unique_ptr<BatchEngine> want = make_session_engine(model, so);
  SessionSteps* st = nullptr;
  std::unique_ptr<BatchEngine> got;
  Engines() {
    auto steps = std::make_unique<SessionSteps>(model, so);
    st = steps.get();
    got = make_split_engine(std::move(steps));
  }
  // The mixed batches, then decodes alone out of slot order (returned in place, in the batch's
  // order) and decodes alone where one row asks for no logits (copied out).
  std::vector<std::vector<BatchToken>> batches() const {
    auto tok = [&](int i) { return test::batch_token(i, V); };
    std::vector<std::vector<BatchToken>> b = test::mixed_batches(V);
    b.push_back({{tok(22), 2, true}, {tok(23), 0, true}, {tok(24), 3, true}, {tok(25), 1, true}});
    b.push_back({{tok(26), 3, true}, {tok(27), 1, false}, {tok(28), 0, true}});
    return b;
  }
};

TEST(SplitEngine, EqualsTheSessionsBatches) {
  Engines e;
  const int64_t V = e.V;
  const SessionOptions& so = e.so;
  BatchEngine* want = e.want.get();
  BatchEngine* got = e.got.get();
  SessionSteps* st = e.st;
  auto tok = [&](int i) { return test::batch_token(i, V); };
  const std::vector<std::vector<BatchToken>> batches = e.batches();
  for (size_t b = 0; b < batches.size(); ++b) {
    int rows = 0;
    for (const BatchToken& t : batches[b]) rows += t.logits;
    const float* w = want->forward_batch(batches[b]);
    const std::vector<float> wv(w, w + rows * V);
    const float* g = got->forward_batch(batches[b]);
    EXPECT_EQ(std::memcmp(g, wv.data(), wv.size() * 4), 0) << "batch " << b;
    for (int q = 0; q < 4; ++q) EXPECT_EQ(got->n_past(q), want->n_past(q)) << "batch " << b << " seq " << q;
  }
  EXPECT_EQ(st->decodes, 6);  // every batch but the first has sequences of one token
  EXPECT_EQ(st->prompts, 4);
  // Refused before any work: nothing is appended to any sequence.
  const std::vector<int64_t> before = {got->n_past(0), got->n_past(1), got->n_past(2), got->n_past(3)};
  const std::vector<std::vector<BatchToken>> bad = {
      {{tok(1), 0, true}, {tok(2), 4, true}},                      // no sequence 4
      {{tok(1), 0, true}, {static_cast<int32_t>(V), 1, true}},     // token id out of range
      {{tok(1), 0, false}, {tok(2), 1, true}, {tok(3), 0, true}},  // sequence 0 split in two runs
  };
  for (size_t b = 0; b < bad.size(); ++b) EXPECT_THROW(got->forward_batch(bad[b]), Error) << b;
  std::vector<BatchToken> overflow;  // sequence 2 past its context, beside a decode of sequence 0
  for (int64_t i = got->n_past(2); i <= so.n_ctx; ++i) overflow.push_back({tok(1), 2, false});
  overflow.push_back({tok(2), 0, true});
  EXPECT_THROW(got->forward_batch(overflow), Error);
  for (int q = 0; q < 4; ++q) EXPECT_EQ(got->n_past(q), before[static_cast<size_t>(q)]) << q;
}

// forward_batch_top: each logits row's top k and log-sum-exp, from the steps' decode_top for a
// decode step's rows and from the prompt's logits on the host for a prompt's, in the batch's order:
// the host's list of the Session's logits for the same batch.
TEST(SplitEngine, TopRowsAreTheListsOfTheSessionsLogits) {
  Engines e;
  const int64_t V = e.V;
  BatchEngine* want = e.want.get();
  BatchEngine* got = e.got.get();
  SessionSteps* st = e.st;
  EXPECT_EQ(got->max_top_k(), 0);
  EXPECT_THROW(got->forward_batch_top(std::vector<BatchToken>{{1, 0, true}}, 1), Error);
  st->top_max = 64;
  EXPECT_EQ(got->max_top_k(), 64);
  auto tok = [&](int i) { return test::batch_token(i, V); };
  const std::vector<std::vector<BatchToken>> batches = e.batches();
  const int ks[] = {1, 5, 64, 17, 40, 3, 64};
  for (size_t b = 0; b < batches.size(); ++b) {
    const int k = ks[b % 7];
    int rows = 0;
    for (const BatchToken& t : batches[b]) rows += t.logits;
    const float* w = want->forward_batch(batches[b]);
    const std::vector<float> wv(w, w + rows * V);
    const TopRows g = got->forward_batch_top(batches[b], k);
    ASSERT_EQ(g.k, k);
    for (int r = 0; r < rows; ++r) {
      const std::span<const float> row(wv.data() + r * V, static_cast<size_t>(V));
      const auto list = top_k_logits(row, static_cast<size_t>(k));
      for (int i = 0; i < k; ++i) {
        EXPECT_EQ(g.id[r * k + i], list[static_cast<size_t>(i)].second) << "batch " << b << " row " << r;
        EXPECT_EQ(g.val[r * k + i], list[static_cast<size_t>(i)].first) << "batch " << b << " row " << r;
      }
      EXPECT_FLOAT_EQ(g.log_z[r], static_cast<float>(log_sum_exp_row(row.data(), V))) << "batch " << b;
    }
    for (int q = 0; q < 4; ++q) EXPECT_EQ(got->n_past(q), want->n_past(q)) << "batch " << b << " seq " << q;
  }
  EXPECT_EQ(st->tops, 6);  // every decode step went through decode_top
  EXPECT_EQ(st->decodes, 6);
  EXPECT_THROW(got->forward_batch_top(std::vector<BatchToken>{{tok(1), 0, true}}, 65), Error);
  EXPECT_THROW(got->forward_batch_top(std::vector<BatchToken>{{tok(1), 0, true}}, 0), Error);
}

}  // namespace
}  // namespace bitnet::server
