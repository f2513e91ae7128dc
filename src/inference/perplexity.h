#pragma once
// Perplexity computed the way llama.cpp's llama-perplexity does, so figures compare across tools:
// the text's tokens (with BOS if the model adds one) are cut into non-overlapping windows of
// n_ctx tokens; each window's first token is replaced by BOS when add_bos; the logits at positions
// n_ctx/2 .. n_ctx-2 score the next token (n_ctx - 1 - n_ctx/2 tokens per window);
//   ppl = exp(mean nll),  ppl_err = ppl * sqrt((mean nll^2 - mean nll^2) / (count - 1)).
//
// kl_divergence() runs a base model and a test model (e.g. the same weights with an F16 and a Q6_K
// head) over the same windows and, at every scored position, compares their next-token
// distributions: KL(P_base || P_test) in nats, and whether both put the same token on top. This is
// what a quantized head costs, measured per token rather than through the noisier perplexity.
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "inference/forward.h"

namespace bitnet {

struct PerplexityResult {
  double ppl = 0, ppl_err = 0;
  int64_t tokens = 0;  // scored tokens
  int64_t windows = 0;
};

// The text's own check, callable before an engine exists: fails when n_tokens < 2 * n_ctx (as
// llama-perplexity does) or n_ctx < 4.
void check_perplexity_text(int64_t n_tokens, int64_t n_ctx);

// Fails as check_perplexity_text does.
PerplexityResult perplexity(
    Engine& session, std::span<const int32_t> tokens, int64_t n_ctx, int64_t max_windows, bool add_bos,
    int32_t bos, const std::function<void(int64_t done, int64_t total, double ppl)>& progress = {});

struct KlResult {
  PerplexityResult base, test;     // each model's perplexity over the same scored tokens
  double kl_mean = 0, kl_err = 0;  // mean KL(P_base || P_test) per token (nats) and its standard error
  double kl_median = 0, kl_p99 = 0, kl_max = 0;
  double same_top = 0;  // fraction of positions whose most likely token is the same in both
  int64_t tokens = 0, windows = 0;
};

// Both sessions must belong to models with the same vocabulary size (a loud error otherwise).
KlResult kl_divergence(Engine& base, Engine& test, std::span<const int32_t> tokens, int64_t n_ctx,
                       int64_t max_windows, bool add_bos, int32_t bos,
                       const std::function<void(int64_t done, int64_t total, double kl_mean)>& progress = {});

// One position's statistics, in double precision: log(sum(exp(l - max))) + max, and
// KL(P || Q) = sum_v p_v (log p_v - log q_v) where P = softmax(p_logits), Q = softmax(q_logits).
double log_sum_exp(const float* logits, int64_t n_vocab);
double kl_of_logits(const float* p_logits, const float* q_logits, int64_t n_vocab);

}  // namespace bitnet
