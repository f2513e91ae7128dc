#pragma once
// Internal to src/cuda: the one-GPU trainer's device state and its forward + backward, shared by the
// one-GPU backend (train_backend.cpp) and the data-parallel one (train_dp.cpp).
#include <functional>
#include <vector>

#include "cuda/buffer.h"
#include "cuda/train_kernels.h"
#include "cuda/train_ops.h"
#include "cuda/train_profile.h"
#include "training/model.h"

namespace bitnet::cuda {

// Everything on the device: parameters and their gradients and moments, and the activations of
// one batch shape (the same buffers as training/model.h's Workspace).
struct DeviceTrainer {
  TrainContext ctx;
  OpProfile prof;
  cudaStream_t stream = nullptr;  // the legacy stream: Buffer's synchronous copies order with it
  Buffer<float> params, grads, m, v;
  Buffer<uint8_t> decay;
  Buffer<int32_t> tokens, targets;
  RopeTable rope;
  struct LayerActs {
    Buffer<float> x, h1, rstd1, qkv, lse, attn, attn_sn, rstd_a, x_mid, h2, rstd2, gu, act, act_sn, rstd_f;
    BitLinearCache c_qkv, c_o, c_gu, c_down;
    AttnOperands ops;  // the attention's bf16 operands (RoPE applied), from the forward to the backward
  };
  std::vector<LayerActs> layers;
  Buffer<float> y, x_final, h_final, rstd_final, logits, dx, dh, dqkv, dattn, dgu, dact, dlogits;
  // Quantized training runs the head in bf16 with bf16 logits (as bf16 autocast does), their
  // gradient from the cross-entropy written over them in bf16; --float keeps it in fp32 with the rest.
  MatmulBf16Cache head;
  // Quantized: the bf16 logits and then their gradient, and the bf16 operands of the gate|up and
  // then the qkv product's backward (one pair of buffers: gate|up's are used before qkv's).
  Buffer<kern::bf16_t> logits_bf16, dy_w, dy_x;
  int64_t batch = 0, seq = 0;
  bool quantized = false;

  // Sizes the activations for a batch of B x S tokens (nothing when the shape is unchanged).
  void prepare(const ModelConfig& c, int64_t B, int64_t S, bool q);

  void zero(Buffer<float>& b, size_t n) { BN_CUDA(cudaMemsetAsync(b.data(), 0, n * sizeof(float), stream)); }

  // Called during the backward (when set) as each part's gradients are complete: after layer il's
  // backward with il, after the embedding's (the last) with -1. Data parallelism starts each
  // bucket's all-reduce here, overlapping the rest of the backward.
  std::function<void(int64_t il)> on_grads_done;

  // training/model.cpp's forward_backward on the device; the summed loss.
  double forward_backward(const train::TrainModel& mdl, const int32_t* in, const int32_t* tg, int64_t B,
                          int64_t S, float grad_scale, bool with_grads);
};

}  // namespace bitnet::cuda
