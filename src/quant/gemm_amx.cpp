// AMX-INT8 variant (Sapphire Rapids and later) for prefill.
//
// tdpbssd multiplies s8 x s8, so activations are used as they are (rows of QuantizedActs::q, a
// tile row = 64 consecutive k of one token, loaded straight from memory with stride k_pad) and
// weights are staged as s8 w = code - 1 in AMX's B layout: B tile row kk holds, for each of 16
// output rows n, the 4 weights k = 4kk..4kk+3 (64 bytes). One native chunk (16 rows x 16 k) is
// exactly B tile rows 4*(chunk % 4) + s, s = 0..3, of k-tile chunk / 4 (the plane s of each byte),
// so staging is a table lookup (vpermb) per plane and a store (amx_tiles.h). No zero-point
// correction is needed.
//
// Blocking (all tiles are 16 x 64 bytes; one tile configuration per call):
//   token chunk (sized so its activations, M_c x k_pad bytes, stay in L2)
//     row panel of kPanelBlocks row blocks (16 rows each)
//       K block of kb <= kMaxKBlock k-tiles (64 k each): the panel's weights for this K block are
//         staged once into one of two per-thread buffers (kPanelBlocks x kb KiB each,
//         L2-resident) and reused by every token tile of the chunk
//         token-tile pair x row-block pair: 2 x 2 accumulators tmm0..3, activations tmm4,5,
//         weights tmm6,7, so each tile load feeds two tdpbssd; the accumulators are parked in a
//         per-thread int32 buffer between K blocks and scaled out after the last one.
// A (chunk, panel, K block) is a step. Its weights were staged during the step before: two
// buffers alternate, and while the micro-kernel runs a step's products out of one, it unpacks the
// next step's weights into the other, a few chunks after each k-step's four tdpbssd (the tile
// unit works through its queue meanwhile, and the vector ports are free). Staging a whole panel
// up front left the tile unit idle for it and for the DRAM reads behind it: in the lab
// (bench/lab/amx_gemm_lab.cpp; M = 128, 1 and 2 threads, the 2B4T shapes) the interleaved form
// was 14 - 30 % faster than that in every cell on one lease, 2 - 16 % on another.
// A last partial token tile (M % 16 rows) is copied, zero-padded, into a 16-row scratch so every
// tile is full; rows beyond M are computed and discarded. Only n_pad rows of the matrix are read.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/memory.h"
#include "quant/amx_tiles.h"
#include "quant/gemm.h"

namespace bitnet {
namespace {

using amx::kTileBytes;
using amx::kTileInts;

// Blocking. K blocks hold at most kMaxKBlock k-tiles (4096 k; a 2560- or 2624-wide matrix is one
// block, 6912 is two of 54) and are balanced; token chunks hold activations of at most
// kChunkActBytes so they stay in L2 while every row panel streams past them.
constexpr int64_t kPanelBlocks = 2;   // row blocks per panel (one B tile pair)
constexpr int64_t kMaxKBlock = 64;    // k-tiles
constexpr int64_t kChunkActBytes = int64_t{1} << 20;

// The gated form: relu(gate)^2 * up of a fused gate|up matrix (gate rows [0, ff), up rows
// [ff, 2 ff)), for gate rows [n0, n1). A panel is then one gate row block and its up row block,
// staged side by side, so the micro-kernel's two accumulator columns are a gate tile and the
// matching up tile and the epilogue writes the activation: the gate|up floats (twice the
// activation's size) are never stored.
struct Relu2Out {
  int64_t ff;
  float* act;
  int64_t ld;
};

// Prefetch distance of the packed weights while staging: 64 chunks (4 KiB) ahead. The lab's
// in-loop staging with 0, 16 and 64 chunks gave the same within its noise; 64 was the most even.
constexpr int kStagePrefetch = 64;

void amx_driver(const TernaryMatrix& w, const QuantizedActs& x, int64_t n0, int64_t n1, const GemmOut& out,
                const Relu2Out* gated) {
  if (n0 >= n1 || x.m <= 0) return;
  const int64_t lda = x.k_pad;
  // (Plain variables, not a structured binding: the step lambda below captures them.)
  const amx::KBlocks kbl = amx::k_blocks(w, kMaxKBlock);
  const int64_t ktiles = kbl.ktiles, nkb = kbl.nkb, kb = kbl.kb;
  constexpr int64_t np = kPanelBlocks;

  // Token tiles, and chunks of an even number of them whose activations stay in L2.
  const int64_t tiles = (x.m + 15) / 16, full_tiles = x.m / 16;
  const int64_t chunk = amx::token_chunk(x, kChunkActBytes);

  // Per-thread scratch: two staging buffers, parked accumulators, the zero-padded last token tile.
  const size_t stage_bytes = static_cast<size_t>(np * kb * kTileBytes);
  const size_t acc_bytes = static_cast<size_t>((chunk / 2) * (np / 2) * 4 * kTileBytes);
  const size_t tail_bytes = x.m % 16 ? static_cast<size_t>(16 * lda) : 0;
  thread_local AlignedBuffer scratch;
  if (scratch.size() < 2 * stage_bytes + acc_bytes + tail_bytes)
    scratch = AlignedBuffer(2 * stage_bytes + acc_bytes + tail_bytes);
  int8_t* const bufs[2] = {reinterpret_cast<int8_t*>(scratch.data()),
                           reinterpret_cast<int8_t*>(scratch.data() + stage_bytes)};
  int32_t* acc = reinterpret_cast<int32_t*>(scratch.data() + 2 * stage_bytes);
  int8_t* tail = reinterpret_cast<int8_t*>(scratch.data() + 2 * stage_bytes + acc_bytes);
  if (tail_bytes) {
    const int64_t r = x.m % 16;
    std::memcpy(tail, x.q + full_tiles * 16 * lda, static_cast<size_t>(r * lda));
    std::memset(tail + r * lda, 0, static_cast<size_t>((16 - r) * lda));
  }
  auto a_tile = [&](int64_t t) -> const int8_t* { return t < full_tiles ? x.q + t * 16 * lda : tail; };

  // Steps: (token chunk, row panel, K block), in that nesting. A gated panel is one gate row block
  // and its up row block (b + up_blocks); otherwise up to np consecutive row blocks.
  const int64_t up_blocks = gated ? gated->ff / kRowBlock : 0;
  const int64_t rb_first = n0 / kRowBlock, nb_end = (n1 + kRowBlock - 1) / kRowBlock;
  const int64_t advance = gated ? 1 : np;  // row blocks per panel of the range
  const int64_t npanels = (nb_end - rb_first + advance - 1) / advance, nchunks = (tiles + chunk - 1) / chunk;
  const int64_t nsteps = nchunks * npanels * nkb;
  struct Step {
    int64_t c0, c1, rb0, nbp, kq, kt0, nk;
    int64_t blocks[2];
  };
  auto step = [&](int64_t s) {
    Step p;
    p.kq = s % nkb;
    p.c0 = s / (nkb * npanels) * chunk;
    p.c1 = std::min(tiles, p.c0 + chunk);
    p.rb0 = rb_first + (s / nkb) % npanels * advance;
    p.nbp = gated ? 2 : std::min(np, nb_end - p.rb0);
    p.kt0 = p.kq * kb;
    p.nk = std::min(kb, ktiles - p.kt0);
    p.blocks[0] = p.rb0;
    p.blocks[1] = gated ? p.rb0 + up_blocks : p.rb0 + 1;
    return p;
  };
  const amx::PlaneTables pt = amx::plane_tables();
  const GemmOut act_out{nullptr, 0, gated ? gated->act : nullptr, gated ? gated->ld : 0};

  amx::configure_full();
  {
    const Step p0 = step(0);
    amx::Stager st = amx::make_stager(w, p0.blocks, p0.nbp, p0.kt0, p0.nk, bufs[0]);
    amx::stage_chunks<kStagePrefetch>(st, st.left, pt);
  }
  for (int64_t s = 0; s < nsteps; ++s) {
    const Step p = step(s);
    const int8_t* bst = bufs[s & 1];
    // The next step's weights go into the other buffer, u chunks after each k-step's products.
    amx::Stager nx;
    if (s + 1 < nsteps) {
      const Step q = step(s + 1);
      nx = amx::make_stager(w, q.blocks, q.nbp, q.kt0, q.nk, bufs[(s + 1) & 1]);
    }
    const int64_t ksteps = (p.c1 - p.c0 + 1) / 2 * ((p.nbp + 1) / 2) * p.nk;
    const int64_t u = (nx.left + ksteps - 1) / ksteps;
    auto each = [&] { amx::stage_chunks<kStagePrefetch>(nx, u, pt); };
    const bool first = p.kq == 0, last = p.kq == nkb - 1;
    for (int64_t t = p.c0; t < p.c1; t += 2) {
      const int ta = t + 1 < p.c1 ? 2 : 1;
      const int8_t* a0 = a_tile(t) + p.kt0 * 64;
      const int8_t* a1 = ta == 2 ? a_tile(t + 1) + p.kt0 * 64 : a0;
      for (int64_t j = 0; j < p.nbp; j += 2) {
        const int tb = j + 1 < p.nbp ? 2 : 1;
        int32_t* c = acc + (((t - p.c0) / 2) * (np / 2) + j / 2) * 4 * kTileInts;
        if (last && gated)
          amx::prefetch_out(act_out, t, ta, x.m, p.rb0 * kRowBlock, 1, n1);
        else if (last && out.f32)
          amx::prefetch_out(out, t, ta, x.m, (p.rb0 + j) * kRowBlock, tb, n1);
        const int8_t* b = bst + j * kTileBytes;
        const int64_t bs = p.nbp * kTileBytes;
        if (ta == 2 && tb == 2)
          amx::micro_each<2, 2>(a0, a1, lda, 64, b, bs, p.nk, c, first, each);
        else if (ta == 2)
          amx::micro_each<2, 1>(a0, a1, lda, 64, b, bs, p.nk, c, first, each);
        else if (tb == 2)
          amx::micro_each<1, 2>(a0, a1, lda, 64, b, bs, p.nk, c, first, each);
        else
          amx::micro_each<1, 1>(a0, a1, lda, 64, b, bs, p.nk, c, first, each);
        if (!last) continue;
        for (int i = 0; i < ta; ++i) {
          const int64_t m0 = (t + i) * 16;
          const int rows = static_cast<int>(std::min<int64_t>(16, x.m - m0));
          if (gated) {
            amx::store_relu2(c + 2 * i * kTileInts, c + (2 * i + 1) * kTileInts, rows, w, x, m0,
                             p.rb0 * kRowBlock, (p.rb0 + up_blocks) * kRowBlock, gated->act, gated->ld);
            continue;
          }
          for (int jj = 0; jj < tb; ++jj)
            amx::store_tile(c + (2 * i + jj) * kTileInts, rows, w, x, m0, (p.rb0 + j + jj) * kRowBlock, n1,
                            out);
        }
      }
    }
    amx::stage_chunks<kStagePrefetch>(nx, nx.left, pt);  // what the k-steps left (rounding, none on 2B4T)
  }
  _tile_release();
}

}  // namespace

void ternary_gemm_amx(const TernaryMatrix& w, const QuantizedActs& x, int64_t n0, int64_t n1,
                      const GemmOut& out) {
  amx_driver(w, x, n0, n1, out, nullptr);
}

void ternary_gemm_amx_relu2(const TernaryMatrix& w, const QuantizedActs& x, int64_t ff, int64_t r0,
                            int64_t r1, float* act, int64_t ld_act) {
  const Relu2Out g{ff, act, ld_act};
  amx_driver(w, x, r0, r1, GemmOut{}, &g);
}

}  // namespace bitnet
