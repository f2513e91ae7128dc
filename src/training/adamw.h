#pragma once
// AdamW with decoupled weight decay (PyTorch's torch.optim.AdamW update order), over the flat
// parameter buffer; weight decay only where ParamTensor::decay says so.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "training/model.h"

namespace bitnet::train {

struct AdamWConfig {
  float beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f;
};

struct AdamWState {
  std::vector<float> m, v;  // first and second moments, the layout of the parameters
  int64_t step = 0;         // updates done
};

// Global L2 norm of the gradient (summed in double).
double grad_norm(std::span<const float> grads);

// One update with learning rate lr and weight decay wd:
//   p <- p * (1 - lr * wd)   (decay tensors only)
//   m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
//   p <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
// Only parameters [begin, min(end, size)) of the flat buffer are updated (a rank's shard under
// ZeRO-1: the moments outside it stay untouched); the step count advances either way.
void adamw_step(TrainModel& model, std::span<const float> grads, AdamWState& st, const AdamWConfig& cfg,
                float lr, float wd, size_t begin = 0, size_t end = SIZE_MAX);

}  // namespace bitnet::train
