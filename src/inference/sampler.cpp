#include "inference/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <unordered_set>

#include "core/error.h"
#include "ops/vec.h"

namespace bitnet {

namespace {

// A NaN logit means the forward pass broke (weights or activations out of range): no token can be
// chosen from it, and the comparisons below would silently skip it or break the heap's order.
[[noreturn]] void fail_nan(size_t i) {
  fail("the model produced a NaN logit (token id {}): its weights or activations overflowed", i);
}

}  // namespace

int32_t argmax(std::span<const float> logits) {
  BN_CHECK(!logits.empty());
  size_t best = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (std::isnan(logits[i])) fail_nan(i);
    if (logits[i] > logits[best]) best = i;
  }
  return static_cast<int32_t>(best);
}

namespace {

// a comes before b: a larger logit, or the same logit and a lower id.
bool before(const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
  return a.first > b.first || (a.first == b.first && a.second < b.second);
}

}  // namespace

// One pass keeping the k best so far in a heap whose top is the worst of them. Ids rise along the
// scan, so a later value enters only if it is strictly larger than that worst; a block of 64
// values is looked at one by one only when one of them is (a compare-and-or the compiler
// vectorizes), which after the first blocks is rare: the scan of a 128k vocabulary costs about as
// much as reading it, where partial_sort over (logit, id) pairs cost the server ~0.3 ms a token.
namespace {

// top_k_logits' scan; false (and *nan_at) at the first NaN it meets, where the order has no meaning.
bool top_k_scan(std::span<const float> logits, size_t k, std::vector<std::pair<float, int32_t>>& heap,
                size_t* nan_at) {
  const size_t n = logits.size();
  k = std::min(k, n);
  heap.clear();
  if (k == 0) return true;
  heap.reserve(k);
  bool nan = false;
  auto take = [&](size_t i) {
    if (std::isnan(logits[i])) {
      *nan_at = i;
      nan = true;
      return;
    }
    const std::pair<float, int32_t> c{logits[i], static_cast<int32_t>(i)};
    if (heap.size() < k) {
      heap.push_back(c);
      std::push_heap(heap.begin(), heap.end(), before);
    } else if (before(c, heap.front())) {
      std::pop_heap(heap.begin(), heap.end(), before);
      heap.back() = c;
      std::push_heap(heap.begin(), heap.end(), before);
    }
  };
  constexpr size_t kBlock = 64;
  size_t i = 0;
  for (; i < n && heap.size() < k && !nan; ++i) take(i);
  for (; i + kBlock <= n && !nan; i += kBlock) {
    const float worst = heap.front().first;
    const float* p = logits.data() + i;
    int any = 0;  // int, not bool: GCC vectorizes the or of an int
    // p[j] != p[j]: a NaN, which take() reports.
    for (size_t j = 0; j < kBlock; ++j) any |= (p[j] > worst) | (p[j] != p[j]);
    if (!any) continue;
    for (size_t j = 0; j < kBlock && !nan; ++j) take(i + j);
  }
  for (; i < n && !nan; ++i) take(i);
  if (nan) return false;
  std::sort_heap(heap.begin(), heap.end(), before);
  return true;
}

}  // namespace

std::vector<std::pair<float, int32_t>> top_k_logits(std::span<const float> logits, size_t k) {
  std::vector<std::pair<float, int32_t>> heap;
  size_t nan_at = 0;
  if (!top_k_scan(logits, k, heap, &nan_at)) fail_nan(nan_at);
  return heap;
}

Sampler::Sampler(const SamplerOptions& o) : o_(o), rng_(o.seed) {}

int32_t Sampler::sample(std::span<const float> logits, std::span<const int32_t> history) {
  const size_t n = logits.size();
  std::span<const float> l = logits;
  if (o_.repeat_penalty != 1.0f && o_.repeat_last_n > 0) {
    pen_.assign(logits.begin(), logits.end());
    const size_t from = history.size() > static_cast<size_t>(o_.repeat_last_n)
                            ? history.size() - static_cast<size_t>(o_.repeat_last_n)
                            : 0;
    std::unordered_set<int32_t> seen(history.begin() + static_cast<ptrdiff_t>(from), history.end());
    for (int32_t t : seen) {
      if (t < 0 || static_cast<size_t>(t) >= n) continue;
      float& v = pen_[static_cast<size_t>(t)];
      v = v > 0 ? v / o_.repeat_penalty : v * o_.repeat_penalty;  // llama.cpp's convention
    }
    l = pen_;
  }
  if (o_.temperature <= 0.0f) return argmax(l);
  const size_t keep = o_.top_k > 0 ? std::min(static_cast<size_t>(o_.top_k), n) : n;
  cand_ = top_k_logits(l, keep);  // top-k off: all of them, in the same order
  return pick();
}

size_t Sampler::top_candidates(size_t n_vocab) const {
  if (o_.repeat_penalty != 1.0f && o_.repeat_last_n > 0) return 0;
  if (o_.temperature <= 0.0f) return 1;
  if (o_.top_k <= 0) return 0;
  return std::min(static_cast<size_t>(o_.top_k), n_vocab);
}

int32_t Sampler::sample_top(std::span<const std::pair<float, int32_t>> top, size_t n_vocab) {
  const size_t keep = top_candidates(n_vocab);
  if (keep == 0) fail("sample_top: these sampling options need the whole row of logits");
  if (top.size() < keep) fail("sample_top: {} candidates, the options need {}", top.size(), keep);
  // A NaN among them (the GPU's top-k sorts a NaN above +inf; top_row marks a row holding one).
  for (size_t i = 0; i < keep; ++i)
    if (std::isnan(top[i].first)) fail_nan(static_cast<size_t>(top[i].second));
  // Greedy: argmax's token (the first largest is the lowest id among equals).
  if (o_.temperature <= 0.0f) return top[0].second;
  cand_.assign(top.begin(), top.begin() + static_cast<ptrdiff_t>(keep));
  return pick();
}

int32_t Sampler::pick() {
  const size_t keep = cand_.size();
  // Softmax at temperature 1 for the filters, as llama.cpp applies top-p / min-p before temperature.
  const float mx = cand_[0].first;
  // +inf would make every weight below NaN (inf - inf); -inf candidates weigh 0, as they should.
  if (!std::isfinite(mx))
    fail("the model produced a logit of {} (token id {}): no distribution to sample", mx, cand_[0].second);
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

void top_row(std::span<const float> logits, size_t k, float* val, int32_t* id, float* log_z) {
  std::vector<std::pair<float, int32_t>> top;
  size_t nan_at = 0;
  if (!top_k_scan(logits, k, top, &nan_at)) {
    // A row holding a NaN: every entry is that NaN, so sample_top refuses it for this row alone.
    const size_t kk = std::min(k, logits.size());
    std::fill(val, val + kk, std::numeric_limits<float>::quiet_NaN());
    std::fill(id, id + kk, static_cast<int32_t>(nan_at));
    *log_z = std::numeric_limits<float>::quiet_NaN();
    return;
  }
  for (size_t i = 0; i < top.size(); ++i) {
    val[i] = top[i].first;
    id[i] = top[i].second;
  }
  *log_z = static_cast<float>(log_sum_exp_row(logits.data(), static_cast<int64_t>(logits.size())));
}

}  // namespace bitnet
