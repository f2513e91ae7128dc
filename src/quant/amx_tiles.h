#pragma once
// AMX-INT8 building blocks shared by the prefill kernel (gemm_amx.cpp) and its lab
// (bench/lab/amx_gemm_lab.cpp). Include only from translation units compiled with the AMX flags
// (BITNET_FLAGS_AMX); everything here has internal linkage, so each includer keeps its own copy.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "quant/act_quant.h"
#include "quant/gemm.h"
#include "quant/native.h"

namespace bitnet::amx {
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

inline void configure_full() {
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

// Stages k-tiles [kt0, kt0 + nk) of row block rb as s8 B tiles into slot `slot` of a layout of
// `slots` blocks per k-tile, [kt][slot] (tile (kt, slot) at dst + (kt * slots + slot) KiB).
//
// Each plane is one vpermb (AVX-512 VBMI) of the chunk through a 64-entry table indexed by the
// byte's low 6 bits (planes 0 - 2: table s holds ((i >> 2s) & 3) - 1); plane 3 is the chunk
// shifted right by 6 (16-bit lanes: the neighbour byte's bits land in index bits 2 - 5, which
// table 0 ignores) through table 0. 4 permutes + 1 shift per 64 bytes instead of 3 shifts, 4 masks
// and 4 subtractions (test AmxStaging checks the bytes against the B-tile layout).
inline __m512i plane_table(int s) {
  alignas(64) int8_t t[64];
  for (int i = 0; i < 64; ++i) t[i] = static_cast<int8_t>(((i >> (2 * s)) & 3) - 1);
  return _mm512_load_si512(t);
}
struct PlaneTables {
  __m512i t0, t1, t2;
};
inline PlaneTables plane_tables() {
  return {plane_table(0), plane_table(1), plane_table(2)};
}
// One native chunk (64 packed bytes: 16 rows x 16 k) into its four B tile rows at q.
inline void stage_chunk(const uint8_t* p, int8_t* q, const PlaneTables& t) {
  const __m512i v = _mm512_load_si512(p);
  _mm512_store_si512(q + 0, _mm512_permutexvar_epi8(v, t.t0));
  _mm512_store_si512(q + 64, _mm512_permutexvar_epi8(v, t.t1));
  _mm512_store_si512(q + 128, _mm512_permutexvar_epi8(v, t.t2));
  _mm512_store_si512(q + 192, _mm512_permutexvar_epi8(_mm512_srli_epi16(v, 6), t.t0));
}
inline void stage_block(const TernaryMatrix& w, int64_t rb, int64_t slot, int64_t slots, int64_t kt0,
                        int64_t nk, int8_t* dst) {
  const PlaneTables t = plane_tables();
  const uint8_t* p = w.block(rb) + kt0 * 4 * kChunkBytes;
  for (int64_t kt = 0; kt < nk; ++kt)
    for (int c = 0; c < 4; ++c)
      stage_chunk(p + (kt * 4 + c) * kChunkBytes, dst + (kt * slots + slot) * kTileBytes + c * 256, t);
}
// Row blocks rb0 .. rb0 + nb - 1 into slots 0 .. nb - 1.
inline void stage_b(const TernaryMatrix& w, int64_t rb0, int64_t nb, int64_t kt0, int64_t nk, int8_t* dst) {
  for (int64_t b = 0; b < nb; ++b) stage_block(w, rb0 + b, b, nb, kt0, nk, dst);
}

// Staging in pieces: the prefill kernel stages the next step's weights a few chunks at a time
// between its tile products (gemm_amx.cpp). A Stager walks the chunks of row blocks blocks[0 ..
// slots - 1] (at most 2), k-tiles [kt0, kt0 + nk), block by block (each block's packed bytes are
// contiguous, so the reads stream); each chunk lands where stage_block would put it.
struct Stager {
  const uint8_t* src[2] = {nullptr, nullptr};  // each block's packed bytes from k-tile kt0
  int8_t* dst = nullptr;
  int64_t slots = 0, per_block = 0;  // blocks; chunks per block (nk * 4)
  int64_t b = 0, j = 0;              // the next chunk: chunk j of block b
  int64_t left = 0;                  // chunks still to stage
};
inline Stager make_stager(const TernaryMatrix& w, const int64_t* blocks, int64_t slots, int64_t kt0,
                          int64_t nk, int8_t* dst) {
  Stager s;
  s.dst = dst;
  s.slots = slots;
  s.per_block = nk * 4;
  s.left = slots * nk * 4;
  for (int64_t b = 0; b < slots; ++b) s.src[b] = w.block(blocks[b]) + kt0 * 4 * kChunkBytes;
  return s;
}
// Stages the next u chunks (fewer at the end). PFD > 0 prefetches the packed bytes PFD chunks
// ahead into L1 (the reads come from DRAM; past a block's end the prefetch lands in the next
// block's bytes, harmless).
template <int PFD>
inline void stage_chunks(Stager& s, int64_t u, const PlaneTables& t) {
  for (; u > 0 && s.left > 0; --u, --s.left) {
    const uint8_t* p = s.src[s.b] + s.j * kChunkBytes;
    if constexpr (PFD > 0) _mm_prefetch(reinterpret_cast<const char*>(p + PFD * kChunkBytes), _MM_HINT_T0);
    stage_chunk(p, s.dst + ((s.j >> 2) * s.slots + s.b) * kTileBytes + (s.j & 3) * 256, t);
    if (++s.j == s.per_block) s.j = 0, ++s.b;
  }
}

inline void store_tile(const int32_t* c, int rows, const TernaryMatrix& w, const QuantizedActs& x, int64_t m0,
                       int64_t row0, int64_t n1, const GemmOut& out) {
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
      float* dst = out.f32 + m * out.ld_f32 + row0;
      __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), f);
      if (out.add) v = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, dst), v);
      _mm512_mask_storeu_ps(dst, mask, v);
    }
  }
}

// relu(gate)^2 * up for one token tile from its gate and up accumulator tiles (rows gate_row and
// up_row of w, 16 each): the floats store_tile would write for each, then relu2_mul's operations
// in its order (max(g, 0), g * g, * u), so the result equals the unfused path bit for bit.
inline void store_relu2(const int32_t* cg, const int32_t* cu, int rows, const TernaryMatrix& w,
                        const QuantizedActs& x, int64_t m0, int64_t gate_row, int64_t up_row, float* act,
                        int64_t ld_act) {
  const __m512 rg = _mm512_loadu_ps(w.row_scale() + gate_row), ru = _mm512_loadu_ps(w.row_scale() + up_row);
  const __m512 zero = _mm512_setzero_ps();
  for (int t = 0; t < rows; ++t) {
    const int64_t m = m0 + t;
    const __m512 dq = _mm512_set1_ps(x.dq[m]);
    const __m512 g = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_load_si512(cg + 16 * t)), _mm512_mul_ps(rg, dq));
    const __m512 u = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_load_si512(cu + 16 * t)), _mm512_mul_ps(ru, dq));
    const __m512 r = _mm512_max_ps(g, zero);
    _mm512_storeu_ps(act + m * ld_act + gate_row, _mm512_mul_ps(_mm512_mul_ps(r, r), u));
  }
}

// Before the last K block's products of token tiles t, t + ta - 1 x row blocks from row0: claim
// their output lines for writing, so the read-for-ownership misses (each of the up to 64 lines lies
// in another output row) overlap the tile products instead of stalling store_tile. Measured on
// the device's Xeon (bench/lab/amx_gemm_lab.cpp): +7 % median on the 2B4T shapes at M = 128.
// (asm: GCC 12 deleted the loop of __builtin_prefetch calls here as having no effect.)
inline void prefetch_out(const GemmOut& out, int64_t t, int ta, int64_t m, int64_t row0, int tb, int64_t n1) {
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

// K blocks of at most max_kb k-tiles (64 k each), balanced: {k-tiles, blocks, k-tiles per block}.
struct KBlocks {
  int64_t ktiles, nkb, kb;
};
inline KBlocks k_blocks(const TernaryMatrix& w, int64_t max_kb) {
  const int64_t ktiles = w.k_pad / 64, nkb = (ktiles + max_kb - 1) / max_kb;
  return {ktiles, nkb, (ktiles + nkb - 1) / nkb};
}

// Token tiles per chunk: an even number whose activations (16 x k_pad bytes a tile) fit in
// act_bytes, balanced over the chunks, so they stay in L2 while every row panel streams past.
inline int64_t token_chunk(const QuantizedActs& x, int64_t act_bytes) {
  const int64_t tiles = (x.m + 15) / 16;
  int64_t max_chunk = act_bytes / (16 * x.k_pad);
  max_chunk = std::max<int64_t>(2, max_chunk & ~int64_t{1});
  const int64_t nchunks = (tiles + max_chunk - 1) / max_chunk;
  const int64_t chunk = (tiles + nchunks - 1) / nchunks;
  return chunk + (chunk & 1);
}

template <bool PF>
inline void prefetch_tile(const int8_t* a, int64_t stride) {
  if constexpr (PF)
    for (int r = 0; r < 16; ++r) _mm_prefetch(reinterpret_cast<const char*>(a + r * stride), _MM_HINT_T0);
}

// TA token tiles x TB row blocks over nk k-tiles. Activation tile (i, kt) at ai + kt * akstep with
// row stride astride (the library: rows of QuantizedActs::q, akstep 64); weight tile (kt, j) at
// b + kt * bstride + j KiB. Accumulators start at zero (first) or from c, and are parked in c
// (tile (i, j) at c + (2i + j) * 256). PF (the lab's knob) prefetches activation tiles two
// k-steps ahead. each() runs after every k-step's products are issued: the tile unit works
// through them from its queue while the core's vector ports are free (the kernel stages the next
// step's weights there).
struct NoWork {
  void operator()() const {}
};
template <int TA, int TB, bool PF = false, class Each = NoWork>
inline void micro_each(const int8_t* a0, const int8_t* a1, int64_t astride, int64_t akstep, const int8_t* b,
                       int64_t bstride, int64_t nk, int32_t* c, bool first, Each&& each) {
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
    if (PF && kt + 2 < nk) {
      prefetch_tile<PF>(a0 + (kt + 2) * akstep, astride);
      if constexpr (TA == 2) prefetch_tile<PF>(a1 + (kt + 2) * akstep, astride);
    }
    _tile_loadd(4, a0 + kt * akstep, astride);
    _tile_loadd(6, bk, 64);
    _tile_dpbssd(0, 4, 6);
    if constexpr (TB == 2) {
      _tile_loadd(7, bk + kTileBytes, 64);
      _tile_dpbssd(1, 4, 7);
    }
    if constexpr (TA == 2) {
      _tile_loadd(5, a1 + kt * akstep, astride);
      _tile_dpbssd(2, 5, 6);
      if constexpr (TB == 2) _tile_dpbssd(3, 5, 7);
    }
    each();
  }
  _tile_stored(0, c, 64);
  if constexpr (TB == 2) _tile_stored(1, c + kTileInts, 64);
  if constexpr (TA == 2) _tile_stored(2, c + 2 * kTileInts, 64);
  if constexpr (TA == 2 && TB == 2) _tile_stored(3, c + 3 * kTileInts, 64);
}
template <int TA, int TB, bool PF = false>
void micro(const int8_t* a0, const int8_t* a1, int64_t astride, int64_t akstep, const int8_t* b,
           int64_t bstride, int64_t nk, int32_t* c, bool first) {
  micro_each<TA, TB, PF>(a0, a1, astride, akstep, b, bstride, nk, c, first, NoWork{});
}

using MicroFn = void (*)(const int8_t*, const int8_t*, int64_t, int64_t, const int8_t*, int64_t, int64_t,
                         int32_t*, bool);

}  // namespace
}  // namespace bitnet::amx
