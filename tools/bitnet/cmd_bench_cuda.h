#pragma once
// `bitnet bench --device cuda`: the CUDA backend's prompt and decode speed (cmd_bench_cuda.cpp).
#include <string>
#include <vector>

#include "model_source.h"

namespace bitnet::cli {

struct CudaBenchOpts {
  std::vector<int> n_prompt, n_gen, batch;
  int reps = 3;
  bool json = false;
  bool profile = false;  // per-section GPU time of each decode batch, after the tests
  std::vector<int> tp;   // tensor parallel over these GPUs (empty: the single-GPU session)
};

// Prints one table (or JSON lines): ppN, tgN at every batch size, each with its share of the
// bound measured in the same run (the HBM read probe), and device memory against its budget.
void run_bench_cuda(const LoadedModel& lm, const CudaBenchOpts& o);

}  // namespace bitnet::cli
