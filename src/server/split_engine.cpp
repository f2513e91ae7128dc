#include "server/split_engine.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "inference/sampler.h"

namespace bitnet::server {

void SeqSteps::decode_top(std::span<const int32_t>, std::span<const int32_t>, int k, float*, int32_t*,
                          float*) {
  fail("these steps do not find the top {} logits themselves (max_top_k() is 0)", k);
}

namespace {

// How a batch splits: each sequence's entries in batch order, each entry's output row (-1: no
// logits), the decode step's entries (sequences with one token), in batch order.
struct Plan {
  std::vector<std::vector<size_t>> of_seq;
  std::vector<int64_t> out_row;
  int64_t rows = 0;
  std::vector<int32_t> tokens, seqs;
  std::vector<size_t> entries;
  // A batch of decodes only, each wanting its output: the decode step's rows are the batch's.
  bool decodes_only(size_t batch_size) const {
    return entries.size() == batch_size && static_cast<int64_t>(entries.size()) == rows;
  }
};

// Checked before any work, as Session::forward_batch does, so a refused batch changes nothing.
Plan plan_batch(const SeqSteps& s, std::span<const BatchToken> batch) {
  const int n_seq = s.n_seq();
  Plan p;
  p.of_seq.resize(static_cast<size_t>(n_seq));
  p.out_row.assign(batch.size(), -1);
  for (size_t i = 0; i < batch.size(); ++i) {
    const BatchToken& b = batch[i];
    if (b.seq < 0 || b.seq >= n_seq) fail("forward_batch: sequence {} outside [0, {})", b.seq, n_seq);
    if (b.token < 0 || b.token >= s.n_vocab())
      fail("forward_batch: token id {} outside the vocabulary [0, {})", b.token, s.n_vocab());
    std::vector<size_t>& es = p.of_seq[static_cast<size_t>(b.seq)];
    if (!es.empty() && es.back() != i - 1)
      fail("forward_batch: sequence {}'s tokens are not consecutive in the batch", b.seq);
    es.push_back(i);
    if (b.logits) p.out_row[i] = p.rows++;
  }
  for (int q = 0; q < n_seq; ++q) {
    const int64_t n = static_cast<int64_t>(p.of_seq[static_cast<size_t>(q)].size());
    if (n > 0 && s.n_past(q) + n > s.n_ctx())
      fail("forward_batch: sequence {} would hold {} tokens, over its context of {}", q, s.n_past(q) + n,
           s.n_ctx());
  }
  for (size_t e = 0; e < batch.size(); ++e)
    if (p.of_seq[static_cast<size_t>(batch[e].seq)].size() == 1) {
      p.tokens.push_back(batch[e].token);
      p.seqs.push_back(batch[e].seq);
      p.entries.push_back(e);
    }
  return p;
}

class SplitEngine final : public BatchEngine {
 public:
  explicit SplitEngine(std::unique_ptr<SeqSteps> s) : s_(std::move(s)) {}

  const float* forward_batch(std::span<const BatchToken> batch) override {
    const size_t V = static_cast<size_t>(s_->n_vocab());
    const Plan p = plan_batch(*s_, batch);
    out_.resize(static_cast<size_t>(p.rows) * V);
    auto put = [&](size_t entry, const float* logits) {
      if (p.out_row[entry] >= 0)
        std::memcpy(out_.data() + static_cast<size_t>(p.out_row[entry]) * V, logits, V * 4);
    };
    // One decode step for every sequence with one token here, in batch order.
    if (!p.tokens.empty()) {
      const float* l = s_->decode(p.tokens, p.seqs);
      // Returned in place (a step of 64 on the 2B4T would copy 33 MB).
      if (p.decodes_only(batch.size())) return l;
      for (size_t j = 0; j < p.entries.size(); ++j) put(p.entries[j], l + j * V);
    }
    prompts(batch, p, put);
    return out_.data();
  }

  int max_top_k() const override { return s_->max_top_k(); }

  TopRows forward_batch_top(std::span<const BatchToken> batch, int k) override {
    if (k < 1 || k > s_->max_top_k()) fail("forward_batch_top: k = {} (1 to {})", k, s_->max_top_k());
    const size_t V = static_cast<size_t>(s_->n_vocab()), K = static_cast<size_t>(k);
    const Plan p = plan_batch(*s_, batch);
    const size_t rows = static_cast<size_t>(p.rows);
    val_.resize(rows * K);
    id_.resize(rows * K);
    lz_.resize(rows);
    const TopRows out{k, val_.data(), id_.data(), lz_.data()};
    if (!p.tokens.empty()) {
      const size_t n = p.tokens.size();
      if (p.decodes_only(batch.size())) {
        s_->decode_top(p.tokens, p.seqs, k, val_.data(), id_.data(), lz_.data());
        return out;
      }
      dv_.resize(n * K);
      di_.resize(n * K);
      dz_.resize(n);
      s_->decode_top(p.tokens, p.seqs, k, dv_.data(), di_.data(), dz_.data());
      for (size_t j = 0; j < n; ++j) {
        const int64_t r = p.out_row[p.entries[j]];
        if (r < 0) continue;
        std::copy_n(dv_.data() + j * K, K, val_.data() + static_cast<size_t>(r) * K);
        std::copy_n(di_.data() + j * K, K, id_.data() + static_cast<size_t>(r) * K);
        lz_[static_cast<size_t>(r)] = dz_[j];
      }
    }
    // A prompt's rows: the host finds what the device would (the last token's row, once a prompt).
    prompts(batch, p, [&](size_t entry, const float* logits) {
      const int64_t r = p.out_row[entry];
      if (r < 0) return;
      const size_t at = static_cast<size_t>(r);
      top_row(std::span<const float>(logits, V), K, val_.data() + at * K, id_.data() + at * K,
              lz_.data() + at);
    });
    return out;
  }

  int64_t n_past(int seq) const override { return s_->n_past(seq); }
  void truncate(int seq, int64_t n) override { s_->truncate(seq, n); }
  int n_seq() const override { return s_->n_seq(); }
  int64_t n_ctx() const override { return s_->n_ctx(); }
  int32_t n_vocab() const override { return s_->n_vocab(); }

 private:
  // A prompt call for every sequence with more than one token; put(entry, logits row).
  template <typename Put>
  void prompts(std::span<const BatchToken> batch, const Plan& p, Put&& put) {
    const size_t V = static_cast<size_t>(s_->n_vocab());
    std::vector<int32_t> tokens;
    for (int q = 0; q < s_->n_seq(); ++q) {
      const std::vector<size_t>& es = p.of_seq[static_cast<size_t>(q)];
      if (es.size() < 2) continue;
      tokens.clear();
      for (const size_t e : es) tokens.push_back(batch[e].token);
      // Every row only where an entry before the last wants its logits (the last's come anyway).
      const bool all = std::any_of(es.begin(), es.end() - 1, [&](size_t e) { return batch[e].logits; });
      const float* l = s_->prompt(q, tokens, all);
      if (all)
        for (size_t j = 0; j < es.size(); ++j) put(es[j], l + j * V);
      else
        put(es.back(), l);
    }
  }

  std::unique_ptr<SeqSteps> s_;
  std::vector<float> out_;
  std::vector<float> val_, lz_, dv_, dz_;
  std::vector<int32_t> id_, di_;
};

}  // namespace

std::unique_ptr<BatchEngine> make_split_engine(std::unique_ptr<SeqSteps> steps) {
  return std::make_unique<SplitEngine>(std::move(steps));
}

}  // namespace bitnet::server
