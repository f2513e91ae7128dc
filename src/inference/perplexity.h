#pragma once
// Perplexity computed the way llama.cpp's llama-perplexity does, so figures compare across tools:
// the text's tokens (with BOS if the model adds one) are cut into non-overlapping windows of
// n_ctx tokens; each window's first token is replaced by BOS when add_bos; the logits at positions
// n_ctx/2 .. n_ctx-2 score the next token (n_ctx - 1 - n_ctx/2 tokens per window);
//   ppl = exp(mean nll),  ppl_err = ppl * sqrt((mean nll^2 - mean nll^2) / (count - 1)).
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

// Fails when the text has fewer than 2 * n_ctx tokens (as llama-perplexity does).
PerplexityResult perplexity(Session& session, std::span<const int32_t> tokens, int64_t n_ctx,
                            int64_t max_windows, bool add_bos, int32_t bos,
                            const std::function<void(int64_t done, int64_t total, double ppl)>& progress = {});

}  // namespace bitnet
