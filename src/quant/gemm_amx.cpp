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

using amx::MicroFn;
constexpr MicroFn kMicro[2][2] = {{amx::micro<1, 1>, amx::micro<1, 2>}, {amx::micro<2, 1>, amx::micro<2, 2>}};

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

void amx_driver(const TernaryMatrix& w, const QuantizedActs& x, int64_t n0, int64_t n1, const GemmOut& out,
                const Relu2Out* gated) {
  if (n0 >= n1 || x.m <= 0) return;
  const int64_t lda = x.k_pad;
  const auto [ktiles, nkb, kb] = amx::k_blocks(w, kMaxKBlock);
  constexpr int64_t np = kPanelBlocks;

  // Token tiles, and chunks of an even number of them whose activations stay in L2.
  const int64_t tiles = (x.m + 15) / 16, full_tiles = x.m / 16;
  const int64_t chunk = amx::token_chunk(x, kChunkActBytes);

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

  amx::configure_full();
  const int64_t nb_end = (n1 + kRowBlock - 1) / kRowBlock;  // row blocks holding rows < n1
  const int64_t up_blocks = gated ? gated->ff / kRowBlock : 0;  // gate block b's up block: b + up_blocks
  const GemmOut act_out{nullptr, 0, gated ? gated->act : nullptr, gated ? gated->ld : 0};
  for (int64_t c0 = 0; c0 < tiles; c0 += chunk) {
    const int64_t c1 = std::min(tiles, c0 + chunk);
    for (int64_t rb0 = n0 / kRowBlock; rb0 < nb_end; rb0 += gated ? 1 : np) {
      const int64_t nbp = gated ? 2 : std::min(np, nb_end - rb0);  // blocks in this panel
      for (int64_t kq = 0; kq < nkb; ++kq) {
        const int64_t kt0 = kq * kb, nk = std::min(kb, ktiles - kt0);
        if (gated) {
          amx::stage_block(w, rb0, 0, 2, kt0, nk, bst);
          amx::stage_block(w, rb0 + up_blocks, 1, 2, kt0, nk, bst);
        } else {
          amx::stage_b(w, rb0, nbp, kt0, nk, bst);
        }
        const bool first = kq == 0, last = kq == nkb - 1;
        for (int64_t t = c0; t < c1; t += 2) {
          const int ta = t + 1 < c1 ? 2 : 1;
          const int8_t* a0 = a_tile(t) + kt0 * 64;
          const int8_t* a1 = ta == 2 ? a_tile(t + 1) + kt0 * 64 : a0;
          for (int64_t j = 0; j < nbp; j += 2) {
            const int tb = j + 1 < nbp ? 2 : 1;
            int32_t* c = acc + (((t - c0) / 2) * (np / 2) + j / 2) * 4 * kTileInts;
            if (last && gated)
              amx::prefetch_out(act_out, t, ta, x.m, rb0 * kRowBlock, 1, n1);
            else if (last && out.f32)
              amx::prefetch_out(out, t, ta, x.m, (rb0 + j) * kRowBlock, tb, n1);
            kMicro[ta - 1][tb - 1](a0, a1, lda, 64, bst + j * kTileBytes, nbp * kTileBytes, nk, c, first);
            if (!last) continue;
            for (int i = 0; i < ta; ++i) {
              const int64_t m0 = (t + i) * 16;
              const int rows = static_cast<int>(std::min<int64_t>(16, x.m - m0));
              if (gated) {
                amx::store_relu2(c + 2 * i * kTileInts, c + (2 * i + 1) * kTileInts, rows, w, x, m0,
                                 rb0 * kRowBlock, (rb0 + up_blocks) * kRowBlock, gated->act, gated->ld);
                continue;
              }
              for (int jj = 0; jj < tb; ++jj)
                amx::store_tile(c + (2 * i + jj) * kTileInts, rows, w, x, m0, (rb0 + j + jj) * kRowBlock, n1, out);
            }
          }
        }
      }
    }
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
