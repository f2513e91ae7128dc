#pragma once
// The trainer on one GPU: parameters, gradients, AdamW moments and every activation on the device,
// the forward and backward of training/model.cpp chained from cuda/train_ops.h. The host model and
// optimizer state are uploaded when the backend is made and downloaded by to_host().
#include "training/backend.h"

namespace bitnet::cuda {

// Fails (bitnet::Error) when no GPU is usable.
train::TrainBackend cuda_backend(train::TrainModel& m, train::AdamWState& opt);

}  // namespace bitnet::cuda
