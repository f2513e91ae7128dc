// The split engine (server/split_engine.h), which the GPU's server engine runs on, over steps made
// of a CPU Session: the same batches (decodes beside prompt chunks, logits asked for or not,
// sequences in any order, decodes alone) give the same logits, bit for bit, as
// Session::forward_batch, whose tokens' logits do not depend on their batch; and a refused batch
// changes nothing.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "core/error.h"
#include "model/synthetic.h"
#include "model/synthetic_gguf.h"
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
  int decodes = 0, prompts = 0;

 private:
  Session s_;
};

TEST(SplitEngine, EqualsTheSessionsBatches) {
  const Model model = make_synthetic_model(synthetic_config("tiny"), 3);
  const int64_t V = model.cfg.n_vocab;
  const SessionOptions so = test::four_slots();
  std::unique_ptr<BatchEngine> want = make_session_engine(model, so);
  auto steps = std::make_unique<SessionSteps>(model, so);
  SessionSteps* st = steps.get();
  std::unique_ptr<BatchEngine> got = make_split_engine(std::move(steps));
  auto tok = [&](int i) { return test::batch_token(i, V); };
  std::vector<std::vector<BatchToken>> batches = test::mixed_batches(V);
  // Decodes alone out of slot order (returned in place, in the batch's order), and decodes alone
  // where one row asks for no logits (copied out).
  batches.push_back({{tok(22), 2, true}, {tok(23), 0, true}, {tok(24), 3, true}, {tok(25), 1, true}});
  batches.push_back({{tok(26), 3, true}, {tok(27), 1, false}, {tok(28), 0, true}});
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

}  // namespace
}  // namespace bitnet::server
