#pragma once
// Q6_KX: ggml's Q6_K with 16 rows interleaved for the output-head kernels; ours, built at load,
// never in files. The same bytes per row (210 per 256 values), so the table keeps its size.
//
// Rows are taken 16 at a time (a group; the last group holds the rows % 16 left over, R rows,
// the same layout with 16 replaced by R). Group g starts at byte 16 * g * row_bytes and holds its
// nb = n / 256 super-blocks in pairs (the last one alone when nb is odd), P = 2 (or 1) of them in
// a pair, each pair three regions, one after the other:
//
//   codes  uint8 [P][16 sub-blocks j][3 vectors c][R rows][4]   192 R bytes a super-block
//   scales int8  [P][16 j][R]                                     16 R
//   d      fp16  [P][R]                                            2 R
//
// so that a group is read as one sequential run, and a pair of 16 rows is 6,720 bytes: 105 whole
// cache lines (one super-block is 3,360, half a line short).
//
// Byte [b][j][c][l][i] (c < 3) holds, in bits 0-5, the 6-bit code of value 16j + 4c + i of row l
// in super-block b, and in bits 6-7 bits 2c and 2c + 1 of the code of value 16j + 12 + i. So the
// 32-bit lane l of vector c holds four consecutive codes of row l: one vpdpbusd with four
// broadcast activations multiplies-adds them for 16 rows, and each sub-block's scale and each
// super-block's d are applied to 16 rows by one instruction. In Q6_K's own layout every row pays
// this per-block scaling work alone (docs/PERFORMANCE.md, "Batched decode").
//
// Values are as in Q6_K: y = d * scale_j * (code - 32).
#include <cstdint>

namespace bitnet {

inline constexpr int64_t kQ6xRows = 16;  // rows a group

// Byte offsets, within a group of R rows and nb super-blocks, of the three regions' entries for
// super-block b.
inline constexpr int64_t q6x_pair_base(int64_t R, int64_t b) {
  return b / 2 * 420 * R;
}
inline constexpr int64_t q6x_pair_blocks(int64_t nb, int64_t b) {
  return b / 2 * 2 + 2 <= nb ? 2 : 1;
}
inline constexpr int64_t q6x_code_offset(int64_t R, int64_t b, int64_t j, int64_t c) {
  return q6x_pair_base(R, b) + b % 2 * 192 * R + (j * 3 + c) * 4 * R;
}
inline constexpr int64_t q6x_scale_offset(int64_t R, int64_t nb, int64_t b, int64_t j) {
  return q6x_pair_base(R, b) + q6x_pair_blocks(nb, b) * 192 * R + b % 2 * 16 * R + j * R;
}
inline constexpr int64_t q6x_d_offset(int64_t R, int64_t nb, int64_t b) {
  return q6x_pair_base(R, b) + q6x_pair_blocks(nb, b) * 208 * R + b % 2 * 2 * R;
}

// Rows of n values (n a multiple of 256) from Q6_K to Q6_KX; src and dst must not overlap. A
// table repacked in slices gives the same bytes if every slice but the last is whole groups.
void repack_q6_kx_rows(const uint8_t* src, int64_t rows, int64_t n, uint8_t* dst);
// Row r of a Q6_KX table of `rows` rows, back in Q6_K's bytes (210 * n / 256 of them).
void q6_kx_row_to_q6_k(const uint8_t* table, int64_t rows, int64_t n, int64_t r, uint8_t* out);
// The whole table back in Q6_K's layout.
void unpack_q6_kx_rows(const uint8_t* src, int64_t rows, int64_t n, uint8_t* dst);

}  // namespace bitnet
