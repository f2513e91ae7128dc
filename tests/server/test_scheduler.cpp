// The continuous-batching scheduler on a scripted engine (fake_engine.h) and a byte-level
// tokenizer: token ids 0..255 are bytes, 257 is EOS. The script continues the alphabet:
// a -> b -> ... -> z -> EOS.
#include <gtest/gtest.h>

#include <cmath>
#include <thread>

#include "fake_engine.h"
#include "inference/sampler.h"
#include "server/scheduler.h"

namespace bitnet::server {
namespace {

using testing::FakeEngine;

constexpr int32_t kEos = 257;

int32_t alphabet(int32_t t) {
  return t >= 'a' && t < 'z' ? t + 1 : kEos;
}

Tokenizer byte_tokenizer() {
  return Tokenizer::from_vocab(byte_level_vocab(300));
}

Job job(const std::string& prompt, int max_tokens = -1) {
  Job j;
  j.prompt.assign(prompt.begin(), prompt.end());
  j.max_tokens = max_tokens;
  j.sampling.temperature = 0;
  j.stop_ids = {kEos};
  return j;
}

// Steps until the request finishes (at most 10000 steps); returns everything it produced.
Output run_to_end(Scheduler& s, const std::shared_ptr<Request>& r) {
  Output out;
  for (int i = 0; i < 10000; ++i) {
    if (r->take(out, 0)) return out;
    s.step();
  }
  ADD_FAILURE() << "request never finished";
  return out;
}

TEST(Scheduler, OneRequestRunsToItsStopToken) {
  Tokenizer tok = byte_tokenizer();
  FakeEngine e(2, 64, 300, alphabet);
  Scheduler s(e, tok, {}, nullptr);
  auto r = s.submit(job("a"));
  ASSERT_TRUE(r);
  Output out = run_to_end(s, r);
  EXPECT_EQ(out.text, "bcdefghijklmnopqrstuvwxyz");
  EXPECT_EQ(out.finish, Finish::kStop);
  EXPECT_EQ(out.prompt_tokens, 1);
  EXPECT_EQ(out.completion_tokens, 25);  // the stop token is not part of the answer
}

TEST(Scheduler, MaxTokensEndsWithLength) {
  Tokenizer tok = byte_tokenizer();
  FakeEngine e(1, 64, 300, alphabet);
  Scheduler s(e, tok, {}, nullptr);
  Output out = run_to_end(s, s.submit(job("a", 3)));
  EXPECT_EQ(out.text, "bcd");
  EXPECT_EQ(out.finish, Finish::kLength);
  EXPECT_EQ(out.completion_tokens, 3);
}

TEST(Scheduler, StopStringEndsTheAnswerAndIsNotShown) {
  Tokenizer tok = byte_tokenizer();
  FakeEngine e(1, 64, 300, alphabet);
  Scheduler s(e, tok, {}, nullptr);
  Job j = job("a");
  j.stop = {"xyz", "ef"};
  auto r = s.submit(j);
  Output out;
  std::string seen;
  for (int i = 0; i < 100 && !r->take(out, 0); ++i) {
    // No partial stop string is ever shown: "e" is held until "f" decides it.
    EXPECT_EQ(out.text.find('e'), std::string::npos) << out.text;
    s.step();
  }
  EXPECT_EQ(out.text, "bcd");
  EXPECT_EQ(out.finish, Finish::kStop);
  EXPECT_EQ(out.completion_tokens, 5);  // b c d e f
}

TEST(Scheduler, ContextFullEndsWithLengthWithoutOverflow) {
  Tokenizer tok = byte_tokenizer();
  FakeEngine e(1, 8, 300, alphabet);
  Scheduler s(e, tok, {}, nullptr);
  Output out = run_to_end(s, s.submit(job("abc")));
  EXPECT_EQ(out.finish, Finish::kLength);
  // 3 prompt + 5 answer positions fill the 8; the last token comes from the last position's logits.
  EXPECT_EQ(out.text, "defghi");
}

TEST(Scheduler, SequencesJoinAndLeaveTheRunningBatch) {
  Tokenizer tok = byte_tokenizer();
  FakeEngine e(2, 64, 300, alphabet);
  Scheduler s(e, tok, {}, nullptr);
  auto a = s.submit(job("a", 2));   // leaves early
  auto b = s.submit(job("a", 20));  // keeps running
  auto c = s.submit(job("m", 3));   // waits for a's slot
  Output oa, ob, oc;
  for (int i = 0; i < 100; ++i) {
    const bool da = a->take(oa, 0), db = b->take(ob, 0), dc = c->take(oc, 0);
    if (da && db && dc) break;
    s.step();
  }
  EXPECT_EQ(oa.text, "bc");
  EXPECT_EQ(ob.text, "bcdefghijklmnopqrstu");
  EXPECT_EQ(oc.text, "nop");
  // Some step decoded b while c's prompt ran beside it, and every step held both slots' entries
  // while both were busy.
  bool mixed = false;
  for (const auto& batch : e.batches) {
    ASSERT_LE(batch.size(), 128u);
    bool has0 = false, has1 = false;
    for (const BatchToken& t : batch) (t.seq == 0 ? has0 : has1) = true;
    if (has0 && has1 && batch.size() == 2 && batch[0].logits && batch[1].logits && batch[1].token == 'm')
      mixed = true;
  }
  EXPECT_TRUE(mixed);
}

TEST(Scheduler, LongPromptIsChunkedBesideRunningDecodes) {
  Tokenizer tok = byte_tokenizer();
  FakeEngine e(2, 1024, 300, alphabet);
  SchedulerOptions o;
  o.n_batch = 32;
  Scheduler s(e, tok, o, nullptr);
  auto a = s.submit(job("a", 20));
  s.step();  // a's prompt
  s.step();  // a decodes
  auto b = s.submit(job(std::string(200, 'q') + "a", 2));
  Output ob;
  int steps_with_b_prompt = 0;
  const size_t before = e.batches.size();
  while (!b->take(ob, 0)) s.step();
  for (size_t i = before; i < e.batches.size(); ++i) {
    const auto& batch = e.batches[i];
    ASSERT_LE(batch.size(), 32u);
    int prompt = 0;
    bool a_decoded = false;
    for (const BatchToken& t : batch) {
      if (t.seq == 1 && !t.logits) ++prompt;
      if (t.seq == 0) a_decoded = true;
    }
    if (prompt > 0) {
      ++steps_with_b_prompt;
      EXPECT_TRUE(a_decoded) << "a stalled while b's prompt ran";
    }
  }
  EXPECT_GE(steps_with_b_prompt, 200 / 31);
  EXPECT_EQ(ob.text, "bc");
}

TEST(Scheduler, CancelFreesTheSlotForTheNextRequest) {
  Tokenizer tok = byte_tokenizer();
  FakeEngine e(1, 64, 300, alphabet);
  Scheduler s(e, tok, {}, nullptr);
  auto a = s.submit(job("a"));
  auto b = s.submit(job("x"));
  s.step();
  s.step();
  a->cancel();
  Output oa, ob;
  ob = run_to_end(s, b);
  ASSERT_TRUE(a->take(oa, 0));
  EXPECT_EQ(oa.finish, Finish::kCancelled);
  EXPECT_EQ(ob.text, "yz");
  EXPECT_EQ(s.stats().active, 0);
}

TEST(Scheduler, CancelWhileQueued) {
  Tokenizer tok = byte_tokenizer();
  FakeEngine e(1, 64, 300, alphabet);
  Scheduler s(e, tok, {}, nullptr);
  auto a = s.submit(job("a"));
  auto b = s.submit(job("x"));
  s.step();
  b->cancel();
  s.step();
  Output ob;
  ASSERT_TRUE(b->take(ob, 0));
  EXPECT_EQ(ob.finish, Finish::kCancelled);
  EXPECT_EQ(s.stats().queued, 0);
}

TEST(Scheduler, FullQueueRefuses) {
  Tokenizer tok = byte_tokenizer();
  FakeEngine e(1, 64, 300, alphabet);
  SchedulerOptions o;
  o.max_queue = 1;
  Metrics m;
  Scheduler s(e, tok, o, &m);
  EXPECT_TRUE(s.submit(job("a")));  // takes the free slot
  EXPECT_TRUE(s.submit(job("a")));  // waits
  EXPECT_FALSE(s.submit(job("a")));
  EXPECT_NE(m.render(s.stats()).find("bitnet_requests_rejected_total 1"), std::string::npos);
}

TEST(Scheduler, SharedPrefixIsNotRecomputed) {
  Tokenizer tok = byte_tokenizer();
  FakeEngine e(1, 256, 300, alphabet);
  Scheduler s(e, tok, {}, nullptr);
  run_to_end(s, s.submit(job("qqqqqqqqqqqqqqqqqqqqa", 2)));
  const size_t before = e.batches.size();
  Output out = run_to_end(s, s.submit(job("qqqqqqqqqqqqqqqqqqqqm", 2)));
  EXPECT_EQ(out.text, "no");
  // The second prompt runs only its last token: the 20 q's are still in the slot.
  EXPECT_EQ(e.batches[before].size(), 1u);
  EXPECT_EQ(e.batches[before][0].token, 'm');
}

TEST(Scheduler, EngineErrorEndsTheBatchsRequestsWithTheMessage) {
  Tokenizer tok = byte_tokenizer();
  FakeEngine e(1, 64, 300, alphabet);
  Scheduler s(e, tok, {}, nullptr);
  e.fail_next = true;
  Output out = run_to_end(s, s.submit(job("a")));
  EXPECT_EQ(out.finish, Finish::kError);
  EXPECT_NE(out.error.find("fake engine failure"), std::string::npos);
  // The slot is usable again.
  EXPECT_EQ(run_to_end(s, s.submit(job("x"))).text, "yz");
}

// A NaN in one sequence's logits ends that request with the sampler's message; the others of the
// batch go on, the server's sampling threads survive, and the slot takes the next request.
TEST(Scheduler, NanLogitsEndOnlyThatRequestWithAnError) {
  Tokenizer tok = byte_tokenizer();
  FakeEngine e(2, 64, 300, alphabet);
  e.nan_after = 'm';
  for (const float temp : {0.0f, 0.7f}) {
    SCOPED_TRACE(temp);
    Scheduler s(e, tok, {}, nullptr);
    Job bad = job("k"), good = job("s");
    bad.sampling.temperature = good.sampling.temperature = temp;
    bad.sampling.top_k = good.sampling.top_k = 1;  // the script's token, drawn at any temperature
    auto rb = s.submit(bad), rg = s.submit(good);
    Output ob = run_to_end(s, rb), og = run_to_end(s, rg);
    EXPECT_EQ(ob.finish, Finish::kError);
    EXPECT_NE(ob.error.find("NaN logit"), std::string::npos) << ob.error;
    EXPECT_EQ(ob.text, "lm");
    EXPECT_EQ(og.finish, Finish::kStop);
    EXPECT_EQ(og.text, "tuvwxyz");
    // The failed sequence's slot starts empty (its cache may hold what made the NaN); the other
    // keeps its cache for a later prefix.
    EXPECT_EQ(std::min(e.n_past(0), e.n_past(1)), 0);
    EXPECT_GT(std::max(e.n_past(0), e.n_past(1)), 0);
    EXPECT_EQ(run_to_end(s, s.submit(job("x"))).text, "yz");
  }
}

TEST(Scheduler, LogprobsOfTheChosenAndTopTokens) {
  Tokenizer tok = byte_tokenizer();
  FakeEngine e(1, 64, 300, alphabet);
  Scheduler s(e, tok, {}, nullptr);
  Job j = job("a", 3);
  j.top_logprobs = 2;
  Output out = run_to_end(s, s.submit(j));
  ASSERT_EQ(out.logprobs.size(), 3u);
  EXPECT_EQ(out.logprobs[0].id, 'b');
  EXPECT_NEAR(out.logprobs[0].logprob, 10.0f - std::log(std::exp(10.0) + 299), 1e-4);
  ASSERT_EQ(out.logprobs[0].top.size(), 2u);
  EXPECT_EQ(out.logprobs[0].top[0].first, 'b');
  EXPECT_LT(out.logprobs[0].top[1].second, out.logprobs[0].top[0].second);
}

// An engine that also offers each row's largest logits (as the GPU's does), found here on the host
// from the scripted logits; counts the steps that took that path and the k they asked for.
class FakeTopEngine final : public FakeEngine {
 public:
  using FakeEngine::FakeEngine;
  int max_top_k() const override { return 16; }
  TopRows forward_batch_top(std::span<const BatchToken> batch, int k) override {
    const float* l = forward_batch(batch);
    int rows = 0;
    for (const BatchToken& b : batch) rows += b.logits;
    const size_t V = static_cast<size_t>(n_vocab()), K = static_cast<size_t>(k);
    val_.resize(static_cast<size_t>(rows) * K);
    id_.resize(val_.size());
    lz_.resize(static_cast<size_t>(rows));
    for (size_t r = 0; r < static_cast<size_t>(rows); ++r)
      top_row(std::span<const float>(l + r * V, V), K, val_.data() + r * K, id_.data() + r * K,
              lz_.data() + r);
    ks.push_back(k);
    return {k, val_.data(), id_.data(), lz_.data()};
  }
  std::vector<int> ks;

 private:
  std::vector<float> val_, lz_;
  std::vector<int32_t> id_;
};

// Where every row's sampler can work from the engine's top logits, the steps ask for them (k: the
// most any row needs, its top_k or its top_logprobs); the answers and logprobs are the full
// logits'. A repetition penalty or top-k off takes the whole rows.
TEST(Scheduler, SamplesFromTheEnginesTopLogitsWhereTheOptionsAllow) {
  Tokenizer tok = byte_tokenizer();
  auto sampled = [](int top_k, float penalty, int top_logprobs) {
    Job j = job("k", 6);
    j.sampling.temperature = 0.7f;
    j.sampling.top_k = top_k;
    j.sampling.repeat_penalty = penalty;
    j.sampling.seed = 3;
    j.top_logprobs = top_logprobs;
    return j;
  };
  struct Case {
    Job j;
    int want_k;  // 0: whole rows
  };
  const std::vector<Case> cases = {{sampled(5, 1.0f, -1), 5}, {sampled(5, 1.0f, 9), 9},
                                   {job("k", 6), 1},          {sampled(0, 1.0f, -1), 0},
                                   {sampled(5, 1.1f, -1), 0}, {sampled(40, 1.0f, -1), 0}};  // 40 > max_top_k
  for (size_t c = 0; c < cases.size(); ++c) {
    FakeEngine plain(1, 64, 300, alphabet);
    FakeTopEngine top(1, 64, 300, alphabet);
    Scheduler sp(plain, tok, {}, nullptr), st(top, tok, {}, nullptr);
    const Output want = run_to_end(sp, sp.submit(cases[c].j));
    const Output got = run_to_end(st, st.submit(cases[c].j));
    EXPECT_EQ(got.text, want.text) << c;
    EXPECT_EQ(got.text, "lmnopq") << c;
    ASSERT_EQ(got.logprobs.size(), want.logprobs.size()) << c;
    for (size_t i = 0; i < got.logprobs.size(); ++i) {
      EXPECT_EQ(got.logprobs[i].id, want.logprobs[i].id);
      EXPECT_NEAR(got.logprobs[i].logprob, want.logprobs[i].logprob, 1e-6);
      EXPECT_EQ(got.logprobs[i].top, want.logprobs[i].top) << c << " token " << i;
    }
    if (cases[c].want_k == 0) {
      EXPECT_TRUE(top.ks.empty()) << c;
    } else {
      EXPECT_EQ(top.ks, std::vector<int>(6, cases[c].want_k)) << c;
    }
  }
}

TEST(Scheduler, SplitUtf8CharacterIsHeldUntilComplete) {
  Tokenizer tok = byte_tokenizer();
  // 'a' -> 0xC3 -> 0xA9 ("é" in two byte tokens) -> EOS
  FakeEngine e(1, 64, 300, [](int32_t t) { return t == 'a' ? 0xC3 : t == 0xC3 ? 0xA9 : kEos; });
  Scheduler s(e, tok, {}, nullptr);
  auto r = s.submit(job("a"));
  Output out;
  s.step();  // prompt -> 0xC3 sampled
  r->take(out, 0);
  EXPECT_EQ(out.text, "");
  Output rest = run_to_end(s, r);
  EXPECT_EQ(rest.text, "\xC3\xA9");
}

// At the end (here max_tokens), text the stop matcher holds ("x", which could begin the stop
// string "xy") comes before the decoder's incomplete character (0xC3), in that order.
TEST(Scheduler, HeldStopPrefixComesBeforeTheDecodersLastBytes) {
  Tokenizer tok = byte_tokenizer();
  FakeEngine e(1, 64, 300, [](int32_t t) { return t == 'a' ? 'x' : t == 'x' ? 0xC3 : kEos; });
  Scheduler s(e, tok, {}, nullptr);
  Job j = job("a", 2);
  j.stop = {"xy"};
  Output out = run_to_end(s, s.submit(j));
  EXPECT_EQ(out.text, "x\xC3");
  EXPECT_EQ(out.finish, Finish::kLength);
}

TEST(Scheduler, ThreadedRequestsFromManyClients) {
  Tokenizer tok = byte_tokenizer();
  FakeEngine e(3, 64, 300, alphabet);
  Metrics m;
  Scheduler s(e, tok, {}, &m);
  s.start();
  std::vector<std::thread> clients;
  std::vector<std::string> texts(12);
  for (int i = 0; i < 12; ++i) {
    clients.emplace_back([&, i] {
      auto r = s.submit(job(std::string(1, static_cast<char>('a' + i)), 5));
      if (!r) return;
      Output out;
      while (!r->take(out, 50)) {
      }
      texts[static_cast<size_t>(i)] = out.text;
    });
  }
  for (auto& t : clients) t.join();
  for (int i = 0; i < 12; ++i) {
    std::string want;
    for (char c = static_cast<char>('a' + i + 1); want.size() < 5 && c <= 'z'; ++c) want += c;
    EXPECT_EQ(texts[static_cast<size_t>(i)], want) << i;
  }
  s.stop();
  const std::string metrics = m.render(s.stats());
  EXPECT_NE(metrics.find("bitnet_requests_finished_total 12"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("bitnet_time_to_first_token_seconds_count 12"), std::string::npos);
}

}  // namespace
}  // namespace bitnet::server
