#include "inference/perplexity.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace bitnet {
void check_perplexity_text(int64_t n_tokens, int64_t n_ctx) {
  if (n_ctx < 4) fail("perplexity: context {} is too small", n_ctx);
  if (n_tokens < 2 * n_ctx)
    fail("perplexity: need at least {} tokens for context {}, the text has {}", 2 * n_ctx, n_ctx, n_tokens);
}

namespace {

// The windows llama-perplexity scores (see perplexity.h); calls fn(window tokens) for each.
template <class Fn>
int64_t for_each_window(std::span<const int32_t> tokens, int64_t n_ctx, int64_t session_ctx,
                        int64_t max_windows, bool add_bos, int32_t bos, Fn&& fn) {
  const int64_t n_tok = static_cast<int64_t>(tokens.size());
  check_perplexity_text(n_tok, n_ctx);
  if (n_ctx > session_ctx) fail("perplexity: context {} exceeds the session's {}", n_ctx, session_ctx);
  int64_t windows = n_tok / n_ctx;
  if (max_windows > 0) windows = std::min(windows, max_windows);
  std::vector<int32_t> win(static_cast<size_t>(n_ctx));
  for (int64_t w = 0; w < windows; ++w) {
    std::copy(tokens.begin() + w * n_ctx, tokens.begin() + (w + 1) * n_ctx, win.begin());
    if (add_bos) win[0] = bos;
    fn(w, windows, std::span<const int32_t>(win));
  }
  return windows;
}

struct NllSum {
  double nll = 0, nll2 = 0;
  int64_t count = 0;
  void add(double lp) {
    nll -= lp;
    nll2 += lp * lp;
    ++count;
  }
  double ppl() const { return std::exp(nll / static_cast<double>(count)); }
  PerplexityResult result(int64_t windows) const {
    PerplexityResult r;
    r.tokens = count;
    r.windows = windows;
    const double mean = nll / static_cast<double>(count), mean2 = nll2 / static_cast<double>(count);
    r.ppl = std::exp(mean);
    r.ppl_err = count > 1
                    ? r.ppl * std::sqrt(std::max(0.0, mean2 - mean * mean) / static_cast<double>(count - 1))
                    : 0.0;
    return r;
  }
};

}  // namespace

double log_sum_exp(const float* l, int64_t n_vocab) {
  const double mx = *std::max_element(l, l + n_vocab);
  double sum = 0;
  for (int64_t v = 0; v < n_vocab; ++v) sum += std::exp(static_cast<double>(l[v]) - mx);
  return mx + std::log(sum);
}

double kl_of_logits(const float* p, const float* q, int64_t n_vocab) {
  const double lse_p = log_sum_exp(p, n_vocab), lse_q = log_sum_exp(q, n_vocab);
  double kl = 0;
  for (int64_t v = 0; v < n_vocab; ++v) {
    const double lp = static_cast<double>(p[v]) - lse_p, lq = static_cast<double>(q[v]) - lse_q;
    kl += std::exp(lp) * (lp - lq);
  }
  return std::max(0.0, kl);  // >= 0 mathematically; rounding can leave -1e-17
}

PerplexityResult perplexity(Engine& session, std::span<const int32_t> tokens, int64_t n_ctx,
                            int64_t max_windows, bool add_bos, int32_t bos,
                            const std::function<void(int64_t, int64_t, double)>& progress) {
  const int64_t n_vocab = session.model().cfg.n_vocab;
  NllSum s;
  const int64_t windows = for_each_window(
      tokens, n_ctx, session.n_ctx(), max_windows, add_bos, bos,
      [&](int64_t w, int64_t total, std::span<const int32_t> win) {
        session.truncate(0);
        const float* logits = session.forward(win, true);
        for (int64_t p = n_ctx / 2; p < n_ctx - 1; ++p) {
          const float* l = logits + p * n_vocab;
          s.add(static_cast<double>(l[win[static_cast<size_t>(p + 1)]]) - log_sum_exp(l, n_vocab));
        }
        if (progress) progress(w + 1, total, s.ppl());
      });
  return s.result(windows);
}

KlResult kl_divergence(Engine& base, Engine& test, std::span<const int32_t> tokens, int64_t n_ctx,
                       int64_t max_windows, bool add_bos, int32_t bos,
                       const std::function<void(int64_t, int64_t, double)>& progress) {
  const int64_t n_vocab = test.model().cfg.n_vocab;
  if (base.model().cfg.n_vocab != n_vocab)
    fail("kl-divergence: the base model has {} tokens in its vocabulary, the test model {}",
         base.model().cfg.n_vocab, n_vocab);
  NllSum sb, st;
  std::vector<double> kls;
  int64_t same = 0;
  double kl_sum = 0, kl_sum2 = 0;
  const int64_t windows = for_each_window(
      tokens, n_ctx, std::min(base.n_ctx(), test.n_ctx()), max_windows, add_bos, bos,
      [&](int64_t w, int64_t total, std::span<const int32_t> win) {
        base.truncate(0);
        test.truncate(0);
        // The base's logits are copied: a session's logits buffer lives until its next forward.
        const float* lb0 = base.forward(win, true);
        const std::vector<float> lbase(lb0, lb0 + n_ctx * n_vocab);
        const float* ltest = test.forward(win, true);
        for (int64_t p = n_ctx / 2; p < n_ctx - 1; ++p) {
          const float* lb = lbase.data() + p * n_vocab;
          const float* lt = ltest + p * n_vocab;
          const int32_t next = win[static_cast<size_t>(p + 1)];
          sb.add(static_cast<double>(lb[next]) - log_sum_exp(lb, n_vocab));
          st.add(static_cast<double>(lt[next]) - log_sum_exp(lt, n_vocab));
          const double kl = kl_of_logits(lb, lt, n_vocab);
          kls.push_back(kl);
          kl_sum += kl;
          kl_sum2 += kl * kl;
          same += std::max_element(lb, lb + n_vocab) - lb == std::max_element(lt, lt + n_vocab) - lt;
        }
        if (progress) progress(w + 1, total, kl_sum / static_cast<double>(kls.size()));
      });
  KlResult r;
  r.base = sb.result(windows);
  r.test = st.result(windows);
  r.tokens = static_cast<int64_t>(kls.size());
  r.windows = windows;
  const double n = static_cast<double>(r.tokens);
  r.kl_mean = kl_sum / n;
  r.kl_err = r.tokens > 1 ? std::sqrt(std::max(0.0, kl_sum2 / n - r.kl_mean * r.kl_mean) / (n - 1)) : 0.0;
  r.same_top = static_cast<double>(same) / n;
  std::sort(kls.begin(), kls.end());
  auto quantile = [&](double q) {
    return kls[static_cast<size_t>(std::min(n - 1, std::floor(q * (n - 1))))];
  };
  r.kl_median = quantile(0.5);
  r.kl_p99 = quantile(0.99);
  r.kl_max = kls.back();
  return r;
}

}  // namespace bitnet
