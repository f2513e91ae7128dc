#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "inference/forward.h"
#include "inference/perplexity.h"
#include "inference/sampler.h"
#include "inference/token_loop.h"
#include "model/synthetic.h"
#include "ops/vec.h"

namespace bitnet {

TEST(Sampler, GreedyIsArgmaxWithLowestIdOnTies) {
  const std::vector<float> l = {0.5f, 2.0f, -1.0f, 2.0f};
  EXPECT_EQ(argmax(l), 1);
  SamplerOptions o;
  o.temperature = 0;
  Sampler s(o);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(s.sample(l, {}), 1);
}

TEST(Sampler, SeedReproducibleAndFiltersApply) {
  std::vector<float> l(50);
  for (int i = 0; i < 50; ++i) l[static_cast<size_t>(i)] = static_cast<float>(i % 7) * 0.3f;
  SamplerOptions o;
  o.temperature = 1.0f;
  o.seed = 42;
  o.top_k = 0;
  o.top_p = 1.0f;
  o.min_p = 0.0f;
  Sampler a(o), b(o);
  std::map<int, int> seen;
  for (int i = 0; i < 200; ++i) {
    const int32_t x = a.sample(l, {});
    ASSERT_EQ(x, b.sample(l, {}));
    ++seen[x];
  }
  EXPECT_GT(seen.size(), 10u);  // genuinely random at temperature 1
  o.top_k = 1;
  Sampler k1(o);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(k1.sample(l, {}), 6);  // first id with the max logit
  o.top_k = 0;
  o.min_p = 0.99f;  // only tokens with the max probability survive
  Sampler mp(o);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(mp.sample(l, {}) % 7, 6);
}

TEST(Sampler, RepeatPenaltyDemotesRecentTokens) {
  const std::vector<float> l = {1.0f, 0.9f, 0.1f};
  SamplerOptions o;
  o.temperature = 0;
  o.repeat_penalty = 2.0f;
  Sampler s(o);
  const std::vector<int32_t> hist = {0};
  EXPECT_EQ(s.sample(l, hist), 1);  // 1.0 / 2 = 0.5 < 0.9
}

// top_k_logits is what partial_sort by (larger logit, then lower id) gives, on ties, infinities
// and sizes around its 64-value blocks.
TEST(Sampler, TopKLogitsIsPartialSortByLogitThenId) {
  std::mt19937 rng(3);
  for (const size_t n :
       {size_t{1}, size_t{5}, size_t{63}, size_t{64}, size_t{65}, size_t{1000}, size_t{128256}})
    for (const int spread : {3, 1000000}) {  // 3: many ties
      std::vector<float> l(n);
      for (auto& v : l)
        v = static_cast<float>(static_cast<int>(rng() % static_cast<unsigned>(spread)) - spread / 2) * 0.01f;
      if (n > 10) {
        l[n / 2] = -std::numeric_limits<float>::infinity();
        l[n / 3] = std::numeric_limits<float>::infinity();
      }
      std::vector<std::pair<float, int32_t>> all(n);
      for (size_t i = 0; i < n; ++i) all[i] = {l[i], static_cast<int32_t>(i)};
      for (const size_t k : {size_t{0}, size_t{1}, size_t{2}, size_t{40}, n - 1, n, n + 5}) {
        SCOPED_TRACE("n " + std::to_string(n) + " spread " + std::to_string(spread) + " k " +
                     std::to_string(k));
        const size_t kk = std::min(k, n);
        std::vector<std::pair<float, int32_t>> want = all;
        std::partial_sort(want.begin(), want.begin() + static_cast<ptrdiff_t>(kk), want.end(),
                          [](const auto& a, const auto& b) {
                            return a.first > b.first || (a.first == b.first && a.second < b.second);
                          });
        want.resize(kk);
        EXPECT_EQ(top_k_logits(l, k), want);
      }
    }
}

// top_row writes top_k_logits' list into its arrays and the row's log-sum-exp (ops/vec.h), and
// nothing past the k entries.
TEST(Sampler, TopRowIsTheListAndTheLogSumExp) {
  std::mt19937 rng(5);
  std::vector<float> l(1000);
  for (auto& v : l) v = static_cast<float>(static_cast<int>(rng() % 201) - 100) * 0.05f;
  for (const size_t k : {size_t{1}, size_t{7}, size_t{1000}}) {
    std::vector<float> val(k + 1, -7.0f), lz(1);
    std::vector<int32_t> id(k + 1, -7);
    top_row(l, k, val.data(), id.data(), lz.data());
    const auto want = top_k_logits(l, k);
    for (size_t i = 0; i < k; ++i) {
      EXPECT_EQ(val[i], want[i].first) << i;
      EXPECT_EQ(id[i], want[i].second) << i;
    }
    EXPECT_EQ(val[k], -7.0f);
    EXPECT_EQ(id[k], -7);
    EXPECT_EQ(lz[0], static_cast<float>(log_sum_exp_row(l.data(), static_cast<int64_t>(l.size()))));
  }
}

// A NaN logit anywhere (first value, inside a 64-value block the scan would skip, the tail) is
// refused by every way of choosing a token, naming its id; +inf cannot be sampled at a temperature
// (every weight would be NaN), -inf can (it weighs 0).
TEST(Sampler, NonFiniteLogitsAreRefused) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  for (const size_t at : {size_t{0}, size_t{3}, size_t{700}, size_t{999}}) {
    SCOPED_TRACE(at);
    std::vector<float> l(1000);
    for (size_t i = 0; i < l.size(); ++i) l[i] = static_cast<float>(i % 13) * 0.1f;
    l[at] = nan;
    try {
      argmax(l);
      ADD_FAILURE() << "argmax took a NaN";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("NaN logit (token id " + std::to_string(at) + ")"),
                std::string::npos)
          << e.what();
    }
    EXPECT_THROW(top_k_logits(l, 5), Error);
    // top_row marks the row (its NaN's id in every entry), and sample_top refuses the mark, greedy
    // or not; so does it a NaN from the device's top-k (sorted above +inf there).
    std::vector<float> val(5), lz(1);
    std::vector<int32_t> id(5);
    top_row(l, 5, val.data(), id.data(), lz.data());
    std::vector<std::pair<float, int32_t>> marked;
    for (size_t i = 0; i < 5; ++i) {
      EXPECT_TRUE(std::isnan(val[i])) << i;
      EXPECT_EQ(id[i], static_cast<int32_t>(at)) << i;
      marked.emplace_back(val[i], id[i]);
    }
    EXPECT_TRUE(std::isnan(lz[0]));
    SamplerOptions o;
    o.temperature = 0;
    EXPECT_THROW(Sampler(o).sample(l, {}), Error);
    o.top_k = 5;
    EXPECT_THROW(Sampler(o).sample_top(marked, l.size()), Error);
    o.temperature = 0.8f;
    EXPECT_THROW(Sampler(o).sample_top(marked, l.size()), Error);
    for (const int k : {0, 40}) {
      o.top_k = k;
      EXPECT_THROW(Sampler(o).sample(l, {}), Error);
    }
  }
  // Candidates as a device gives them: a NaN first (greedy reads only the first), or among the
  // ones a temperature draws from.
  SamplerOptions g;
  g.temperature = 0;
  g.top_k = 3;
  const std::vector<std::pair<float, int32_t>> dev_first = {{nan, 9}, {2.0f, 1}, {1.0f, 4}},
                                               dev_inside = {{2.0f, 1}, {nan, 9}, {1.0f, 4}};
  EXPECT_THROW(Sampler(g).sample_top(dev_first, 10), Error);
  g.temperature = 0.8f;
  EXPECT_THROW(Sampler(g).sample_top(dev_first, 10), Error);
  EXPECT_THROW(Sampler(g).sample_top(dev_inside, 10), Error);
  std::vector<float> l(200, 0.5f);
  l[150] = inf;
  SamplerOptions o;
  o.temperature = 0;
  EXPECT_EQ(Sampler(o).sample(l, {}), 150);  // greedy takes +inf
  o.temperature = 1;
  EXPECT_THROW(Sampler(o).sample(l, {}), Error);
  l[150] = -inf;
  l[7] = 3.0f;
  o.top_k = 1;
  EXPECT_EQ(Sampler(o).sample(l, {}), 7);
  o.top_k = 0;
  for (int i = 0; i < 20; ++i) EXPECT_NE(Sampler(o).sample(l, {}), 150);
}

// sample_top from a row's largest logits (as the GPU finds them) picks what sample() picks from the
// whole row, draw after draw (the random state stays in step), for every filter combination; more
// candidates than needed change nothing.
TEST(Sampler, SampleTopGivesSampleOnTheSameLogits) {
  std::mt19937 rng(11);
  std::normal_distribution<float> d(0.0f, 2.0f);
  constexpr size_t n = 1000;
  std::vector<float> l(n);
  struct Case {
    float temperature;
    int top_k;
    float top_p, min_p;
  };
  for (const Case c :
       {Case{0.8f, 40, 0.95f, 0.05f}, Case{1.5f, 7, 1.0f, 0.0f}, Case{0.0f, 40, 0.95f, 0.05f},
        Case{0.3f, 2000, 0.5f, 0.0f}, Case{1.0f, 1, 1.0f, 0.0f}, Case{2.0f, 256, 0.99f, 0.01f}}) {
    SamplerOptions o;
    o.temperature = c.temperature;
    o.top_k = c.top_k;
    o.top_p = c.top_p;
    o.min_p = c.min_p;
    o.seed = 9;
    Sampler whole(o), top(o);
    const size_t k = top.top_candidates(n);
    ASSERT_EQ(k, c.temperature <= 0 ? 1 : std::min<size_t>(static_cast<size_t>(c.top_k), n));
    int differ = 0;
    std::vector<int32_t> seen;
    for (int i = 0; i < 300; ++i) {
      for (auto& v : l) v = std::round(d(rng) * 4.0f) / 4.0f;  // many ties
      const auto cand = top_k_logits(l, k + static_cast<size_t>(i % 3));
      const int32_t a = whole.sample(l, {}), b = top.sample_top(cand, n);
      differ += a != b;
      seen.push_back(a);
    }
    EXPECT_EQ(differ, 0) << "temperature " << c.temperature << " top_k " << c.top_k;
    std::sort(seen.begin(), seen.end());
    if (c.temperature > 0 && c.top_k > 1) {  // the case is random, not a constant pick
      EXPECT_GT(std::unique(seen.begin(), seen.end()) - seen.begin(), 20);
    }
  }
}

TEST(Sampler, SampleTopNeedsTopKWithoutPenaltyAndEnoughCandidates) {
  const std::vector<float> l = {0.1f, 0.5f, 0.3f, 0.2f};
  const auto cand = top_k_logits(l, 2);
  SamplerOptions o;
  o.top_k = 0;  // off: every logit may be drawn
  EXPECT_EQ(Sampler(o).top_candidates(4), 0u);
  EXPECT_THROW(Sampler(o).sample_top(cand, 4), Error);
  o.top_k = 3;
  EXPECT_EQ(Sampler(o).top_candidates(4), 3u);
  EXPECT_THROW(Sampler(o).sample_top(cand, 4), Error);  // 2 of the 3 it needs
  EXPECT_EQ(Sampler(o).top_candidates(2), 2u);          // no more than the vocabulary
  o.repeat_penalty = 1.3f;                              // changes logits outside any top list
  EXPECT_EQ(Sampler(o).top_candidates(4), 0u);
  o.repeat_last_n = 0;  // ... unless it looks at no tokens
  EXPECT_EQ(Sampler(o).top_candidates(4), 3u);
  o.temperature = 0;
  EXPECT_EQ(Sampler(o).top_candidates(4), 1u);
  EXPECT_EQ(Sampler(o).sample_top(cand, 4), 1);
}

// A one-layer model with a 61-token vocabulary (token 60 serves as BOS).
static ModelConfig small_config() {
  ModelConfig c = config_2b4t();
  c.n_vocab = 61;
  c.n_embd = 64;
  c.n_layer = 1;
  c.n_head = 2;
  c.n_head_kv = 1;
  c.head_dim = 32;
  c.rope_dim = 32;
  c.n_ff = 64;
  return c;
}

TEST(Perplexity, FollowsTheLlamaPerplexityConvention) {
  const ModelConfig c = small_config();
  const Model m = make_synthetic_model(c, 9);
  std::vector<int32_t> toks;
  for (int i = 0; i < 70; ++i) toks.push_back((i * 13 + 5) % 61);
  const int64_t n_ctx = 16;
  Session s(m, {n_ctx, 2});
  const auto r = perplexity(s, toks, n_ctx, 3, true, 60);
  EXPECT_EQ(r.windows, 3);
  EXPECT_EQ(r.tokens, 3 * (n_ctx - 1 - n_ctx / 2));
  // Recompute by hand: window w = toks[16w .. 16w+15] with the first replaced by BOS (60),
  // positions 8..14 predict the next token.
  Session s2(m, {n_ctx, 1});
  double nll = 0;
  int count = 0;
  for (int w = 0; w < 3; ++w) {
    std::vector<int32_t> win(toks.begin() + 16 * w, toks.begin() + 16 * (w + 1));
    win[0] = 60;
    s2.truncate(0);
    const float* l = s2.forward(win, true);
    for (int p = 8; p < 15; ++p) {
      double z = 0;
      for (int v = 0; v < 61; ++v) z += std::exp(static_cast<double>(l[p * 61 + v]));
      nll -= static_cast<double>(l[p * 61 + win[static_cast<size_t>(p + 1)]]) - std::log(z);
      ++count;
    }
  }
  EXPECT_NEAR(r.ppl, std::exp(nll / count), 1e-6 * r.ppl);
  EXPECT_GT(r.ppl_err, 0);
  EXPECT_THROW(perplexity(s, std::span(toks).first(20), n_ctx, 0, true, 60), Error);  // < 2 windows
}

TEST(Perplexity, KlOfLogitsMatchesAHandComputedValue) {
  // P = (1/2, 1/2), Q = (1/4, 3/4): KL = 1/2 ln(2) + 1/2 ln(2/3) = 1/2 ln(4/3).
  const float p[2] = {0.0f, 0.0f}, q[2] = {0.0f, static_cast<float>(std::log(3.0))};
  EXPECT_NEAR(kl_of_logits(p, q, 2), 0.5 * std::log(4.0 / 3.0), 1e-7);
  EXPECT_NEAR(log_sum_exp(q, 2), std::log(4.0), 1e-7);
  const float q_shifted[2] = {100.0f,
                              100.0f + static_cast<float>(std::log(3.0))};  // softmax is shift-invariant
  EXPECT_NEAR(kl_of_logits(p, q_shifted, 2), 0.5 * std::log(4.0 / 3.0), 1e-5);
  EXPECT_EQ(kl_of_logits(q, q, 2), 0.0);
  // Large logits must not overflow: log_sum_exp subtracts the maximum first.
  const float big[3] = {1000.0f, 999.0f, -1000.0f};
  EXPECT_NEAR(log_sum_exp(big, 3), 1000.0 + std::log(1.0 + std::exp(-1.0)), 1e-9);
}

TEST(Perplexity, KlDivergenceComparesTwoModelsOverTheSameWindows) {
  const ModelConfig c = small_config();
  const Model f32 = make_synthetic_model(c, 9, DType::F32);
  const Model bf16 = make_synthetic_model(c, 9, DType::BF16);  // same weights, head/embedding rounded to bf16
  std::vector<int32_t> toks;
  for (int i = 0; i < 70; ++i) toks.push_back((i * 13 + 5) % 61);
  const int64_t n_ctx = 16;
  Session a(f32, {n_ctx, 2}), b(bf16, {n_ctx, 1}), a2(f32, {n_ctx, 1});

  const KlResult self = kl_divergence(a, a2, toks, n_ctx, 3, true, 60);
  EXPECT_EQ(self.kl_mean, 0.0);
  EXPECT_EQ(self.kl_max, 0.0);
  EXPECT_EQ(self.same_top, 1.0);
  EXPECT_EQ(self.tokens, 3 * (n_ctx - 1 - n_ctx / 2));

  const KlResult r = kl_divergence(a, b, toks, n_ctx, 3, true, 60);
  EXPECT_EQ(r.tokens, 21);
  EXPECT_EQ(r.windows, 3);
  EXPECT_GT(r.kl_mean, 0.0);
  EXPECT_LT(r.kl_mean, 1e-2);  // bf16 rounding of the head is a small change
  EXPECT_LE(r.kl_median, r.kl_p99);
  EXPECT_LE(r.kl_p99, r.kl_max);
  EXPECT_GE(r.kl_max * 21, r.kl_mean * 21 - 1e-12);
  // Each side's perplexity is exactly what perplexity() gives on its own.
  EXPECT_EQ(r.base.ppl, perplexity(a, toks, n_ctx, 3, true, 60).ppl);
  EXPECT_EQ(r.test.ppl, perplexity(b, toks, n_ctx, 3, true, 60).ppl);
  EXPECT_NE(r.base.ppl, r.test.ppl);

  // Recompute the mean KL by hand.
  double kl = 0;
  for (int w = 0; w < 3; ++w) {
    std::vector<int32_t> win(toks.begin() + 16 * w, toks.begin() + 16 * (w + 1));
    win[0] = 60;
    a.truncate(0);
    b.truncate(0);
    const float* la0 = a.forward(win, true);
    const std::vector<float> la(la0, la0 + 16 * 61);
    const float* lb = b.forward(win, true);
    for (int p = 8; p < 15; ++p) {
      double za = 0, zb = 0;
      for (int v = 0; v < 61; ++v) {
        za += std::exp(static_cast<double>(la[p * 61 + v]));
        zb += std::exp(static_cast<double>(lb[p * 61 + v]));
      }
      for (int v = 0; v < 61; ++v) {
        const double pa = std::exp(static_cast<double>(la[p * 61 + v])) / za;
        const double pb = std::exp(static_cast<double>(lb[p * 61 + v])) / zb;
        kl += pa * std::log(pa / pb);
      }
    }
  }
  EXPECT_NEAR(r.kl_mean, kl / 21, 1e-9 + 1e-6 * r.kl_mean);

  ModelConfig c2 = small_config();
  c2.n_vocab = 62;
  const Model other = make_synthetic_model(c2, 9, DType::F32);
  Session o(other, {n_ctx, 1});
  EXPECT_THROW(kl_divergence(a, o, toks, n_ctx, 3, true, 60), Error);  // vocabularies differ
}

}  // namespace bitnet

namespace bitnet {

// An Engine that finds a token's candidates itself, as the GPU does: the CPU Session's logits
// reduced to the host's top-k list.
class TopSession final : public Engine {
 public:
  TopSession(const Model& m, const SessionOptions& o) : s_(m, o) {}
  const float* forward(std::span<const int32_t> tokens, bool all_logits) override {
    return s_.forward(tokens, all_logits);
  }
  int max_top_k() const override { return 32; }
  void forward_top(int32_t token, int k, float* val, int32_t* id) override {
    const float* l = s_.forward(std::span(&token, 1));
    float log_z = 0;  // not part of forward_top's answer
    top_row(std::span(l, static_cast<size_t>(s_.model().cfg.n_vocab)), static_cast<size_t>(k), val, id,
            &log_z);
    ++tops;
  }
  int64_t n_past() const override { return s_.n_past(); }
  int64_t n_ctx() const override { return s_.n_ctx(); }
  void truncate(int64_t n) override { s_.truncate(n); }
  const Model& model() const override { return s_.model(); }
  int tops = 0;

 private:
  Session s_;
};

// The loop draws the same tokens from the engine's candidates as from whole rows, and takes them
// only where the options allow (greedy; top-k within the engine's k; no repetition penalty).
TEST(TokenLoop, DrawsTheSameTokensFromTheEnginesCandidates) {
  const Model m = make_synthetic_model(small_config(), 4);
  // The random model's logits span about 27, so temperatures of 5 without top-p or min-p (which
  // look at temperature-1 probabilities) make the draws random.
  struct Case {
    float temperature;
    int top_k;
    float penalty, top_p, min_p;
    bool top;
  };
  for (const Case c :
       {Case{0, 40, 1, 0.97f, 0.01f, true}, Case{1.2f, 20, 1, 0.97f, 0.01f, true}, Case{5, 20, 1, 1, 0, true},
        Case{5, 32, 1, 0.9f, 0.02f, true}, Case{5, 33, 1, 1, 0, false}, Case{5, 0, 1, 1, 0, false},
        Case{5, 20, 1.3f, 1, 0, false}}) {
    SamplerOptions o;
    o.temperature = c.temperature;
    o.top_k = c.top_k;
    o.top_p = c.top_p;
    o.min_p = c.min_p;
    o.repeat_penalty = c.penalty;
    o.seed = 17;
    Session plain(m, {64, 1});
    TopSession top(m, {64, 1});
    Sampler sp(o), st(o);
    TokenLoop lp(plain, sp), lt(top, st);
    EXPECT_FALSE(lp.uses_top());
    EXPECT_EQ(lt.uses_top(), c.top) << c.top_k;
    std::vector<int32_t> hp = {60, 3, 14, 15}, ht = hp;
    lp.feed(hp);
    lt.feed(ht);
    for (int i = 0; i < 40; ++i) {
      const int32_t a = lp.sample(hp), b = lt.sample(ht);
      ASSERT_EQ(a, b) << "top_k " << c.top_k << " token " << i;
      hp.push_back(a);
      ht.push_back(b);
      lp.feed(a);
      lt.feed(b);
    }
    EXPECT_EQ(top.tops, c.top ? 40 : 0) << c.top_k;
    if (c.temperature >= 5 && c.top_p == 1) {  // random, not one repeated token
      std::sort(hp.begin() + 4, hp.end());
      EXPECT_GT(std::unique(hp.begin() + 4, hp.end()) - (hp.begin() + 4), 5);
    }
  }
}

// Nothing to sample before the first feed, or after a feed that failed (a full context): a failed
// check (a caller's error), not the previous step's token, on both paths.
TEST(TokenLoop, SampleAfterAFailedFeedIsAnError) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // the sessions' thread pools
  const Model m = make_synthetic_model(small_config(), 4);
  SamplerOptions o;
  o.temperature = 0;
  for (const bool top : {false, true}) {
    SCOPED_TRACE(top);
    Session plain(m, {8, 1});
    TopSession candidates(m, {8, 1});
    Engine& e = top ? static_cast<Engine&>(candidates) : static_cast<Engine&>(plain);
    Sampler s(o);
    TokenLoop loop(e, s);
    std::vector<int32_t> h = {60, 3, 14, 15, 9, 2, 6};
    if (top) {
      EXPECT_DEATH(loop.sample(h), "nothing fed");
    }
    loop.feed(h);
    int32_t t = loop.sample(h);
    loop.feed(t);  // the eighth position: the context is full
    t = loop.sample(h);
    EXPECT_THROW(loop.feed(t), Error);
    EXPECT_DEATH(loop.sample(h), "nothing fed");
  }
}

}  // namespace bitnet
