#include "server/split_engine.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/error.h"

namespace bitnet::server {
namespace {

class SplitEngine final : public BatchEngine {
 public:
  explicit SplitEngine(std::unique_ptr<SeqSteps> s) : s_(std::move(s)) {}

  const float* forward_batch(std::span<const BatchToken> batch) override {
    const int n_seq = s_->n_seq();
    const size_t V = static_cast<size_t>(s_->n_vocab());
    // Each sequence's entries, in batch order; and where each entry's logits go (-1: none).
    std::vector<std::vector<size_t>> of_seq(static_cast<size_t>(n_seq));
    std::vector<int64_t> out_row(batch.size(), -1);
    int64_t rows = 0;
    // Checked before any work, as Session::forward_batch does, so a refused batch changes nothing.
    for (size_t i = 0; i < batch.size(); ++i) {
      const BatchToken& b = batch[i];
      if (b.seq < 0 || b.seq >= n_seq) fail("forward_batch: sequence {} outside [0, {})", b.seq, n_seq);
      if (b.token < 0 || b.token >= s_->n_vocab())
        fail("forward_batch: token id {} outside the vocabulary [0, {})", b.token, s_->n_vocab());
      std::vector<size_t>& es = of_seq[static_cast<size_t>(b.seq)];
      if (!es.empty() && es.back() != i - 1)
        fail("forward_batch: sequence {}'s tokens are not consecutive in the batch", b.seq);
      es.push_back(i);
      if (b.logits) out_row[i] = rows++;
    }
    for (int q = 0; q < n_seq; ++q) {
      const int64_t n = static_cast<int64_t>(of_seq[static_cast<size_t>(q)].size());
      if (n > 0 && s_->n_past(q) + n > s_->n_ctx())
        fail("forward_batch: sequence {} would hold {} tokens, over its context of {}", q, s_->n_past(q) + n,
             s_->n_ctx());
    }
    out_.resize(static_cast<size_t>(rows) * V);
    auto put = [&](size_t entry, const float* logits) {
      if (out_row[entry] >= 0)
        std::memcpy(out_.data() + static_cast<size_t>(out_row[entry]) * V, logits, V * 4);
    };
    // One decode step for every sequence with one token here, in batch order.
    std::vector<int32_t> tokens, seqs;
    std::vector<size_t> entries;
    for (size_t e = 0; e < batch.size(); ++e)
      if (of_seq[static_cast<size_t>(batch[e].seq)].size() == 1) {
        tokens.push_back(batch[e].token);
        seqs.push_back(batch[e].seq);
        entries.push_back(e);
      }
    if (!tokens.empty()) {
      const float* l = s_->decode(tokens, seqs);
      // A batch of decodes only, each wanting its logits: they are already in the batch's order
      // (a step of 64 on the 2B4T would copy 33 MB).
      if (entries.size() == batch.size() && static_cast<int64_t>(entries.size()) == rows) return l;
      for (size_t j = 0; j < entries.size(); ++j) put(entries[j], l + j * V);
    }
    // A prompt call for every sequence with more.
    for (int q = 0; q < n_seq; ++q) {
      const std::vector<size_t>& es = of_seq[static_cast<size_t>(q)];
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
    return out_.data();
  }
  int64_t n_past(int seq) const override { return s_->n_past(seq); }
  void truncate(int seq, int64_t n) override { s_->truncate(seq, n); }
  int n_seq() const override { return s_->n_seq(); }
  int64_t n_ctx() const override { return s_->n_ctx(); }
  int32_t n_vocab() const override { return s_->n_vocab(); }

 private:
  std::unique_ptr<SeqSteps> s_;
  std::vector<float> out_;
};

}  // namespace

std::unique_ptr<BatchEngine> make_split_engine(std::unique_ptr<SeqSteps> steps) {
  return std::make_unique<SplitEngine>(std::move(steps));
}

}  // namespace bitnet::server
