// The server's engine on the GPU (server/engine.h make_cuda_engine) against the CPU Session's
// (make_session_engine): the same batches of decodes beside prompt chunks give logits within the
// GPU engine's float tolerance of the CPU's (test_infer.cpp WholeModel's reasoning: these random
// models are chaotic, an indexing error is of order 1) and the same greedy tokens where the CPU's
// top two are apart, and the same positions.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "cuda_test_util.h"
#include "model/synthetic.h"
#include "model/synthetic_gguf.h"
#include "server/engine.h"
#include "server/mixed_batches.h"

namespace bitnet::server {
namespace {

using cuda::gpu_test::rel_err;

TEST(CudaServeEngine, BatchesMatchTheCpuEngine) {
  SKIP_WITHOUT_GPU();
  const Model model = make_synthetic_model(synthetic_config("tiny"), 3);
  const int64_t V = model.cfg.n_vocab;
  const SessionOptions so = test::four_slots();
  std::unique_ptr<BatchEngine> cpu = make_session_engine(model, so);
  std::unique_ptr<BatchEngine> gpu = make_cuda_engine(model, so.n_seq, so.n_ctx);
  EXPECT_EQ(gpu->n_seq(), 4);
  EXPECT_EQ(gpu->n_ctx(), 64);
  EXPECT_EQ(gpu->n_vocab(), V);
  auto tok = [&](int i) { return test::batch_token(i, V); };
  std::vector<std::vector<BatchToken>> batches = test::mixed_batches(V);
  batches.push_back({{tok(22), 0, true}, {tok(23), 1, true}, {tok(24), 2, true}, {tok(25), 3, true}});
  double worst = 0;
  for (size_t b = 0; b < batches.size(); ++b) {
    int rows = 0;
    for (const BatchToken& t : batches[b]) rows += t.logits;
    const float* c = cpu->forward_batch(batches[b]);
    const std::vector<float> want(c, c + rows * V);
    const float* g = gpu->forward_batch(batches[b]);
    for (int r = 0; r < rows; ++r) {
      const float* w = want.data() + r * V;
      const double e = rel_err(g + r * V, w, static_cast<size_t>(V));
      worst = std::max(worst, e);
      EXPECT_LT(e, 5e-2) << "batch " << b << " row " << r;
      std::vector<float> sorted(w, w + V);
      std::nth_element(sorted.begin(), sorted.begin() + 1, sorted.end(), std::greater<float>());
      if (sorted[0] - sorted[1] > 1e-2f * std::fabs(sorted[0])) {
        EXPECT_EQ(std::max_element(g + r * V, g + (r + 1) * V) - (g + r * V), std::max_element(w, w + V) - w)
            << "batch " << b << " row " << r;
      }
    }
    for (int q = 0; q < 4; ++q) EXPECT_EQ(gpu->n_past(q), cpu->n_past(q)) << "batch " << b << " seq " << q;
  }
  gpu->truncate(1, 2);
  EXPECT_EQ(gpu->n_past(1), 2);
  EXPECT_THROW(gpu->forward_batch(std::vector<BatchToken>{{tok(1), 4, true}}), Error);
  std::printf("[   info   ] server engine on the GPU against the CPU's: worst logits rel. error %.2e\n",
              worst);
}

}  // namespace
}  // namespace bitnet::server
