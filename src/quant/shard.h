#pragma once
// Tensor-parallel shards of the ternary products (several GPUs: q/k/v and gate/up split by output
// rows, o and down by input columns) and the arithmetic that keeps split products equal to the
// unsplit ones bit for bit:
//  - a row shard keeps its rows' scales: one absmean scale per logical tensor, never recomputed
//    per shard;
//  - a column shard's products are exact int32 partial sums; the shards' sums are added (an
//    all-reduce of int32) before the float epilogue runs once (ternary_epilogue);
//  - the activations of a column-split product are quantized on the full row: each shard gathers
//    the row, normalizes and quantizes it as the unsplit forward does, and keeps its columns
//    (shard_acts), so the per-token scale is the full row's.
#include <cstdint>
#include <utility>
#include <vector>

#include "core/arena.h"
#include "quant/act_quant.h"
#include "quant/native.h"

namespace bitnet {

// Rows [r0, r1) of m, with their scales.
TernaryMatrix shard_rows(const TernaryMatrix& m, int64_t r0, int64_t r1);
// The rows of several ranges [first, second) of m, in the order given, with their scales (a
// rank's q|k|v rows: its query heads' rows, then its keys', then its values').
TernaryMatrix shard_row_ranges(const TernaryMatrix& m,
                               const std::vector<std::pair<int64_t, int64_t>>& ranges);
// Columns [c0, c1) of every row of m, with the rows' scales.
TernaryMatrix shard_cols(const TernaryMatrix& m, int64_t c0, int64_t c1);
// The rows of several ranges [first, second) of m, in the order given, with their scales (a
// rank's q|k|v rows: its query heads' rows, then its keys', then its values').
TernaryMatrix shard_row_ranges(const TernaryMatrix& m,
                               const std::vector<std::pair<int64_t, int64_t>>& ranges);
// Columns [c0, c1) of quantized activations: the codes, each token's full-row scale, and the
// codes' sum over those columns (the kernels' zero-point term). Storage from `arena`.
QuantizedActs shard_acts(Arena& arena, const QuantizedActs& x, int64_t c0, int64_t c1);
// y[t][r] = gemm_scale(acc[t][r], row_scale[r], dq[t]): the kernels' epilogue (gemm.h), applied
// to int32 sums added across column shards.
void ternary_epilogue(const int32_t* acc, int64_t ld_acc, const TernaryMatrix& w, const QuantizedActs& x,
                      float* y, int64_t ld_y);

}  // namespace bitnet
