#include "inference/perplexity.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace bitnet {

PerplexityResult perplexity(Session& session, std::span<const int32_t> tokens, int64_t n_ctx,
                            int64_t max_windows, bool add_bos, int32_t bos,
                            const std::function<void(int64_t, int64_t, double)>& progress) {
  const int64_t n_tok = static_cast<int64_t>(tokens.size());
  if (n_ctx < 4) fail("perplexity: context {} is too small", n_ctx);
  if (n_ctx > session.n_ctx()) fail("perplexity: context {} exceeds the session's {}", n_ctx, session.n_ctx());
  if (n_tok < 2 * n_ctx) fail("perplexity: need at least {} tokens for context {}, the text has {}", 2 * n_ctx, n_ctx, n_tok);
  int64_t windows = n_tok / n_ctx;
  if (max_windows > 0) windows = std::min(windows, max_windows);
  const int64_t first = n_ctx / 2;
  const int64_t n_vocab = session.model().cfg.n_vocab;
  double nll = 0, nll2 = 0;
  int64_t count = 0;
  std::vector<int32_t> win(static_cast<size_t>(n_ctx));
  for (int64_t w = 0; w < windows; ++w) {
    std::copy(tokens.begin() + w * n_ctx, tokens.begin() + (w + 1) * n_ctx, win.begin());
    if (add_bos) win[0] = bos;
    session.truncate(0);
    const float* logits = session.forward(win, true);
    for (int64_t p = first; p < n_ctx - 1; ++p) {
      const float* l = logits + p * n_vocab;
      const float mx = *std::max_element(l, l + n_vocab);
      double sum = 0;
      for (int64_t v = 0; v < n_vocab; ++v) sum += std::exp(static_cast<double>(l[v] - mx));
      const int32_t next = win[static_cast<size_t>(p + 1)];
      const double lp = static_cast<double>(l[next] - mx) - std::log(sum);
      nll -= lp;
      nll2 += lp * lp;
      ++count;
    }
    if (progress) progress(w + 1, windows, std::exp(nll / static_cast<double>(count)));
  }
  PerplexityResult r;
  r.tokens = count;
  r.windows = windows;
  const double mean = nll / static_cast<double>(count), mean2 = nll2 / static_cast<double>(count);
  r.ppl = std::exp(mean);
  r.ppl_err = count > 1 ? r.ppl * std::sqrt(std::max(0.0, mean2 - mean * mean) / static_cast<double>(count - 1)) : 0.0;
  return r;
}

}  // namespace bitnet
