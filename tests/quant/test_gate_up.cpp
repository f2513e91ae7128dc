// The gate|up op equals the plain f32 product followed by the gated activation, bit for bit, on
// every path it takes (decode and decode batches, striped prompts, prompts with partial row blocks, a stripe
// count that is not a whole number of stripes), for both activations and any thread count.
#include <gtest/gtest.h>

#include <cstring>

#include "core/arena.h"
#include "core/thread_pool.h"
#include "ops/layer_ops.h"
#include "quant/gate_up.h"
#include "quant/gemm.h"
#include "quant/random_data.h"

namespace bitnet {

TEST(GateUp, EqualsProductThenActivation) {
  const int64_t k = 192;
  ThreadPool pool1(1), pool2(2), pool3(3);
  for (int64_t ff : {int64_t{40}, int64_t{96}, int64_t{1040}}) {  // 40: partial row blocks; 1040: 3 stripes
    auto wq = random_ternary(static_cast<size_t>(2 * ff * k), static_cast<uint64_t>(ff));
    std::vector<float> scales(static_cast<size_t>(2 * ff));
    for (size_t i = 0; i < scales.size(); ++i) scales[i] = 0.5f + 0.001f * static_cast<float>(i);
    const TernaryMatrix W = pack_native(wq.data(), 2 * ff, k, scales.data());
    for (int64_t m : {1, 5, 8, 9, 33}) {  // up to 8: rows across threads; 9 and 33: stripes
      Arena arena;
      auto xf = random_floats(static_cast<size_t>(m * k), static_cast<uint64_t>(m), -2.0f, 2.0f);
      auto X = alloc_quantized_acts(arena, m, k);
      quantize_acts(xf.data(), k, X);
      std::vector<float> gu(static_cast<size_t>(m * 2 * ff));
      ternary_gemm(nullptr, W, X, {nullptr, 0, gu.data(), 2 * ff});
      for (FfnAct f : {FfnAct::kRelu2, FfnAct::kSilu}) {
        std::vector<float> want(static_cast<size_t>(m * ff));
        for (int64_t t = 0; t < m; ++t)
          gated_act(gu.data() + t * 2 * ff, gu.data() + t * 2 * ff + ff, ff, f, want.data() + t * ff);
        for (ThreadPool* pool : {&pool1, &pool2, &pool3}) {
          std::vector<float> got(want.size(), -7.0f);
          Arena scratch;
          gate_up_act(*pool, scratch, W, X, ff, f, got.data());
          ASSERT_EQ(std::memcmp(got.data(), want.data(), want.size() * 4), 0)
              << "ff=" << ff << " m=" << m << " act=" << static_cast<int>(f) << " threads=" << pool->size();
        }
      }
    }
  }
}

}  // namespace bitnet
