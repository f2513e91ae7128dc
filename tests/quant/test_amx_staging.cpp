// The AMX kernel's weight staging (amx_tiles.h, stage_b: vpermb through per-plane tables) against
// the B-tile layout written out from the plain int8 weights. Only AVX-512 BW + VBMI instructions
// run here (no tile instructions), so it runs on any CPU with VBMI, AMX or not; compiled with the
// AMX flags because amx_tiles.h is.
#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <vector>

#include "core/cpu.h"
#include "core/memory.h"
#include "quant/amx_tiles.h"
#include "quant/native.h"
#include "quant/random_data.h"

namespace bitnet {
namespace {

TEST(AmxStaging, StagedTilesHoldTheWeightsInBTileLayout) {
  const CpuFeatures& f = cpu_features();
  if (!f.avx512bw || !f.avx512vbmi) GTEST_SKIP() << "needs AVX-512 BW + VBMI (" << cpu_summary() << ")";
  const int64_t n = 80, k = 1000;  // 5 row blocks, k_pad 1024 = 16 k-tiles; padding rows/columns
  auto wq = random_ternary(static_cast<size_t>(n * k), 17);
  const TernaryMatrix w = pack_native(wq.data(), n, k, 1.0f);
  auto weight = [&](int64_t r, int64_t c) -> int8_t {  // zero in the padding
    return r < n && c < k ? wq[static_cast<size_t>(r * k + c)] : 0;
  };
  for (auto [rb0, nb, kt0, nk] : {std::array<int64_t, 4>{0, 2, 0, 16}, std::array<int64_t, 4>{3, 2, 5, 11},
                                  std::array<int64_t, 4>{4, 1, 15, 1}}) {
    AlignedBuffer buf(static_cast<size_t>(nb * nk * amx::kTileBytes));
    int8_t* dst = reinterpret_cast<int8_t*>(buf.data());
    amx::stage_b(w, rb0, nb, kt0, nk, dst);
    for (int64_t kt = 0; kt < nk; ++kt)
      for (int64_t b = 0; b < nb; ++b)
        for (int64_t row = 0; row < 16; ++row)      // B tile row: chunk row / 4, plane row % 4
          for (int64_t col = 0; col < 64; ++col) {  // output row col / 4, k within the group col % 4
            const int64_t r = 16 * (rb0 + b) + col / 4;
            const int64_t c = 64 * (kt0 + kt) + 16 * (row / 4) + 4 * (row % 4) + col % 4;
            ASSERT_EQ(dst[(kt * nb + b) * amx::kTileBytes + row * 64 + col], weight(r, c))
                << "rb0=" << rb0 << " kt=" << kt << " b=" << b << " row=" << row << " col=" << col;
          }
  }
}

// The prefill kernel stages in pieces (a Stager, a few chunks per k-step, blocks in any two slots:
// a gate block and its up block): every piece size must give stage_block's bytes, and no chunk may
// be staged twice or left out.
TEST(AmxStaging, StagingInPiecesEqualsStagingWhole) {
  const CpuFeatures& f = cpu_features();
  if (!f.avx512bw || !f.avx512vbmi) GTEST_SKIP() << "needs AVX-512 BW + VBMI (" << cpu_summary() << ")";
  const int64_t n = 96, k = 700;  // 6 row blocks, k_pad 704 = 11 k-tiles
  auto wq = random_ternary(static_cast<size_t>(n * k), 23);
  const TernaryMatrix w = pack_native(wq.data(), n, k, 1.0f);
  const amx::PlaneTables pt = amx::plane_tables();
  for (auto [b0, b1, slots, kt0, nk] :
       {std::array<int64_t, 5>{1, 2, 2, 0, 11}, std::array<int64_t, 5>{0, 3, 2, 4, 7},
        std::array<int64_t, 5>{5, 5, 1, 10, 1}}) {
    const size_t bytes = static_cast<size_t>(slots * nk * amx::kTileBytes);
    AlignedBuffer whole(bytes), pieces(bytes);
    const int64_t blocks[2] = {b0, b1};
    for (int64_t s = 0; s < slots; ++s)
      amx::stage_block(w, blocks[s], s, slots, kt0, nk, reinterpret_cast<int8_t*>(whole.data()));
    for (int64_t u : {1, 2, 3, 7, 1000}) {
      std::memset(pieces.data(), 0x55, bytes);
      amx::Stager st = amx::make_stager(w, blocks, slots, kt0, nk, reinterpret_cast<int8_t*>(pieces.data()));
      ASSERT_EQ(st.left, slots * nk * 4);
      int64_t calls = 0;
      while (st.left > 0) {
        amx::stage_chunks<64>(st, u, pt);
        ++calls;
      }
      EXPECT_EQ(calls, (slots * nk * 4 + u - 1) / u);
      amx::stage_chunks<64>(st, u, pt);  // nothing left: must not write
      ASSERT_EQ(std::memcmp(pieces.data(), whole.data(), bytes), 0)
          << "blocks " << b0 << "," << b1 << " slots " << slots << " kt0 " << kt0 << " nk " << nk << " u "
          << u;
    }
  }
}

}  // namespace
}  // namespace bitnet
