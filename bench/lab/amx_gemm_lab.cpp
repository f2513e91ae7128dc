// AMX GEMM lab (llm.c's dev/ habit): variants of the ternary x int8 AMX prefill kernel
// (src/quant/gemm_amx.cpp), each checked against the AVX-512 VNNI kernel's int32 accumulators bit
// for bit and then timed, interleaved round by round, on the 2B4T shapes with cold weights
// (>= 256 MB of copies). Usage: bench_amx_lab [rounds] [seconds per cell] [all | relu2]; needs
// AMX-INT8 ("relu2": only the gate|up product + activation against the fused form).
//
// Knobs (template parameters of gemm<>):
//   KB  most k-tiles (64 k each) per K block; the block's staged weights are NP x KB KiB.
//   NP  row blocks (16 rows) per panel; a token-tile group walks the panel's row-block groups.
//   RP  activations repacked per token chunk into contiguous 1 KiB tiles.
//   PF  software prefetch of the activation tiles two k-steps ahead.
//   MK  micro-kernel kind (Kind<>): 2x2 interleaved (the library's), 2x2 loads first, 1x1 / 1x2 /
//       2x1 with double-buffered operand tiles, and B-tile prefetch.
//   PW  prefetchw of the output lines before the last K block (the library does this now).
//   PN  prefetch of the next panel's packed weights (T0 / T1 / T2).
//   (Unmasked output stores for full row blocks were tried too: neutral, removed.)
//   DIAG timing-only cuts (results wrong): staging only, no re-staging, no output stores; and 4 =
//        the shift-and-mask staging of the fifth session (results right), against the vpermb one.
// Also printed: tdpbssd rate with 1, 2, 4, 6 accumulators, and the micro kinds on L1- and
// L2-resident operands. What the runs showed is in docs/PERFORMANCE.md ("AMX GEMM lab").
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/arena.h"
#include "core/cpu.h"
#include "core/memory.h"
#include "core/thread_pool.h"
#include "quant/act_quant.h"
#include "quant/amx_tiles.h"
#include "quant/gemm.h"
#include "quant/native.h"
#include "quant/random_data.h"
#include "ops/vec.h"

namespace bitnet {
namespace {

using amx::configure_full;
using amx::kTileBytes;
using amx::kTileInts;
using amx::micro;
using amx::MicroFn;
using amx::prefetch_tile;
using amx::stage_b;
using amx::store_tile;
constexpr int64_t kChunkActBytes = int64_t{1} << 20;

// ---- micro-kernel kinds (full tiles only; edges use micro<ta, tb> above) ----
// Accumulator tile (i, j) at c + (i * TB + j) KiB. "db" kinds double-buffer their operand tiles
// so the loads of step kt + 1 need not wait for the tdpbssd of step kt to release a register.
inline void c_init(int n, int32_t* c, bool first) {
  if (first) {
    _tile_zero(0);
    if (n > 1) _tile_zero(1);
    if (n > 2) _tile_zero(2);
    if (n > 3) _tile_zero(3);
  } else {
    _tile_loadd(0, c, 64);
    if (n > 1) _tile_loadd(1, c + kTileInts, 64);
    if (n > 2) _tile_loadd(2, c + 2 * kTileInts, 64);
    if (n > 3) _tile_loadd(3, c + 3 * kTileInts, 64);
  }
}
inline void c_store(int n, int32_t* c) {
  _tile_stored(0, c, 64);
  if (n > 1) _tile_stored(1, c + kTileInts, 64);
  if (n > 2) _tile_stored(2, c + 2 * kTileInts, 64);
  if (n > 3) _tile_stored(3, c + 3 * kTileInts, 64);
}

// 2x2, every operand load first, then the four products.
template <bool PF, int PFB = 0>
void mk_2x2_lf(const int8_t* a0, const int8_t* a1, int64_t as, int64_t ak, const int8_t* b, int64_t bs,
               int64_t nk, int32_t* c, bool first) {
  c_init(4, c, first);
  for (int64_t kt = 0; kt < nk; ++kt) {
    if (kt + 2 < nk) {
      prefetch_tile<PF>(a0 + (kt + 2) * ak, as);
      prefetch_tile<PF>(a1 + (kt + 2) * ak, as);
    }
    if constexpr (PFB > 0) {
      if (kt + PFB < nk) {
        prefetch_tile<true>(b + (kt + PFB) * bs, 64);
        prefetch_tile<true>(b + (kt + PFB) * bs + kTileBytes, 64);
      }
    }
    _tile_loadd(4, a0 + kt * ak, as);
    _tile_loadd(5, a1 + kt * ak, as);
    _tile_loadd(6, b + kt * bs, 64);
    _tile_loadd(7, b + kt * bs + kTileBytes, 64);
    _tile_dpbssd(0, 4, 6);
    _tile_dpbssd(1, 4, 7);
    _tile_dpbssd(2, 5, 6);
    _tile_dpbssd(3, 5, 7);
  }
  c_store(4, c);
}

// 1x1 double-buffered: C tmm0; A tmm2/3; B tmm4/5.
template <bool PF>
void mk_1x1_db(const int8_t* a0, const int8_t*, int64_t as, int64_t ak, const int8_t* b, int64_t bs,
               int64_t nk, int32_t* c, bool first) {
  c_init(1, c, first);
  int64_t kt = 0;
  for (; kt + 1 < nk; kt += 2) {
    if (kt + 3 < nk) {
      prefetch_tile<PF>(a0 + (kt + 2) * ak, as);
      prefetch_tile<PF>(a0 + (kt + 3) * ak, as);
    }
    _tile_loadd(2, a0 + kt * ak, as);
    _tile_loadd(4, b + kt * bs, 64);
    _tile_dpbssd(0, 2, 4);
    _tile_loadd(3, a0 + (kt + 1) * ak, as);
    _tile_loadd(5, b + (kt + 1) * bs, 64);
    _tile_dpbssd(0, 3, 5);
  }
  if (kt < nk) {
    _tile_loadd(2, a0 + kt * ak, as);
    _tile_loadd(4, b + kt * bs, 64);
    _tile_dpbssd(0, 2, 4);
  }
  c_store(1, c);
}

// 1x2 double-buffered (one token tile, two row blocks): C tmm0,1; A tmm2/3; B tmm4,5/6,7.
// GROUPED orders the products by accumulator (0,0,1,1) instead of by step (0,1,0,1).
template <bool PF, bool GROUPED>
void mk_1x2_db(const int8_t* a0, const int8_t*, int64_t as, int64_t ak, const int8_t* b, int64_t bs,
               int64_t nk, int32_t* c, bool first) {
  c_init(2, c, first);
  int64_t kt = 0;
  for (; kt + 1 < nk; kt += 2) {
    if (kt + 3 < nk) {
      prefetch_tile<PF>(a0 + (kt + 2) * ak, as);
      prefetch_tile<PF>(a0 + (kt + 3) * ak, as);
    }
    const int8_t* b0 = b + kt * bs;
    const int8_t* b1 = b0 + bs;
    _tile_loadd(2, a0 + kt * ak, as);
    _tile_loadd(4, b0, 64);
    _tile_loadd(5, b0 + kTileBytes, 64);
    if constexpr (!GROUPED) {
      _tile_dpbssd(0, 2, 4);
      _tile_dpbssd(1, 2, 5);
    }
    _tile_loadd(3, a0 + (kt + 1) * ak, as);
    _tile_loadd(6, b1, 64);
    _tile_loadd(7, b1 + kTileBytes, 64);
    if constexpr (GROUPED) {
      _tile_dpbssd(0, 2, 4);
      _tile_dpbssd(0, 3, 6);
      _tile_dpbssd(1, 2, 5);
      _tile_dpbssd(1, 3, 7);
    } else {
      _tile_dpbssd(0, 3, 6);
      _tile_dpbssd(1, 3, 7);
    }
  }
  if (kt < nk) {
    _tile_loadd(2, a0 + kt * ak, as);
    _tile_loadd(4, b + kt * bs, 64);
    _tile_loadd(5, b + kt * bs + kTileBytes, 64);
    _tile_dpbssd(0, 2, 4);
    _tile_dpbssd(1, 2, 5);
  }
  c_store(2, c);
}

// 2x1 double-buffered (two token tiles share one row block): C tmm0,1; A tmm2,3/4,5; B tmm6/7.
template <bool PF, int PFB = 0>
void mk_2x1_db(const int8_t* a0, const int8_t* a1, int64_t as, int64_t ak, const int8_t* b, int64_t bs,
               int64_t nk, int32_t* c, bool first) {
  c_init(2, c, first);
  int64_t kt = 0;
  for (; kt + 1 < nk; kt += 2) {
    if (kt + 3 < nk) {
      prefetch_tile<PF>(a0 + (kt + 2) * ak, as);
      prefetch_tile<PF>(a1 + (kt + 2) * ak, as);
      prefetch_tile<PF>(a0 + (kt + 3) * ak, as);
      prefetch_tile<PF>(a1 + (kt + 3) * ak, as);
    }
    if constexpr (PFB > 0) {
      if (kt + PFB + 1 < nk) {
        prefetch_tile<true>(b + (kt + PFB) * bs, 64);
        prefetch_tile<true>(b + (kt + PFB + 1) * bs, 64);
      }
    }
    _tile_loadd(6, b + kt * bs, 64);
    _tile_loadd(2, a0 + kt * ak, as);
    _tile_dpbssd(0, 2, 6);
    _tile_loadd(3, a1 + kt * ak, as);
    _tile_dpbssd(1, 3, 6);
    _tile_loadd(7, b + (kt + 1) * bs, 64);
    _tile_loadd(4, a0 + (kt + 1) * ak, as);
    _tile_dpbssd(0, 4, 7);
    _tile_loadd(5, a1 + (kt + 1) * ak, as);
    _tile_dpbssd(1, 5, 7);
  }
  if (kt < nk) {
    _tile_loadd(6, b + kt * bs, 64);
    _tile_loadd(2, a0 + kt * ak, as);
    _tile_dpbssd(0, 2, 6);
    _tile_loadd(3, a1 + kt * ak, as);
    _tile_dpbssd(1, 3, 6);
  }
  c_store(2, c);
}

// Micro kinds: TA token tiles x TB row blocks per call, the function, and a name.
struct KindInfo {
  int TA, TB;
  const char* name;
};
constexpr KindInfo kKinds[] = {{2, 2, "2x2"},        {2, 2, "2x2lf"},      {1, 1, "1x1db"},
                               {1, 2, "1x2db"},      {1, 2, "1x2dbg"},     {2, 1, "2x1db"},
                               {2, 1, "2x1db_pfb2"}, {2, 2, "2x2lf_pfb2"}, {2, 1, "2x1db_pfb4"}};
template <int MK, bool PF>
constexpr MicroFn kind_fn() {
  if constexpr (MK == 0) return micro<2, 2, PF>;
  if constexpr (MK == 1) return mk_2x2_lf<PF>;
  if constexpr (MK == 2) return mk_1x1_db<PF>;
  if constexpr (MK == 3) return mk_1x2_db<PF, false>;
  if constexpr (MK == 4) return mk_1x2_db<PF, true>;
  if constexpr (MK == 5) return mk_2x1_db<PF>;
  if constexpr (MK == 6) return mk_2x1_db<PF, 2>;
  if constexpr (MK == 7) return mk_2x2_lf<PF, 2>;
  if constexpr (MK == 8) return mk_2x1_db<PF, 4>;
}
template <int MK>
struct Kind {
  static constexpr int TA = kKinds[MK].TA, TB = kKinds[MK].TB;
  template <bool PF>
  static constexpr MicroFn fn = kind_fn<MK, PF>();
  static constexpr const char* name = kKinds[MK].name;
};

// DIAG (timing only, results wrong): 1 = staging only, 2 = stage only the first panel, 3 = no stores;
// 4 = the shift-and-mask staging (results right).
// PW: prefetch-for-write the output lines of a micro call's tiles before the last K block's call.
// PN: prefetch the next panel's packed weights (same K block), spread over this panel's calls.
// The staging before the sixth session (shift, mask, subtract per plane), for DIAG = 4: the same
// bytes as amx::stage_b's vpermb form, to time the two against each other.
void stage_b_shifts(const TernaryMatrix& w, int64_t rb0, int64_t nb, int64_t kt0, int64_t nk, int8_t* dst) {
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

template <int KB, int NP, bool RP, bool PF, int MK, int DIAG = 0, bool PW = false, int PN = 0>
void gemm(const TernaryMatrix& w, const QuantizedActs& x, int64_t n0, int64_t n1, const GemmOut& out) {
  using K = Kind<MK>;
  constexpr int TA = K::TA, TB = K::TB;
  static_assert(NP % 2 == 0);
  if (n0 >= n1 || x.m <= 0) return;
  constexpr MicroFn kEdge[2][2] = {{micro<1, 1, PF>, micro<1, 2, PF>}, {micro<2, 1, PF>, micro<2, 2, PF>}};
  constexpr MicroFn kFull = K::template fn<PF>;
  const int64_t lda = x.k_pad;
  const amx::KBlocks kbl = amx::k_blocks(w, KB);  // not a structured binding: lambdas capture these
  const int64_t ktiles = kbl.ktiles, nkb = kbl.nkb, kb = kbl.kb;
  constexpr int64_t np = NP;

  const int64_t tiles = (x.m + 15) / 16, full_tiles = x.m / 16;
  const int64_t chunk = amx::token_chunk(x, kChunkActBytes);

  // One parked accumulator slot (4 tiles) per (token tile group, row block group).
  const size_t stage_bytes = static_cast<size_t>(np * kb * kTileBytes);
  const size_t acc_bytes = static_cast<size_t>(((chunk + TA - 1) / TA) * (np / TB) * 4 * kTileBytes);
  const size_t a_bytes =
      RP ? static_cast<size_t>(chunk * 16 * lda) : (x.m % 16 ? static_cast<size_t>(16 * lda) : 0);
  thread_local AlignedBuffer scratch;
  if (scratch.size() < stage_bytes + acc_bytes + a_bytes)
    scratch = AlignedBuffer(stage_bytes + acc_bytes + a_bytes);
  int8_t* bst = reinterpret_cast<int8_t*>(scratch.data());
  int32_t* acc = reinterpret_cast<int32_t*>(scratch.data() + stage_bytes);
  int8_t* abuf = reinterpret_cast<int8_t*>(scratch.data() + stage_bytes + acc_bytes);
  if (!RP && a_bytes) {
    const int64_t r = x.m % 16;
    std::memcpy(abuf, x.q + full_tiles * 16 * lda, static_cast<size_t>(r * lda));
    std::memset(abuf + r * lda, 0, static_cast<size_t>((16 - r) * lda));
  }

  configure_full();
  const int64_t nb_end = (n1 + kRowBlock - 1) / kRowBlock;
  for (int64_t c0 = 0; c0 < tiles; c0 += chunk) {
    const int64_t c1 = std::min(tiles, c0 + chunk);
    if constexpr (RP) {
      // [tile][kt][16 rows][64]: every A tile one contiguous KiB.
      for (int64_t t = c0; t < c1; ++t)
        for (int r = 0; r < 16; ++r) {
          const int64_t m = t * 16 + r;
          int8_t* dst = abuf + (t - c0) * ktiles * kTileBytes + r * 64;
          if (m < x.m) {
            const int8_t* src = x.q + m * lda;
            for (int64_t kt = 0; kt < ktiles; ++kt)
              _mm512_store_si512(dst + kt * kTileBytes, _mm512_load_si512(src + kt * 64));
          } else {
            for (int64_t kt = 0; kt < ktiles; ++kt)
              _mm512_store_si512(dst + kt * kTileBytes, _mm512_setzero_si512());
          }
        }
    }
    auto a_tile = [&](int64_t t, int64_t kt0) -> const int8_t* {
      if constexpr (RP) return abuf + ((t - c0) * ktiles + kt0) * kTileBytes;
      return (t < full_tiles ? x.q + t * 16 * lda : abuf) + kt0 * 64;
    };
    const int64_t astride = RP ? 64 : lda, akstep = RP ? kTileBytes : 64;
    for (int64_t rb0 = n0 / kRowBlock; rb0 < nb_end; rb0 += np) {
      const int64_t nbp = std::min(np, nb_end - rb0);
      for (int64_t kq = 0; kq < nkb; ++kq) {
        const int64_t kt0 = kq * kb, nk = std::min(kb, ktiles - kt0);
        if (DIAG == 4)
          stage_b_shifts(w, rb0, nbp, kt0, nk, bst);
        else if (DIAG != 2 || rb0 == n0 / kRowBlock)
          stage_b(w, rb0, nbp, kt0, nk, bst);
        if constexpr (DIAG == 1) continue;
        const bool first = kq == 0, last = kq == nkb - 1;
        // Next panel's packed bytes for this K block: rows blocks rb0 + np .. , k-tiles kt0 .. kt0 + nk.
        const int64_t nb_next = std::min(np, nb_end - (rb0 + np));
        const int64_t pn_lines = PN && nb_next > 0 ? nk * 4 : 0;  // 64-byte chunks per row block
        const int64_t calls = ((c1 - c0 + TA - 1) / TA) * ((nbp + TB - 1) / TB);
        const int64_t pn_per_call = (pn_lines * nb_next + calls - 1) / std::max<int64_t>(calls, 1);
        int64_t pn_done = 0;
        for (int64_t t = c0; t < c1; t += TA) {
          const int ta = static_cast<int>(std::min<int64_t>(TA, c1 - t));
          const int8_t* a0 = a_tile(t, kt0);
          const int8_t* a1 = ta == 2 ? a_tile(t + 1, kt0) : a0;
          for (int64_t j = 0; j < nbp; j += TB) {
            const int tb = static_cast<int>(std::min<int64_t>(TB, nbp - j));
            int32_t* c = acc + (((t - c0) / TA) * (np / TB) + j / TB) * 4 * kTileInts;
            const bool full = ta == TA && tb == TB;
            if constexpr (PN > 0) {
              for (int64_t e = 0; e < pn_per_call && pn_done < pn_lines * nb_next; ++e, ++pn_done) {
                const int64_t blk = pn_done / pn_lines, ch = pn_done % pn_lines;
                const char* pa =
                    reinterpret_cast<const char*>(w.block(rb0 + np + blk) + (kt0 * 4 + ch) * kChunkBytes);
                if constexpr (PN == 1) _mm_prefetch(pa, _MM_HINT_T0);
                if constexpr (PN == 2) _mm_prefetch(pa, _MM_HINT_T1);
                if constexpr (PN == 3) _mm_prefetch(pa, _MM_HINT_T2);
              }
            }
            if constexpr (PW) {
              if (last && DIAG != 3 && out.f32)
                amx::prefetch_out(out, t, ta, x.m, (rb0 + j) * kRowBlock, tb, n1);
            }
            (full ? kFull : kEdge[ta - 1][tb - 1])(a0, a1, astride, akstep, bst + j * kTileBytes,
                                                   nbp * kTileBytes, nk, c, first);
            if (!last || DIAG == 3) continue;
            for (int i = 0; i < ta; ++i) {
              const int64_t m0 = (t + i) * 16;
              const int rows = static_cast<int>(std::min<int64_t>(16, x.m - m0));
              for (int jj = 0; jj < tb; ++jj)
                store_tile(c + (full ? i * TB + jj : 2 * i + jj) * kTileInts, rows, w, x, m0,
                           (rb0 + j + jj) * kRowBlock, n1, out);
            }
          }
        }
      }
    }
  }
  _tile_release();
}

// ---- probes ----
template <int NACC>
double tdp_rate(int64_t iters) {
  configure_full();
  alignas(64) static thread_local int8_t src[2][1024];
  for (int i = 0; i < 2048; ++i) src[i / 1024][i % 1024] = static_cast<int8_t>(i * 7);
  _tile_loadd(6, src[0], 64);
  _tile_loadd(7, src[1], 64);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  _tile_zero(4);
  _tile_zero(5);
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < iters; ++i) {
    _tile_dpbssd(0, 6, 7);
    if constexpr (NACC >= 2) _tile_dpbssd(1, 6, 7);
    if constexpr (NACC >= 4) {
      _tile_dpbssd(2, 6, 7);
      _tile_dpbssd(3, 6, 7);
    }
    if constexpr (NACC >= 6) {
      _tile_dpbssd(4, 6, 7);
      _tile_dpbssd(5, 6, 7);
    }
  }
  alignas(64) int32_t o[256];
  _tile_stored(0, o, 64);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  _tile_release();
  if (o[0] == 12345) std::printf(" ");
  return static_cast<double>(iters) * NACC * 16384 / s / 1e9;
}

// A micro kind over nk k-tiles, operands in L1 (random data), repeated for about `secs`.
template <int MK>
double micro_rate(const int8_t* a, const int8_t* b, int64_t nk, double secs, int64_t as = 64,
                  int64_t ak = kTileBytes, int64_t a1off = -1) {
  if (a1off < 0) a1off = nk * kTileBytes;
  configure_full();
  alignas(64) static thread_local int32_t c[4 * 256];
  constexpr MicroFn f = Kind<MK>::template fn<false>;
  const auto t0 = std::chrono::steady_clock::now();
  int64_t reps = 0;
  double el = 0;
  while (el < secs) {
    for (int r = 0; r < 64; ++r) f(a, a + a1off, as, ak, b, 2 * kTileBytes, nk, c, reps + r == 0);
    reps += 64;
    el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  _tile_release();
  return static_cast<double>(reps) * nk * Kind<MK>::TA * Kind<MK>::TB * 16384 / el / 1e9;
}

struct Variant {
  std::string name;
  TernaryGemmFn fn;
};

template <int KB, int NP, bool RP, bool PF, int MK, int DIAG = 0, bool PW = false, int PN = 0>
Variant make() {
  char buf[96];
  std::snprintf(buf, sizeof buf, "%s%s_kb%d_np%d%s%s%s%s",
                DIAG ? (DIAG == 1   ? "STAGEONLY_"
                        : DIAG == 2 ? "NOSTAGE_"
                        : DIAG == 4 ? "SHIFTSTAGE_"
                                    : "NOSTORE_")
                     : "",
                Kind<MK>::name, KB, NP, RP ? "_rp" : "", PF ? "_pf" : "", PW ? "_pw" : "",
                PN == 0   ? ""
                : PN == 1 ? "_pn0"
                : PN == 2 ? "_pn1"
                          : "_pn2");
  return {buf, gemm<KB, NP, RP, PF, MK, DIAG, PW, PN>};
}

bool any(const TernaryMatrix&, const QuantizedActs&) {
  return true;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace
}  // namespace bitnet

// The 2B4T gate|up at M = 128 on 2 threads as the forward pass runs it for a prompt: stripes of 512
// gate rows per thread, either the f32 product of the gate and up stripes then relu2_mul per token
// ("product+act"), or ternary_gemm_relu2 straight from the accumulators ("fused"; checked equal
// first). GMAC/s counted over both halves, median of the rounds; cold weights.
int relu2_cells(int rounds, double cell_s) {
  using namespace bitnet;
  constexpr int64_t ff = 6912, k = 2560, m = 128, stripe = 512;
  auto wr = random_ternary(static_cast<size_t>(2 * ff * k), 42);
  std::vector<TernaryMatrix> ws;
  ws.push_back(pack_native(wr.data(), 2 * ff, k, 1.0f));
  while (static_cast<double>(ws.size() * ws[0].bytes()) < 256e6)
    ws.push_back(pack_native(wr.data(), 2 * ff, k, 1.0f));
  Arena arena;
  auto xf = random_floats(static_cast<size_t>(m * k), 7);
  auto x = alloc_quantized_acts(arena, m, k);
  quantize_acts(xf.data(), k, x);
  if (!relu2_fused_supported(ws[0], x, ff)) {
    std::printf("no fused relu2 form here\n");
    return 1;
  }
  std::vector<float> gu(static_cast<size_t>(m * 2 * ff)), act(static_cast<size_t>(m * ff)),
      act2(static_cast<size_t>(m * ff));
  ThreadPool pool(2);
  const GemmVariant& amx = gemm_variant("amx");
  auto run = [&](bool fused, const TernaryMatrix& w, float* out) {
    const int64_t stripes = (ff + stripe - 1) / stripe;
    pool.run([&](int tid) {
      for (int64_t st = stripes * tid / 2; st < stripes * (tid + 1) / 2; ++st) {
        const int64_t r0 = st * stripe, r1 = std::min(ff, r0 + stripe);
        if (fused) {
          ternary_gemm_relu2(w, x, ff, r0, r1, out, ff);
          continue;
        }
        const GemmOut o{nullptr, 0, gu.data(), 2 * ff};
        amx.fn(w, x, r0, r1, o);
        amx.fn(w, x, ff + r0, ff + r1, o);
        for (int64_t t = 0; t < m; ++t)
          relu2_mul(gu.data() + t * 2 * ff + r0, gu.data() + t * 2 * ff + ff + r0, out + t * ff + r0,
                    r1 - r0);
      }
    });
  };
  run(false, ws[0], act.data());
  run(true, ws[0], act2.data());
  if (std::memcmp(act.data(), act2.data(), act.size() * 4) != 0) {
    std::printf("MISMATCH fused relu2\n");
    return 2;
  }
  std::vector<double> rate[2];
  size_t wi = 0;
  for (int r = 0; r < rounds; ++r)
    for (int f = 0; f < 2; ++f) {
      int calls = 0;
      const auto t0 = std::chrono::steady_clock::now();
      double el = 0;
      while (el < cell_s || calls < 3) {
        run(f == 1, ws[wi], act.data());
        wi = (wi + 1) % ws.size();
        ++calls;
        el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      }
      rate[f].push_back(static_cast<double>(m * 2 * ff * k) * calls / el / 1e9);
    }
  std::printf("gate|up m128 t2 (fused equals product+act bit for bit): product+act=%.0f fused=%.0f GMAC/s\n",
              median(rate[0]), median(rate[1]));
  return 0;
}

int main(int argc, char** argv) {
  using namespace bitnet;
  if (!cpu_features().amx_int8 || !request_amx()) {
    std::printf("no AMX-INT8 here\n");
    return 1;
  }
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 3;
  const double cell_s = argc > 2 ? std::atof(argv[2]) : 0.12;
  if (argc > 3 && std::string(argv[3]) == "relu2") return relu2_cells(rounds, cell_s);
  {
    // Warm the unit up (AMX runs at a lower clock licence after a ramp), then interleaved rounds.
    tdp_rate<1>(20000000);
    std::vector<double> r1, r2, r4, r6;
    for (int r = 0; r < 3; ++r) {
      r1.push_back(tdp_rate<1>(6000000));
      r2.push_back(tdp_rate<2>(3000000));
      r4.push_back(tdp_rate<4>(1500000));
      r6.push_back(tdp_rate<6>(1000000));
    }
    std::printf("tdpbssd GMAC/s (1 thread, median of 3): 1 acc %.0f, 2 acc %.0f, 4 acc %.0f, 6 acc %.0f\n",
                median(r1), median(r2), median(r4), median(r6));
    // Micro kinds with operands in L1: nk 8 k-tiles, A 2 x 8 KiB, B 2 x 8 KiB, random bytes.
    AlignedBuffer a(2 * 8 * kTileBytes), b(2 * 8 * kTileBytes);
    auto ra = random_ternary(a.size(), 5);
    auto rb = random_ternary(b.size(), 6);
    for (size_t i = 0; i < a.size(); ++i) a.data()[i] = static_cast<uint8_t>(ra[i] * 37 + 3);
    for (size_t i = 0; i < b.size(); ++i) b.data()[i] = static_cast<uint8_t>(rb[i]);
    const int8_t* ap = reinterpret_cast<const int8_t*>(a.data());
    const int8_t* bp = reinterpret_cast<const int8_t*>(b.data());
    std::vector<double> m[6];
    for (int r = 0; r < 3; ++r) {
      m[0].push_back(micro_rate<0>(ap, bp, 8, 0.1));
      m[1].push_back(micro_rate<1>(ap, bp, 8, 0.1));
      m[2].push_back(micro_rate<2>(ap, bp, 8, 0.1));
      m[3].push_back(micro_rate<3>(ap, bp, 8, 0.1));
      m[4].push_back(micro_rate<4>(ap, bp, 8, 0.1));
      m[5].push_back(micro_rate<5>(ap, bp, 8, 0.1));
    }
    std::printf(
        "micro kinds, operands in L1, GMAC/s (1 thread, median of 3): 2x2 %.0f, 2x2lf %.0f, 1x1db %.0f, "
        "1x2db %.0f, 1x2dbg %.0f, 2x1db %.0f\n",
        median(m[0]), median(m[1]), median(m[2]), median(m[3]), median(m[4]), median(m[5]));
    // The same with the current GEMM's operand footprint: nk 40, A strided (k_pad 2560, two
    // token tiles = 80 KiB), B 2 x 40 KiB: both beyond L1.
    AlignedBuffer a2(32 * 2560), b2(2 * 40 * kTileBytes);
    for (size_t i = 0; i < a2.size(); ++i) a2.data()[i] = static_cast<uint8_t>(i * 37 + 3);
    for (size_t i = 0; i < b2.size(); ++i) b2.data()[i] = static_cast<uint8_t>((i * 11) % 3 - 1);
    const int8_t* ap2 = reinterpret_cast<const int8_t*>(a2.data());
    const int8_t* bp2 = reinterpret_cast<const int8_t*>(b2.data());
    std::vector<double> l2[3];
    for (int r = 0; r < 3; ++r) {
      l2[0].push_back(micro_rate<0>(ap2, bp2, 40, 0.1, 2560, 64, 16 * 2560));
      l2[1].push_back(micro_rate<5>(ap2, bp2, 40, 0.1, 2560, 64, 16 * 2560));
      l2[2].push_back(micro_rate<1>(ap2, bp2, 40, 0.1, 2560, 64, 16 * 2560));
    }
    std::printf("micro kinds, A strided 80 KiB + B 80 KiB (L2), GMAC/s: 2x2 %.0f, 2x1db %.0f, 2x2lf %.0f\n",
                median(l2[0]), median(l2[1]), median(l2[2]));
    std::fflush(stdout);
  }

  // "lib" is the library's kernel itself, against which a change to it is timed; the make<> one
  // beside it is the fifth session's library structure (the whole panel staged before its products;
  // the library now stages the next step's weights between the current step's tile products, which
  // the seventh session measured here as variants "is_pf0/16/64" before moving it into the library:
  // +14 - 30 % over the library of then in all six cells). The fifth session's other variants and
  // the timing-only cuts run with a third argument "all". (Sixth session: staging the next step's
  // weights in parts between the micro-kernel calls, double-buffered, was 2 - 16 % slower in
  // every cell on one lease and was dropped.)
  const bool all_variants = argc > 3 && std::string(argv[3]) == "all";
  std::vector<Variant> vs = {
      Variant{"lib", gemm_variant("amx").fn},
      make<64, 2, false, false, 0, 0, true, 0>(),
      make<64, 2, false, false, 0, 4, true, 0>(),
  };
  std::vector<Variant> diag;
  if (all_variants) {
    for (Variant v : {make<64, 2, false, false, 0>(), make<64, 2, false, false, 0, 0, true, 2>(),
                      make<64, 2, false, false, 0, 0, true, 3>(), make<64, 2, false, false, 0, 0, false, 2>(),
                      make<64, 4, false, false, 0, 0, true, 2>(), make<32, 2, false, false, 0, 0, true, 2>(),
                      make<16, 8, true, false, 1, 0, true, 2>()})
      vs.push_back(v);
    diag = {make<64, 2, false, false, 0, 3>(), make<64, 2, false, false, 0, 2, true>(),
            make<64, 2, false, false, 0, 1>()};
  }
  struct Shape {
    const char* name;
    int64_t n, k;
  };
  const Shape shapes[] = {{"q_o", 2560, 2560}, {"gate|up", 13824, 2560}, {"down", 2560, 6912}};
  const GemmVariant& vnni = gemm_variant("avx512vnni");

  // Correctness first, on awkward token counts (odd tails, one tile, a chunk boundary).
  for (int64_t m : {1, 17, 130, 131}) {
    for (const Shape& s : {Shape{"odd", 200, 328}, Shape{"q_o", 2560, 2560}, Shape{"down", 2560, 6912}}) {
      auto wr = random_ternary(static_cast<size_t>(s.n * s.k), 11);
      TernaryMatrix w = pack_native(wr.data(), s.n, s.k, 0.5f);
      Arena arena;
      auto xf = random_floats(static_cast<size_t>(m * s.k), 3);
      auto x = alloc_quantized_acts(arena, m, s.k);
      quantize_acts(xf.data(), s.k, x);
      std::vector<int32_t> ref(static_cast<size_t>(m * s.n)), got(ref.size());
      ternary_gemm_with(vnni, nullptr, w, x, {ref.data(), s.n, nullptr, 0});
      for (const Variant& v : vs) {
        std::fill(got.begin(), got.end(), -7);
        ThreadPool pool(2);
        GemmVariant gv{.name = v.name.c_str(), .supports = any, .fn = v.fn, .row_grain = 32};
        ternary_gemm_with(gv, &pool, w, x, {got.data(), s.n, nullptr, 0});
        if (got != ref) {
          std::printf("MISMATCH %s m=%ld %s\n", v.name.c_str(), static_cast<long>(m), s.name);
          return 2;
        }
      }
    }
  }
  std::printf("all %zu variants bit-exact against avx512vnni (m = 1, 17, 130, 131)\n", vs.size());

  for (int threads : {2, 1}) {
    ThreadPool pool(threads);
    for (const Shape& s : shapes) {
      auto wr = random_ternary(static_cast<size_t>(s.n * s.k), 42);
      std::vector<TernaryMatrix> ws;
      ws.push_back(pack_native(wr.data(), s.n, s.k, 1.0f));
      while (static_cast<double>(ws.size() * ws[0].bytes()) < 256e6)
        ws.push_back(pack_native(wr.data(), s.n, s.k, 1.0f));
      for (int64_t m : {128}) {
        Arena arena;
        auto xf = random_floats(static_cast<size_t>(m * s.k), 7);
        auto x = alloc_quantized_acts(arena, m, s.k);
        quantize_acts(xf.data(), s.k, x);
        std::vector<float> y(static_cast<size_t>(m * s.n));
        std::vector<Variant> all = vs;
        all.insert(all.end(), diag.begin(), diag.end());
        all.insert(all.begin(), Variant{"vnni", vnni.fn});
        std::vector<std::vector<double>> rates(all.size());
        size_t wi = 0;
        const double macs = static_cast<double>(m * s.n * s.k);
        for (int r = 0; r < rounds; ++r)
          for (size_t i = 0; i < all.size(); ++i) {
            GemmVariant gv{.name = all[i].name.c_str(), .supports = any, .fn = all[i].fn, .row_grain = 32};
            ternary_gemm_with(gv, &pool, ws[wi], x, {nullptr, 0, y.data(), s.n});
            wi = (wi + 1) % ws.size();
            int calls = 0;
            const auto t0 = std::chrono::steady_clock::now();
            double el = 0;
            while (el < cell_s || calls < 3) {
              ternary_gemm_with(gv, &pool, ws[wi], x, {nullptr, 0, y.data(), s.n});
              wi = (wi + 1) % ws.size();
              ++calls;
              el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            }
            rates[i].push_back(macs * calls / el / 1e9);
          }
        std::printf("t%d %-8s m%-4ld", threads, s.name, static_cast<long>(m));
        for (size_t i = 0; i < all.size(); ++i)
          std::printf(" %s=%.0f", all[i].name.c_str(), median(rates[i]));
        std::printf("\n");
        std::fflush(stdout);
      }
    }
  }
  return 0;
}
