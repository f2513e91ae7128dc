#pragma once
// Q8_0X: ggml's Q8_0 regrouped for the output-head kernels; ours, built at load, never in files.
//
// A superblock holds 16 consecutive Q8_0 blocks (512 values) in 544 bytes, the same size:
//
//   struct { fp16 d[16];  uint8 q[8][16][4]; }   q[v][L][j] = qs_L[4v + j] + 128
//
// where d[L] and qs_L are block L's scale and int8 values (value 32L + 4v + j of the superblock is
// d[L] * (q[v][L][j] - 128)). So the 32-bit lane L of the 64-byte vector v holds values 4v .. 4v+3
// of block L, as unsigned bytes: eight vpdpbusd over a superblock leave each lane with its block's
// exact integer sum, and one conversion and one multiply-add scale all 16 blocks. In ggml's layout
// every pair of blocks needs its own scale work (about 88 vector ops per 512 values against about
// 14; bench/lab/head_lab.cpp, docs/PERFORMANCE.md). Rows must be a whole number of superblocks.
#include <cstdint>

namespace bitnet {

inline constexpr int64_t kQ8xBlocks = 16;               // Q8_0 blocks per superblock
inline constexpr int64_t kQ8xValues = 32 * kQ8xBlocks;  // 512
inline constexpr int64_t kQ8xBytes = 34 * kQ8xBlocks;   // 544
inline constexpr int64_t kQ8xScaleBytes = 2 * kQ8xBlocks;

// Byte offset of value i (0..511) within a superblock's quants (after the 32 scale bytes).
inline constexpr int64_t q8x_quant_offset(int64_t i) {
  return (i % 32 / 4) * 64 + (i / 32) * 4 + i % 4;
}

// Rows of n values (n a multiple of 512) from Q8_0 to Q8_0X; src and dst must not overlap.
void repack_q8_0x_rows(const uint8_t* src, int64_t rows, int64_t n, uint8_t* dst);

}  // namespace bitnet
