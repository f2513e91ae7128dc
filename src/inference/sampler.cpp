#include "inference/sampler.h"

#include <algorithm>
#include <cmath>
#include <unordered_set>

#include "core/error.h"

namespace bitnet {

int32_t argmax(std::span<const float> logits) {
  BN_CHECK(!logits.empty());
  size_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i)
    if (logits[i] > logits[best]) best = i;
  return static_cast<int32_t>(best);
}

Sampler::Sampler(const SamplerOptions& o) : o_(o), rng_(o.seed) {}

int32_t Sampler::sample(std::span<const float> logits, std::span<const int32_t> history) {
  const size_t n = logits.size();
  cand_.resize(n);
  for (size_t i = 0; i < n; ++i) cand_[i] = {logits[i], static_cast<int32_t>(i)};
  if (o_.repeat_penalty != 1.0f && o_.repeat_last_n > 0) {
    const size_t from = history.size() > static_cast<size_t>(o_.repeat_last_n) ? history.size() - static_cast<size_t>(o_.repeat_last_n) : 0;
    std::unordered_set<int32_t> seen(history.begin() + static_cast<ptrdiff_t>(from), history.end());
    for (int32_t t : seen) {
      if (t < 0 || static_cast<size_t>(t) >= n) continue;
      float& l = cand_[static_cast<size_t>(t)].first;
      l = l > 0 ? l / o_.repeat_penalty : l * o_.repeat_penalty;  // llama.cpp's convention
    }
  }
  if (o_.temperature <= 0.0f) {
    size_t best = 0;
    for (size_t i = 1; i < n; ++i)
      if (cand_[i].first > cand_[best].first) best = i;
    return cand_[best].second;
  }
  auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  size_t keep = n;
  if (o_.top_k > 0 && static_cast<size_t>(o_.top_k) < n) {
    keep = static_cast<size_t>(o_.top_k);
    std::partial_sort(cand_.begin(), cand_.begin() + static_cast<ptrdiff_t>(keep), cand_.end(), by_logit);
  } else {
    std::sort(cand_.begin(), cand_.end(), by_logit);
  }
  cand_.resize(keep);
  // Softmax at temperature 1 for the filters, as llama.cpp applies top-p / min-p before temperature.
  const float mx = cand_[0].first;
  std::vector<double> p(keep);
  double sum = 0;
  for (size_t i = 0; i < keep; ++i) sum += (p[i] = std::exp(static_cast<double>(cand_[i].first - mx)));
  for (auto& v : p) v /= sum;
  size_t cut = keep;
  if (o_.top_p < 1.0f) {
    double c = 0;
    for (size_t i = 0; i < keep; ++i) {
      c += p[i];
      if (c >= o_.top_p) {
        cut = i + 1;
        break;
      }
    }
  }
  if (o_.min_p > 0.0f) {
    const double thresh = p[0] * o_.min_p;
    size_t i = 1;
    while (i < cut && p[i] >= thresh) ++i;
    cut = i;
  }
  std::vector<double> w(cut);
  for (size_t i = 0; i < cut; ++i) w[i] = std::exp(static_cast<double>(cand_[i].first - mx) / o_.temperature);
  std::discrete_distribution<size_t> dist(w.begin(), w.end());
  return cand_[dist(rng_)].second;
}

}  // namespace bitnet
