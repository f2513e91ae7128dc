// The scheduler on the project's real model (models/bitnet-en.gguf) and a real Session: answers
// decoded together in one batch, sampled on several threads, equal, token for token, each answer
// decoded alone.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "io/gguf.h"
#include "model/load_gguf.h"
#include "server/scheduler.h"

namespace bitnet::server {
namespace {

// Counts the sequences of each step, passing everything on.
class Spy : public BatchEngine {
 public:
  explicit Spy(BatchEngine& e) : e_(e) {}
  const float* forward_batch(std::span<const BatchToken> batch) override {
    std::set<int32_t> seqs;
    for (const BatchToken& b : batch) seqs.insert(b.seq);
    max_seqs = std::max(max_seqs, seqs.size());
    return e_.forward_batch(batch);
  }
  int64_t n_past(int seq) const override { return e_.n_past(seq); }
  void truncate(int seq, int64_t n) override { e_.truncate(seq, n); }
  int n_seq() const override { return e_.n_seq(); }
  int64_t n_ctx() const override { return e_.n_ctx(); }
  int32_t n_vocab() const override { return e_.n_vocab(); }
  size_t max_seqs = 0;

 private:
  BatchEngine& e_;
};

TEST(BatchedModel, AnswersTogetherEqualAnswersAlone) {
  const std::string path = std::string(BITNET_SOURCE_DIR) + "/models/bitnet-en.gguf";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " is absent";
  GgufFile f = GgufFile::open(path);
  std::unique_ptr<Model> model = load_gguf_model(f);
  Tokenizer tok = Tokenizer::from_vocab(tokenizer_vocab_from_gguf(f));
  const std::vector<std::string> prompts = {"And the king said", "In the beginning", "The database",
                                            "A function returns"};
  auto job_of = [&](const std::string& p, uint64_t seed) {
    Job j;
    EncodeOptions eo;
    eo.add_bos = tok.add_bos();
    j.prompt = tok.encode(p, eo);
    j.max_tokens = 12;
    j.sampling.seed = seed;  // sampled, not greedy: the same seed must give the same tokens
    j.stop_ids = tok.stop_ids();
    return j;
  };
  SessionOptions so;
  so.n_ctx = 128;
  so.threads = 2;
  std::vector<std::string> alone;
  {
    std::unique_ptr<BatchEngine> e = make_session_engine(*model, so);
    Scheduler s(*e, tok, {}, nullptr);
    for (size_t i = 0; i < prompts.size(); ++i) {
      auto r = s.submit(job_of(prompts[i], i + 1));
      Output out;
      while (!r->take(out, 0)) s.step();
      alone.push_back(out.text);
    }
  }
  so.n_seq = 4;
  std::unique_ptr<BatchEngine> e = make_session_engine(*model, so);
  Spy spy(*e);
  SchedulerOptions together;
  together.sample_threads = 3;  // the step's sequences sampled on several threads
  Scheduler s(spy, tok, together, nullptr);
  std::vector<std::shared_ptr<Request>> rs;
  for (size_t i = 0; i < prompts.size(); ++i) rs.push_back(s.submit(job_of(prompts[i], i + 1)));
  std::vector<Output> outs(prompts.size());
  for (bool all = false; !all;) {
    s.step();
    all = true;
    for (size_t i = 0; i < rs.size(); ++i) all = rs[i]->take(outs[i], 0) && all;
  }
  EXPECT_EQ(spy.max_seqs, 4u);
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_FALSE(alone[i].empty());
    EXPECT_EQ(outs[i].text, alone[i]) << prompts[i];
  }
}

}  // namespace
}  // namespace bitnet::server
