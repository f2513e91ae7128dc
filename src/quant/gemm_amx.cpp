// AMX-INT8 variant (Sapphire Rapids and later) for prefill.
//
// tdpbssd multiplies s8 x s8, so activations are used as they are (rows of QuantizedActs::q, a
// tile row = 64 consecutive k of one token, loaded straight from memory with stride k_pad) and
// weights are staged as s8 w = code - 1 in AMX's B layout: B tile row kk holds, for each of 16
// output rows n, the 4 weights k = 4kk..4kk+3 (64 bytes). One native chunk (16 rows x 16 k)
// shifted by 2s and masked is exactly B tile row 4*(chunk % 4) + s of k-tile chunk / 4, so staging
// is shift, mask, subtract 1 and store. No zero-point correction is needed.
//
// Tiles: tmm0..3 accumulators (2 token tiles x 2 row blocks), tmm4,5 activations, tmm6,7 weights.
#include <immintrin.h>

#include <cstring>

#include "core/error.h"
#include "core/memory.h"
#include "quant/gemm.h"

namespace bitnet {
namespace {

struct alignas(64) TileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};
static_assert(sizeof(TileConfig) == 64);

void configure(int rows_a0, int rows_a1) {
  TileConfig cfg;
  std::memset(&cfg, 0, sizeof cfg);
  cfg.palette_id = 1;
  const int rows_c[4] = {rows_a0, rows_a0, rows_a1, rows_a1};  // C(t, b): token tile t, block b
  for (int i = 0; i < 4; ++i) {
    cfg.rows[i] = static_cast<uint8_t>(rows_c[i] ? rows_c[i] : 1);
    cfg.colsb[i] = 64;
  }
  cfg.rows[4] = static_cast<uint8_t>(rows_a0);
  cfg.colsb[4] = 64;
  cfg.rows[5] = static_cast<uint8_t>(rows_a1 ? rows_a1 : 1);
  cfg.colsb[5] = 64;
  for (int i = 6; i < 8; ++i) {
    cfg.rows[i] = 16;
    cfg.colsb[i] = 64;
  }
  _tile_loadconfig(&cfg);
}

// Stages row block rb as s8 B tiles: k_pad/64 tiles of 1 KiB.
void stage_b(const TernaryMatrix& w, int64_t rb, int8_t* dst) {
  const uint8_t* p = w.block(rb);
  const int64_t chunks = w.k_pad / kChunkK;
  const __m512i low2 = _mm512_set1_epi8(0x03), one = _mm512_set1_epi8(1);
  for (int64_t c = 0; c < chunks; ++c) {
    const __m512i v = _mm512_load_si512(p + c * kChunkBytes);
    int8_t* tile_base = dst + (c / 4) * 1024 + (c % 4) * 4 * 64;
    for (int s = 0; s < 4; ++s) {
      const __m512i u = _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(v, 2 * s), low2), one);
      _mm512_store_si512(tile_base + s * 64, u);
    }
  }
}

void store_tile(const int32_t* c, int rows, const TernaryMatrix& w, const QuantizedActs& x,
                int64_t m0, int64_t row0, int64_t n1, const GemmOut& out) {
  const int64_t valid = n1 - row0 < 16 ? n1 - row0 : 16;
  if (valid <= 0) return;
  const __mmask16 mask = static_cast<__mmask16>(valid == 16 ? 0xFFFF : (1u << valid) - 1);
  const __m512 rs = _mm512_loadu_ps(w.row_scale() + row0);
  for (int t = 0; t < rows; ++t) {
    const int64_t m = m0 + t;
    const __m512i acc = _mm512_load_si512(c + 16 * t);
    if (out.i32) _mm512_mask_storeu_epi32(out.i32 + m * out.ld_i32 + row0, mask, acc);
    if (out.f32) {
      const __m512 f = _mm512_mul_ps(rs, _mm512_set1_ps(x.dq[m]));
      _mm512_mask_storeu_ps(out.f32 + m * out.ld_f32 + row0, mask, _mm512_mul_ps(_mm512_cvtepi32_ps(acc), f));
    }
  }
}

}  // namespace

void ternary_gemm_amx(const TernaryMatrix& w, const QuantizedActs& x, int64_t n0, int64_t n1,
                      const GemmOut& out) {
  const int64_t ktiles = w.k_pad / 64;
  const size_t bytes_per_block = static_cast<size_t>(ktiles) * 1024;
  thread_local AlignedBuffer stage;
  if (stage.size() < 2 * bytes_per_block) stage = AlignedBuffer(2 * bytes_per_block);
  int8_t* b0 = reinterpret_cast<int8_t*>(stage.data());
  int8_t* b1 = b0 + bytes_per_block;
  alignas(64) int32_t cbuf[4][256];
  int cfg_a0 = -1, cfg_a1 = -1;
  const int64_t ldx = x.k_pad;

  for (int64_t row0 = n0; row0 < n1; row0 += 2 * kRowBlock) {
    const bool two = row0 + kRowBlock < n1;  // second block holds valid rows
    stage_b(w, row0 / kRowBlock, b0);
    if (two) stage_b(w, row0 / kRowBlock + 1, b1);
    for (int64_t m0 = 0; m0 < x.m; m0 += 32) {
      const int ra0 = static_cast<int>(x.m - m0 < 16 ? x.m - m0 : 16);
      const int64_t rest = x.m - m0 - ra0;
      const int ra1 = static_cast<int>(rest <= 0 ? 0 : rest < 16 ? rest : 16);
      if (ra0 != cfg_a0 || ra1 != cfg_a1) {
        configure(ra0, ra1);
        cfg_a0 = ra0;
        cfg_a1 = ra1;
      }
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
      const int8_t* a0 = x.q + m0 * ldx;
      const int8_t* a1 = a0 + 16 * ldx;
      for (int64_t kt = 0; kt < ktiles; ++kt) {
        _tile_loadd(4, a0 + kt * 64, ldx);
        _tile_loadd(6, b0 + kt * 1024, 64);
        _tile_dpbssd(0, 4, 6);
        if (two) {
          _tile_loadd(7, b1 + kt * 1024, 64);
          _tile_dpbssd(1, 4, 7);
        }
        if (ra1) {
          _tile_loadd(5, a1 + kt * 64, ldx);
          _tile_dpbssd(2, 5, 6);
          if (two) _tile_dpbssd(3, 5, 7);
        }
      }
      _tile_stored(0, cbuf[0], 64);
      store_tile(cbuf[0], ra0, w, x, m0, row0, n1, out);
      if (two) {
        _tile_stored(1, cbuf[1], 64);
        store_tile(cbuf[1], ra0, w, x, m0, row0 + kRowBlock, n1, out);
      }
      if (ra1) {
        _tile_stored(2, cbuf[2], 64);
        store_tile(cbuf[2], ra1, w, x, m0 + 16, row0, n1, out);
        if (two) {
          _tile_stored(3, cbuf[3], 64);
          store_tile(cbuf[3], ra1, w, x, m0 + 16, row0 + kRowBlock, n1, out);
        }
      }
    }
  }
  _tile_release();
}

}  // namespace bitnet
