#include "quant/gate_up.h"

#include <algorithm>

#include "core/arena.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "quant/gemm.h"

namespace bitnet {
namespace {

// Prompts: gate|up is n x 2ff floats (7 MB for 128 tokens of the 2B4T), beyond L2. Each thread
// computes stripes of kStripe gate rows and the matching up rows for every token and applies the
// gated activation while the stripe (n x 2 x kStripe floats) is still in its L2, so only the
// activations (half the size) travel through L3. With a fused relu^2 epilogue (AMX, gemm.h
// ternary_gemm_relu2: the same floats) the activation comes straight from the gate and up
// accumulators, and the gate|up floats are not stored at all.
// v: the kernel for x; fused: it applies relu^2 itself (gate_up_act chose both).
void gate_up_striped(ThreadPool& pool, Arena& arena, const TernaryMatrix& w, const QuantizedActs& x,
                     int64_t ff, FfnAct f, const GemmVariant& v, bool fused, float* act) {
  constexpr int64_t kStripe = 512;
  const int64_t n = x.m;
  float* gu = fused ? nullptr : arena.alloc<float>(static_cast<size_t>(n * 2 * ff));
  // Stripes are claimed from a counter (as the GEMMs' row chunks): a slowed thread takes fewer.
  const int64_t stripes = (ff + kStripe - 1) / kStripe;
  pool.parallel_for_dynamic(stripes, 1, [&](int64_t s0, int64_t s1) {
    const GemmOut out{nullptr, 0, gu, 2 * ff};
    for (int64_t st = s0; st < s1; ++st) {
      const int64_t r0 = st * kStripe, r1 = std::min(ff, r0 + kStripe);
      if (fused) {
        v.relu2(w, x, ff, r0, r1, act, ff);
        continue;
      }
      v.fn(w, x, r0, r1, out);
      v.fn(w, x, ff + r0, ff + r1, out);
      for (int64_t t = 0; t < n; ++t)
        gated_act(gu + t * 2 * ff + r0, gu + t * 2 * ff + ff + r0, r1 - r0, f, act + t * ff + r0);
    }
  });
}

}  // namespace

void gate_up_act(ThreadPool& pool, Arena& arena, const TernaryMatrix& w, const QuantizedActs& x, int64_t ff,
                 FfnAct f, float* act) {
  if (w.n != 2 * ff) fail("gate|up: {} rows for a feed-forward of {} (want 2 x ff)", w.n, ff);
  const int64_t n = x.m;
  // Stripes need whole row blocks (a product's row range starts on one). Up to 8 tokens (decode
  // steps) the gate|up floats fit in L2 (8 tokens of the 2B4T: 442 KB), so the rows split across
  // the threads instead, one stream each: stripes made each thread alternate between gate and up
  // rows every 512, and 8 tokens of the 2B4T's gate|up took 17.4 - 17.7 ms a step over 30 layers
  // this way against 18.4 - 18.8 striped (dev VM, 2 threads, `bench --profile -b 8`). Where the
  // kernel applies relu^2 itself (AMX), the stripes also save storing the floats: always striped.
  const GemmVariant& v = select_gemm(w, x);
  const bool fused = f == FfnAct::kRelu2 && relu2_fused_supported(v, w, ff);
  if (n > 1 && ff % kRowBlock == 0 && (n > 8 || fused))
    return gate_up_striped(pool, arena, w, x, ff, f, v, fused, act);
  float* gu = arena.alloc<float>(static_cast<size_t>(n * 2 * ff));
  ternary_gemm(&pool, w, x, {nullptr, 0, gu, 2 * ff});
  // Per token (one thread per token, so the thread count changes nothing); one token runs inline.
  pool.parallel_for_stealing(n, std::max<int64_t>(1, n / (8 * pool.size())),
                             [&](int, int64_t t0, int64_t t1) {
                               for (int64_t t = t0; t < t1; ++t)
                                 gated_act(gu + t * 2 * ff, gu + t * 2 * ff + ff, ff, f, act + t * ff);
                             });
}

}  // namespace bitnet
