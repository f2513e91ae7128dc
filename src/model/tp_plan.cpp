#include "model/tp_plan.h"

#include <algorithm>

#include "core/error.h"

namespace bitnet {

std::vector<Range> split_even(int64_t total, int n, int64_t granule, const char* what) {
  if (n < 1) fail("tensor parallel: {} ranks; at least 1", n);
  const int64_t granules = (total + granule - 1) / granule;
  if (granules < n)
    fail("tensor parallel: {} of {} cannot be split over {} ranks in pieces of {} (at most {} ranks)", what,
         total, n, granule, granules);
  std::vector<Range> out;
  int64_t at = 0;
  for (int r = 0; r < n; ++r) {
    const int64_t g = granules / n + (r < granules % n ? 1 : 0);
    const int64_t end = std::min(total, at + g * granule);
    out.push_back({at, end});
    at = end;
  }
  return out;
}

std::vector<TpRank> tp_plan(const ModelConfig& c, int n) {
  if (n < 1) fail("tensor parallel: {} ranks; at least 1", n);
  if (n > c.n_head_kv)
    fail("tensor parallel over {} ranks: the model has {} KV heads, and a rank needs at least one", n,
         c.n_head_kv);
  const int64_t group = c.n_head / c.n_head_kv;
  const std::vector<Range> kv = split_even(c.n_head_kv, n, 1, "the KV heads");
  const std::vector<Range> ff = split_even(c.n_ff, n, kTpColumnGranule, "the FFN rows");
  const std::vector<Range> oc = split_even(c.q_dim(), n, kTpColumnGranule, "the attention output");
  std::vector<TpRank> out(static_cast<size_t>(n));
  for (size_t r = 0; r < out.size(); ++r) {
    out[r].kv_heads = kv[r];
    out[r].q_heads = {kv[r].begin * group, kv[r].end * group};
    out[r].ff = ff[r];
    out[r].o_cols = oc[r];
  }
  return out;
}

}  // namespace bitnet
