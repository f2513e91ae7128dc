#include "inference/token_loop.h"

#include "core/error.h"

namespace bitnet {

TokenLoop::TokenLoop(Engine& engine, Sampler& sampler)
    : e_(engine), s_(sampler), n_vocab_(static_cast<size_t>(engine.model().cfg.n_vocab)) {
  const size_t k = s_.top_candidates(n_vocab_);
  if (k > 0 && k <= static_cast<size_t>(e_.max_top_k())) top_k_ = k;
  val_.resize(top_k_);
  id_.resize(top_k_);
  cand_.resize(top_k_);
}

void TokenLoop::feed(std::span<const int32_t> tokens) {
  if (tokens.size() == 1) return feed(tokens[0]);
  logits_ = nullptr;
  have_top_ = false;
  logits_ = e_.forward(tokens);
}

void TokenLoop::feed(int32_t token) {
  logits_ = nullptr;
  have_top_ = false;
  if (top_k_ == 0) {
    logits_ = e_.forward(std::span(&token, 1));
    return;
  }
  e_.forward_top(token, static_cast<int>(top_k_), val_.data(), id_.data());
  have_top_ = true;
}

int32_t TokenLoop::sample(std::span<const int32_t> history) {
  if (logits_) return s_.sample(std::span(logits_, n_vocab_), history);
  BN_CHECK(have_top_, "TokenLoop::sample with nothing fed since the last failed or first step");
  for (size_t j = 0; j < top_k_; ++j) cand_[j] = {val_[j], id_[j]};
  return s_.sample_top(cand_, n_vocab_);
}

}  // namespace bitnet
