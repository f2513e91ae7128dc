// AMX-INT8 variant (Sapphire Rapids and later) for prefill.
//
// tdpbssd multiplies s8 x s8, so activations are used as they are (rows of QuantizedActs::q, a
// tile row = 64 consecutive k of one token, loaded straight from memory with stride k_pad) and
// weights are staged as s8 w = code - 1 in AMX's B layout: B tile row kk holds, for each of 16
// output rows n, the 4 weights k = 4kk..4kk+3 (64 bytes). One native chunk (16 rows x 16 k)
// shifted by 2s and masked is exactly B tile row 4*(chunk % 4) + s of k-tile chunk / 4, so staging
// is shift, mask, subtract 1 and store. No zero-point correction is needed.
//
// Blocking (all tiles are 16 x 64 bytes; one tile configuration per call):
//   token chunk (sized so its activations, M_c x k_pad bytes, stay in L2)
//     row panel of kPanelBlocks row blocks (16 rows each)
//       K block of kb <= kMaxKBlock k-tiles (64 k each): the panel's weights for this K block are
//         staged once into a per-thread buffer (kPanelBlocks x kb KiB, L2-resident) and reused by
//         every token tile of the chunk
//         token-tile pair x row-block pair: 2 x 2 accumulators tmm0..3, activations tmm4,5,
//         weights tmm6,7, so each tile load feeds two tdpbssd; the accumulators are parked in a
//         per-thread int32 buffer between K blocks and scaled out after the last one.
// A last partial token tile (M % 16 rows) is copied, zero-padded, into a 16-row scratch so every
// tile is full; rows beyond M are computed and discarded. Only n_pad rows of the matrix are read.
#include <immintrin.h>

#include <algorithm>
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

constexpr int64_t kTileBytes = 1024;  // 16 rows x 64 bytes
constexpr int kTileInts = 256;        // an int32 C tile

// Blocking. K blocks hold at most kMaxKBlock k-tiles (4096 k; a 2560- or 2624-wide matrix is one
// block, 6912 is two of 54) and are balanced; token chunks hold activations of at most
// kChunkActBytes so they stay in L2 while every row panel streams past them.
constexpr int64_t kPanelBlocks = 2;   // row blocks per panel (one B tile pair)
constexpr int64_t kMaxKBlock = 64;    // k-tiles
constexpr int64_t kChunkActBytes = int64_t{1} << 20;

void configure_full() {
  TileConfig cfg;
  std::memset(&cfg, 0, sizeof cfg);
  cfg.palette_id = 1;
  for (int i = 0; i < 8; ++i) {
    cfg.rows[i] = 16;
    cfg.colsb[i] = 64;
  }
  // GCC 12 does not see that ldtilecfg reads cfg and may drop the stores above (all-zero rows
  // then make the first tile load #UD); the barrier keeps them.
  asm volatile("" : : "m"(cfg) : "memory");
  _tile_loadconfig(&cfg);
}

// Stages k-tiles [kt0, kt0 + nk) of row blocks rb0 .. rb0 + nb - 1 as s8 B tiles, laid out
// [kt][block] (tile (kt, b) at dst + (kt * nb + b) KiB).
void stage_b(const TernaryMatrix& w, int64_t rb0, int64_t nb, int64_t kt0, int64_t nk, int8_t* dst) {
  const __m512i low2 = _mm512_set1_epi8(0x03), one = _mm512_set1_epi8(1);
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* p = w.block(rb0 + b) + kt0 * 4 * kChunkBytes;
    for (int64_t kt = 0; kt < nk; ++kt) {
      int8_t* tile = dst + (kt * nb + b) * kTileBytes;
      for (int c = 0; c < 4; ++c) {
        const __m512i v = _mm512_load_si512(p + (kt * 4 + c) * kChunkBytes);
        int8_t* q = tile + c * 4 * 64;
        _mm512_store_si512(q + 0, _mm512_sub_epi8(_mm512_and_si512(v, low2), one));
        _mm512_store_si512(q + 64, _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(v, 2), low2), one));
        _mm512_store_si512(q + 128, _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(v, 4), low2), one));
        _mm512_store_si512(q + 192, _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(v, 6), low2), one));
      }
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

// Before the last K block's products of token tiles t, t + ta - 1 x row blocks from row0: claim
// their output lines for writing, so the read-for-ownership misses (each of the up to 64 lines lies
// in another output row) overlap the tile products instead of stalling store_tile. Measured on
// the device's Xeon (bench/lab/amx_gemm_lab.cpp): +7 % median on the 2B4T shapes at M = 128.
// (asm: GCC 12 deleted the loop of __builtin_prefetch calls here as having no effect.)
void prefetch_out(const GemmOut& out, int64_t t, int ta, int64_t m, int64_t row0, int tb, int64_t n1) {
  for (int i = 0; i < ta; ++i) {
    const int64_t m0 = (t + i) * 16, rows = std::min<int64_t>(16, m - m0);
    for (int jj = 0; jj < tb; ++jj) {
      const int64_t r0 = row0 + jj * kRowBlock;
      if (r0 >= n1) continue;
      for (int64_t r = 0; r < rows; ++r)
        asm volatile("prefetchw %0" : : "m"(out.f32[(m0 + r) * out.ld_f32 + r0]));
    }
  }
}

// TA token tiles (a0, a1: stride lda) x TB row blocks (b: tile (kt, j) at b + kt * bstride + j KiB)
// over nk k-tiles. Accumulators start at zero (first) or from c, and are parked in c
// (tile (i, j) at c + (2i + j) * 256).
template <int TA, int TB>
void micro(const int8_t* a0, const int8_t* a1, int64_t lda, const int8_t* b, int64_t bstride,
           int64_t nk, int32_t* c, bool first) {
  if (first) {
    _tile_zero(0);
    if constexpr (TB == 2) _tile_zero(1);
    if constexpr (TA == 2) _tile_zero(2);
    if constexpr (TA == 2 && TB == 2) _tile_zero(3);
  } else {
    _tile_loadd(0, c, 64);
    if constexpr (TB == 2) _tile_loadd(1, c + kTileInts, 64);
    if constexpr (TA == 2) _tile_loadd(2, c + 2 * kTileInts, 64);
    if constexpr (TA == 2 && TB == 2) _tile_loadd(3, c + 3 * kTileInts, 64);
  }
  for (int64_t kt = 0; kt < nk; ++kt) {
    const int8_t* bk = b + kt * bstride;
    _tile_loadd(4, a0 + kt * 64, lda);
    _tile_loadd(6, bk, 64);
    _tile_dpbssd(0, 4, 6);
    if constexpr (TB == 2) {
      _tile_loadd(7, bk + kTileBytes, 64);
      _tile_dpbssd(1, 4, 7);
    }
    if constexpr (TA == 2) {
      _tile_loadd(5, a1 + kt * 64, lda);
      _tile_dpbssd(2, 5, 6);
      if constexpr (TB == 2) _tile_dpbssd(3, 5, 7);
    }
  }
  _tile_stored(0, c, 64);
  if constexpr (TB == 2) _tile_stored(1, c + kTileInts, 64);
  if constexpr (TA == 2) _tile_stored(2, c + 2 * kTileInts, 64);
  if constexpr (TA == 2 && TB == 2) _tile_stored(3, c + 3 * kTileInts, 64);
}

using MicroFn = void (*)(const int8_t*, const int8_t*, int64_t, const int8_t*, int64_t, int64_t,
                         int32_t*, bool);
constexpr MicroFn kMicro[2][2] = {{micro<1, 1>, micro<1, 2>}, {micro<2, 1>, micro<2, 2>}};

}  // namespace

void ternary_gemm_amx(const TernaryMatrix& w, const QuantizedActs& x, int64_t n0, int64_t n1,
                      const GemmOut& out) {
  if (n0 >= n1 || x.m <= 0) return;
  const int64_t lda = x.k_pad;
  const int64_t ktiles = w.k_pad / 64;
  const int64_t nkb = (ktiles + kMaxKBlock - 1) / kMaxKBlock;
  const int64_t kb = (ktiles + nkb - 1) / nkb;
  constexpr int64_t np = kPanelBlocks;

  // Token tiles, and chunks of an even number of them whose activations stay in L2.
  const int64_t tiles = (x.m + 15) / 16, full_tiles = x.m / 16;
  int64_t max_chunk = kChunkActBytes / (16 * x.k_pad);
  max_chunk = std::max<int64_t>(2, max_chunk & ~int64_t{1});
  const int64_t nchunks = (tiles + max_chunk - 1) / max_chunk;
  int64_t chunk = (tiles + nchunks - 1) / nchunks;
  chunk += chunk & 1;

  // Per-thread scratch: staged weights, parked accumulators, the zero-padded last token tile.
  const size_t stage_bytes = static_cast<size_t>(np * kb * kTileBytes);
  const size_t acc_bytes = static_cast<size_t>((chunk / 2) * (np / 2) * 4 * kTileBytes);
  const size_t tail_bytes = x.m % 16 ? static_cast<size_t>(16 * lda) : 0;
  thread_local AlignedBuffer scratch;
  if (scratch.size() < stage_bytes + acc_bytes + tail_bytes)
    scratch = AlignedBuffer(stage_bytes + acc_bytes + tail_bytes);
  int8_t* bst = reinterpret_cast<int8_t*>(scratch.data());
  int32_t* acc = reinterpret_cast<int32_t*>(scratch.data() + stage_bytes);
  int8_t* tail = reinterpret_cast<int8_t*>(scratch.data() + stage_bytes + acc_bytes);
  if (tail_bytes) {
    const int64_t r = x.m % 16;
    std::memcpy(tail, x.q + full_tiles * 16 * lda, static_cast<size_t>(r * lda));
    std::memset(tail + r * lda, 0, static_cast<size_t>((16 - r) * lda));
  }
  auto a_tile = [&](int64_t t) -> const int8_t* { return t < full_tiles ? x.q + t * 16 * lda : tail; };

  configure_full();
  const int64_t nb_end = (n1 + kRowBlock - 1) / kRowBlock;  // row blocks holding rows < n1
  for (int64_t c0 = 0; c0 < tiles; c0 += chunk) {
    const int64_t c1 = std::min(tiles, c0 + chunk);
    for (int64_t rb0 = n0 / kRowBlock; rb0 < nb_end; rb0 += np) {
      const int64_t nbp = std::min(np, nb_end - rb0);  // blocks in this panel
      for (int64_t kq = 0; kq < nkb; ++kq) {
        const int64_t kt0 = kq * kb, nk = std::min(kb, ktiles - kt0);
        stage_b(w, rb0, nbp, kt0, nk, bst);
        const bool first = kq == 0, last = kq == nkb - 1;
        for (int64_t t = c0; t < c1; t += 2) {
          const int ta = t + 1 < c1 ? 2 : 1;
          const int8_t* a0 = a_tile(t) + kt0 * 64;
          const int8_t* a1 = ta == 2 ? a_tile(t + 1) + kt0 * 64 : a0;
          for (int64_t j = 0; j < nbp; j += 2) {
            const int tb = j + 1 < nbp ? 2 : 1;
            int32_t* c = acc + (((t - c0) / 2) * (np / 2) + j / 2) * 4 * kTileInts;
            if (last && out.f32) prefetch_out(out, t, ta, x.m, (rb0 + j) * kRowBlock, tb, n1);
            kMicro[ta - 1][tb - 1](a0, a1, lda, bst + j * kTileBytes, nbp * kTileBytes, nk, c, first);
            if (!last) continue;
            for (int i = 0; i < ta; ++i) {
              const int64_t m0 = (t + i) * 16;
              const int rows = static_cast<int>(std::min<int64_t>(16, x.m - m0));
              for (int jj = 0; jj < tb; ++jj)
                store_tile(c + (2 * i + jj) * kTileInts, rows, w, x, m0, (rb0 + j + jj) * kRowBlock, n1, out);
            }
          }
        }
      }
    }
  }
  _tile_release();
}

}  // namespace bitnet
