#pragma once
// The kernel-native ternary layout ("TNAT"), built once at load from any stored format.
//
// A weight matrix W [n rows (outputs)][k cols (inputs)] is padded to n_pad = round_up(n, 16) rows
// and k_pad = round_up(k, 64) columns with zeros, and stored as 2-bit codes c = w + 1 in
// row blocks of 16 rows, each a run of k_pad/16 chunks of 64 bytes:
//
//   byte offset of chunk (rb, c)  = (rb * (k_pad / 16) + c) * 64
//   within the chunk, byte 4*r + i (r = 0..15, i = 0..3), bits [2s, 2s+2) (s = 0..3)
//     hold the code of W[16*rb + r][16*c + 4*s + i].
//
// Why: shifting a 64-byte chunk right by 2s and masking with 0x03 yields a vector whose 32-bit
// lane r holds four consecutive codes of row r (columns 16c+4s .. 16c+4s+3). That is exactly the
// operand layout of vpdpbusd (AVX-512 VNNI / AVX-VNNI), of AMX's B tile ("VNNI" layout: 16 columns
// x 4 consecutive k per 64-byte tile row) and of NEON sdot, so every ISA reads the same bytes, one
// thread's rows are one contiguous stream, and no kernel needs a horizontal reduction.
//
// Codes are u8 {0,1,2}; a kernel computes sum_k c*x = sum_k w*x + sum_k x and subtracts the
// activation row sum (QuantizedActs::sum) to get the exact dot product. AMX instead stages
// w = c - 1 as s8 and multiplies s8 x s8 (tdpbssd), needing no correction.
//
// Scales: one float per row (`row_scale`), so fused matrices (q|k|v, gate|up) keep one scale per
// logical sub-matrix; a plain BitNet tensor repeats its single absmean scale.
#include <cstdint>
#include <vector>

#include "core/memory.h"

namespace bitnet {

inline constexpr int64_t kRowBlock = 16;
inline constexpr int64_t kChunkK = 16;
inline constexpr int64_t kChunkBytes = 64;
inline constexpr int64_t kKAlign = 64;

struct TernaryMatrix {
  int64_t n = 0, k = 0, n_pad = 0, k_pad = 0;
  AlignedBuffer packed;            // n_pad * k_pad / 4 bytes
  AlignedBuffer row_scale_buf;     // float[n_pad], 0 for padding rows

  const uint8_t* block(int64_t rb) const { return packed.data() + rb * (k_pad / kChunkK) * kChunkBytes; }
  const float* row_scale() const { return row_scale_buf.as<float>(); }
  size_t bytes() const { return packed.size(); }
};

// An n x k matrix with every weight 0 (code 1) and every scale 0, to be filled by pack_native_rows.
TernaryMatrix alloc_native(int64_t n, int64_t k);
// Packs `rows` rows of int8 ternary w [rows][m.k] into rows row0 .. row0 + rows - 1 of m, with
// their scales (one per row).
void pack_native_rows(TernaryMatrix& m, int64_t row0, const int8_t* w, int64_t rows, const float* row_scales);
// w: int8 ternary [n][k] (row stride k); scales: one per row (size n).
TernaryMatrix pack_native(const int8_t* w, int64_t n, int64_t k, const float* row_scales);
// Same with one scale for the whole matrix.
TernaryMatrix pack_native(const int8_t* w, int64_t n, int64_t k, float scale);
// An n x k matrix of uniformly random codes {-1, 0, +1} written straight into the layout (fast:
// for synthetic models of billions of weights), one scale for all rows.
TernaryMatrix random_native(int64_t n, int64_t k, uint64_t seed, float scale);
// Back to int8 [n][k] (for tests and `inspect`).
void unpack_native(const TernaryMatrix& m, int8_t* w);

// Stacks matrices with equal k along n (fused q|k|v or gate|up); row scales are kept per part.
TernaryMatrix concat_rows(const std::vector<const TernaryMatrix*>& parts);

}  // namespace bitnet
