#pragma once
// Where the trainer's steps run. The loop (trainer.h) is the same on every device; a backend owns
// the parameters' working copy, the gradients and the optimizer state there, and syncs them back
// to the host model for checkpoints and export. A plain struct of functions: the CPU backend is
// here, the CUDA one in src/cuda (cuda/train_backend.h), handed in by the CLI.
#include <cstdint>
#include <functional>
#include <string>

#include "training/adamw.h"
#include "training/collective.h"
#include "training/model.h"

namespace bitnet::train {

struct StepStats {
  double loss_sum = 0;   // summed over the step's accum x batch x seq targets
  double grad_norm = 0;  // before clipping
};

struct TrainBackend {
  std::string name;  // "cpu (2 threads)", "cuda: NVIDIA H100 ..."
  // One optimizer step: gradients of `accum` micro-batches (inputs/targets: [accum][batch][seq])
  // scaled by grad_scale and summed, clipped to global norm `clip` (0: off), then AdamW.
  std::function<StepStats(const int32_t* inputs, const int32_t* targets, int64_t accum, int64_t batch,
                          int64_t seq, float grad_scale, float clip, float lr, float wd)>
      step;
  // Summed loss of one batch, no gradients.
  std::function<double(const int32_t* inputs, const int32_t* targets, int64_t batch, int64_t seq)> eval;
  // Copies the working parameters and optimizer state into the host model and state.
  std::function<void()> to_host;
};

// Builds a backend over (model, optimizer state), which it keeps references to.
using BackendFactory = std::function<TrainBackend(TrainModel&, AdamWState&)>;

// The CPU reference: training/ops.h on `threads` threads, in place on the host model.
//
// Data parallel over the ranks of `c` (each rank a backend of its own over the same initial
// model, each step given the same global batch): a rank takes its share of every micro-batch's
// rows, the gradients and the loss are summed over the ranks, and each rank updates only its
// share of the parameters (ZeRO-1: the optimizer state outside it stays unused), then gathers the
// others' shares. Every rank ends a step with the same parameters, equal to one rank's run of
// the whole batch within float rounding (the gradient is summed in another order).
TrainBackend cpu_backend(TrainModel& m, AdamWState& opt, int threads, const Collective& c = single_rank());

}  // namespace bitnet::train
