#pragma once
// A scripted BatchEngine for the scheduler's tests: the next token is a function of the last one
// (greedy sampling then follows it exactly), positions are tracked per sequence like a real
// Session's, and every batch is recorded so tests can check how steps were composed.
#include <functional>
#include <limits>
#include <vector>

#include "core/error.h"
#include "server/engine.h"

namespace bitnet::server::testing {

class FakeEngine : public BatchEngine {
 public:
  FakeEngine(int n_seq, int64_t n_ctx, int32_t n_vocab, std::function<int32_t(int32_t)> next)
      : n_past_(static_cast<size_t>(n_seq), 0), n_ctx_(n_ctx), n_vocab_(n_vocab), next_(std::move(next)) {}

  const float* forward_batch(std::span<const BatchToken> batch) override {
    if (fail_next) {
      fail_next = false;
      fail("fake engine failure");
    }
    batches.emplace_back(batch.begin(), batch.end());
    logits_.clear();
    int prev_seq = -1;
    std::vector<bool> seen(n_past_.size(), false);
    for (const BatchToken& b : batch) {
      if (b.seq < 0 || b.seq >= n_seq()) fail("bad seq {}", b.seq);
      if (b.seq != prev_seq) {
        if (seen[static_cast<size_t>(b.seq)]) fail("seq {} not consecutive in the batch", b.seq);
        seen[static_cast<size_t>(b.seq)] = true;
        prev_seq = b.seq;
      }
      if (b.token < 0 || b.token >= n_vocab_) fail("bad token {}", b.token);
      int64_t& p = n_past_[static_cast<size_t>(b.seq)];
      if (p >= n_ctx_) fail("seq {} overflows its context", b.seq);
      ++p;
      if (b.logits) {
        std::vector<float> row(static_cast<size_t>(n_vocab_), 0.0f);
        row[static_cast<size_t>(next_(b.token))] = 10.0f;
        if (b.token == nan_after) row[1] = std::numeric_limits<float>::quiet_NaN();
        logits_.insert(logits_.end(), row.begin(), row.end());
      }
    }
    return logits_.data();
  }
  int64_t n_past(int seq) const override { return n_past_[static_cast<size_t>(seq)]; }
  void truncate(int seq, int64_t n) override {
    BN_CHECK(n <= n_past_[static_cast<size_t>(seq)]);
    n_past_[static_cast<size_t>(seq)] = n;
  }
  int n_seq() const override { return static_cast<int>(n_past_.size()); }
  int64_t n_ctx() const override { return n_ctx_; }
  int32_t n_vocab() const override { return n_vocab_; }

  std::vector<std::vector<BatchToken>> batches;
  bool fail_next = false;
  int32_t nan_after = -1;  // the logits after this token hold a NaN (a broken model)

 private:
  std::vector<int64_t> n_past_;
  int64_t n_ctx_;
  int32_t n_vocab_;
  std::function<int32_t(int32_t)> next_;
  std::vector<float> logits_;
};

}  // namespace bitnet::server::testing
