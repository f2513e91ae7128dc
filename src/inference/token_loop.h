#pragma once
// One sequence's generation loop over an Engine: feed tokens, sample the next. Where the engine
// finds the candidates itself (Engine::forward_top, the GPU) and the sampler's options need only
// them (Sampler::top_candidates), a fed token's step returns those instead of the whole row of
// logits; the token drawn is the same (Sampler::sample_top).
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "inference/engine.h"
#include "inference/sampler.h"

namespace bitnet {

class TokenLoop {
 public:
  TokenLoop(Engine& engine, Sampler& sampler);
  // Appends tokens (a prompt: the whole row of logits of the last one comes back).
  void feed(std::span<const int32_t> tokens);
  // Appends one token (a decode step: its candidates only, where they suffice).
  void feed(int32_t token);
  // The next token after what was fed; history: the tokens so far (the repetition penalty's).
  int32_t sample(std::span<const int32_t> history);
  // Whether decode steps return candidates rather than logits.
  bool uses_top() const { return top_k_ > 0; }

 private:
  Engine& e_;
  Sampler& s_;
  size_t n_vocab_;
  size_t top_k_ = 0;  // 0: whole rows
  // What sample() draws from: logits_, or the candidates in val_ and id_ where have_top_. Both are
  // cleared before each step, so a step that failed leaves nothing to sample.
  const float* logits_ = nullptr;
  bool have_top_ = false;
  std::vector<float> val_;
  std::vector<int32_t> id_;
  std::vector<std::pair<float, int32_t>> cand_;
};

}  // namespace bitnet
