#pragma once
// Token sampling in llama.cpp's spirit: repetition penalty over recent tokens, then top-k, top-p,
// min-p and temperature. temperature <= 0 is greedy (argmax, ties to the lowest id), which makes
// generation deterministic regardless of the seed.
#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace bitnet {

struct SamplerOptions {
  float temperature = 0.8f;
  int top_k = 40;               // <= 0: off
  float top_p = 0.95f;          // >= 1: off
  float min_p = 0.05f;          // <= 0: off
  float repeat_penalty = 1.0f;  // 1: off
  int repeat_last_n = 64;
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplerOptions& o);
  // Picks the next token from logits [n_vocab] given the tokens seen so far.
  int32_t sample(std::span<const float> logits, std::span<const int32_t> history);
  // The same pick from the row's largest logits only, as top_k_logits lists them (largest first,
  // ties to the lowest id), where they were found elsewhere (on the GPU): `top` must hold at least
  // top_candidates(n_vocab) of them. Gives sample()'s token for the same logits and state.
  int32_t sample_top(std::span<const std::pair<float, int32_t>> top, size_t n_vocab);
  // How many of a row's largest logits sample_top needs: 1 when greedy, else min(top_k, n_vocab);
  // 0 when it cannot work from them (top-k off, or a repetition penalty, which changes logits
  // outside them).
  size_t top_candidates(size_t n_vocab) const;

 private:
  int32_t pick();  // from cand_, the top-k candidates
  SamplerOptions o_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> cand_;
  std::vector<float> pen_;  // the logits after the repetition penalty
};

int32_t argmax(std::span<const float> logits);

// The k largest logits with their ids, largest first, ties to the lowest id (what partial_sort by
// that order gives). k > logits.size() takes them all. A NaN logit is an error naming its id.
std::vector<std::pair<float, int32_t>> top_k_logits(std::span<const float> logits, size_t k);
// What a top-k step on the device gives for one row (server/engine.h TopRows), found on the host:
// top_k_logits' list into val[0..k) and id[0..k) (k <= logits.size()) and the row's
// log-sum-exp into *log_z. A row holding a NaN gives k NaN values with the NaN's id (and a NaN
// log_z), which Sampler::sample_top refuses: the row's own sequence fails, not the whole batch.
void top_row(std::span<const float> logits, size_t k, float* val, int32_t* id, float* log_z);

}  // namespace bitnet
