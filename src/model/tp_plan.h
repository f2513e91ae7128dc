#pragma once
// How a model splits over the ranks of tensor-parallel inference (src/cuda/infer_tp.h): which
// attention heads, FFN rows and input columns each rank owns. Pure arithmetic on the config, so it
// is tested on the CPU.
//  - KV heads are dealt out as evenly as whole heads allow (5 over 2 ranks: 3 + 2), each with the
//    query heads of its group, so a rank's attention needs no other rank's keys;
//  - FFN rows (gate|up's outputs) and the input columns of o and down are cut at multiples of 64:
//    the ternary kernels read activations 64 columns at a time from 16-byte aligned addresses, so
//    a column shard must start on a 64-column boundary (the last one ends at the row's end, where
//    the activations' padding is zero).
#include <cstdint>
#include <vector>

#include "model/config.h"

namespace bitnet {

// [begin, end)
struct Range {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
  bool operator==(const Range&) const = default;
};

struct TpRank {
  Range kv_heads, q_heads;  // q_heads: the query heads of those KV heads' groups
  Range ff;                 // rows of gate and of up (the same rows of each), = columns of down
  Range o_cols;             // input columns of o (of the q_dim-wide attention output)
};

// `n` consecutive ranges over [0, total): cut at multiples of `granule`, as even as that allows
// (the first ranges take the extra granules), the last ending at `total`. Fails (bitnet::Error)
// when there are fewer granules than parts: a rank would get nothing.
std::vector<Range> split_even(int64_t total, int n, int64_t granule, const char* what);

// The split of `c` over n ranks; fails with a clear message when it cannot be split so (more ranks
// than KV heads, rows too narrow for 64-column shards).
std::vector<TpRank> tp_plan(const ModelConfig& c, int n);

// The kernels' column granularity of a shard (see above).
inline constexpr int64_t kTpColumnGranule = 64;

}  // namespace bitnet
