#include "quant/q6_kx.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"

namespace bitnet {

namespace {

constexpr int64_t kBlock = 210;  // Q6_K bytes per 256 values

// Where value v (0..255) of a Q6_K block keeps its code (dequant.h): the low 4 bits in a nibble
// of ql, the high 2 bits in a pair of bits of qh.
struct CodePlace {
  int64_t ql, ql_shift, qh, qh_shift;
};
constexpr CodePlace place(int64_t v) {
  const int64_t h = v / 128, quarter = v % 128 / 32, l = v % 32;
  return {64 * h + l + 32 * (quarter & 1), 4 * (quarter >> 1), 128 + 32 * h + l, 2 * quarter};
}

// The 256 codes of a Q6_K block in value order, four values a step as dequant.h lays them out (a
// loop the compiler vectorizes: the 2B4T head's load-time repack is bound by it).
void block_codes(const uint8_t* blk, uint8_t* codes) {
  for (int64_t h = 0; h < 2; ++h) {
    const uint8_t* ql = blk + 64 * h;
    const uint8_t* qh = blk + 128 + 32 * h;
    uint8_t* c = codes + 128 * h;
    for (int64_t l = 0; l < 32; ++l) {
      c[l] = static_cast<uint8_t>((ql[l] & 15) | (qh[l] & 3) << 4);
      c[l + 32] = static_cast<uint8_t>((ql[l + 32] & 15) | (qh[l] >> 2 & 3) << 4);
      c[l + 64] = static_cast<uint8_t>((ql[l] >> 4) | (qh[l] >> 4 & 3) << 4);
      c[l + 96] = static_cast<uint8_t>((ql[l + 32] >> 4) | (qh[l] >> 6) << 4);
    }
  }
}

void check(int64_t n) {
  if (n <= 0 || n % 256) fail("Q6_KX: row of {} values is not a whole number of 256-value super-blocks", n);
}

// Rows [16g, 16g + R) of a table: the group's bytes from/to the rows' Q6_K bytes.
void pack_group(const uint8_t* src, int64_t R, int64_t nb, uint8_t* dst) {
  uint8_t codes[256];
  for (int64_t l = 0; l < R; ++l) {
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* blk = src + (l * nb + b) * kBlock;
      block_codes(blk, codes);
      for (int64_t j = 0; j < 16; ++j) {
        // Four bytes at a time: run c's codes, each with two bits of run 3's code above it.
        uint32_t run3;
        std::memcpy(&run3, codes + 16 * j + 12, 4);
        for (int64_t c = 0; c < 3; ++c) {
          uint32_t word;
          std::memcpy(&word, codes + 16 * j + 4 * c, 4);
          word |= (run3 >> (2 * c) & 0x03030303u) << 6;
          std::memcpy(dst + q6x_code_offset(R, b, j, c) + 4 * l, &word, 4);
        }
        dst[q6x_scale_offset(R, nb, b, j) + l] = blk[192 + j];
      }
      std::memcpy(dst + q6x_d_offset(R, nb, b) + 2 * l, blk + 208, 2);
    }
  }
}

void unpack_row(const uint8_t* group, int64_t R, int64_t nb, int64_t l, uint8_t* out) {
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t* blk = out + b * kBlock;
    std::memset(blk, 0, 192);
    for (int64_t j = 0; j < 16; ++j) {
      for (int64_t i = 0; i < 4; ++i) {
        int code3 = 0;
        for (int64_t c = 0; c < 3; ++c) {
          const uint8_t byte = group[q6x_code_offset(R, b, j, c) + 4 * l + i];
          code3 |= (byte >> 6) << (2 * c);
          const CodePlace p = place(16 * j + 4 * c + i);
          blk[p.ql] = static_cast<uint8_t>(blk[p.ql] | (byte & 15) << p.ql_shift);
          blk[p.qh] = static_cast<uint8_t>(blk[p.qh] | (byte >> 4 & 3) << p.qh_shift);
        }
        const CodePlace p = place(16 * j + 12 + i);
        blk[p.ql] = static_cast<uint8_t>(blk[p.ql] | (code3 & 15) << p.ql_shift);
        blk[p.qh] = static_cast<uint8_t>(blk[p.qh] | (code3 >> 4) << p.qh_shift);
      }
      blk[192 + j] = group[q6x_scale_offset(R, nb, b, j) + l];
    }
    std::memcpy(blk + 208, group + q6x_d_offset(R, nb, b) + 2 * l, 2);
  }
}

}  // namespace

void repack_q6_kx_rows(const uint8_t* src, int64_t rows, int64_t n, uint8_t* dst) {
  check(n);
  const int64_t nb = n / 256, rb = nb * kBlock;
  for (int64_t r0 = 0; r0 < rows; r0 += kQ6xRows) {
    const int64_t R = std::min(kQ6xRows, rows - r0);
    pack_group(src + r0 * rb, R, nb, dst + r0 * rb);
  }
}

void q6_kx_row_to_q6_k(const uint8_t* table, int64_t rows, int64_t n, int64_t r, uint8_t* out) {
  check(n);
  BN_CHECK(r >= 0 && r < rows, "Q6_KX row {} of {}", r, rows);
  const int64_t nb = n / 256, rb = nb * kBlock, g0 = r / kQ6xRows * kQ6xRows;
  unpack_row(table + g0 * rb, std::min(kQ6xRows, rows - g0), nb, r - g0, out);
}

void unpack_q6_kx_rows(const uint8_t* src, int64_t rows, int64_t n, uint8_t* dst) {
  check(n);
  const int64_t rb = n / 256 * kBlock;
  for (int64_t r = 0; r < rows; ++r) q6_kx_row_to_q6_k(src, rows, n, r, dst + r * rb);
}

}  // namespace bitnet
