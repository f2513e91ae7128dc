#pragma once
// The model the trainer trains: the engine's ModelConfig (arch bitnet-b1.58) with fp32 master
// weights in one flat buffer, and its forward + backward over a batch of token windows, built
// from the ops of training/ops.h. q|k|v and gate|up are fused matrices with one absmean scale per
// logical matrix, exactly as the engine fuses and scales them.
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"
#include "training/ops.h"

namespace bitnet::train {

// One parameter tensor inside TrainModel::params.
struct ParamTensor {
  std::string name;  // the Hugging Face name (model.layers.0.self_attn.q_proj.weight ...)
  int64_t offset = 0, rows = 0, cols = 0;  // a vector has rows = 1
  bool decay = false;                      // weight decay applies (linear layers, untied head)
  int64_t size() const { return rows * cols; }
};

struct TrainModel {
  ModelConfig cfg;
  bool tied = false;     // the head is the embedding table
  bool quantize = true;  // false: the same architecture in plain fp32 (`--float`)
  std::vector<float> params;
  std::vector<ParamTensor> tensors;  // in a fixed order: embedding, layers, final norm, head
  struct Layer {
    int64_t attn_norm, wqkv, attn_sub_norm, wo, ffn_norm, w_gate_up, ffn_sub_norm, w_down;  // offsets
  };
  std::vector<Layer> layers;
  int64_t tok_embd = 0, output_norm = 0, output = 0;  // output == tok_embd when tied

  const float* at(int64_t offset) const { return params.data() + offset; }
  float* at(int64_t offset) { return params.data() + offset; }
};

// The tensors laid out for cfg (fails on an invalid config), weights initialised from seed:
// matrices and embedding N(0, 0.02), the residual projections (o, down) N(0, 0.02 / sqrt(2 layers)),
// norms 1.
TrainModel make_train_model(const ModelConfig& cfg, bool tied, bool quantize, uint64_t seed);

// Activations kept from the forward pass for the backward pass, sized for one batch shape.
struct Workspace {
  int64_t batch = 0, seq = 0;
  struct LayerActs {
    std::vector<float> x;                      // [T][d] residual stream entering the layer
    std::vector<float> h1, rstd1;              // attention norm output, 1/rms
    std::vector<float> qkv;                    // [T][q + 2 kv] after RoPE
    std::vector<float> att;                    // [B][heads][seq][seq] probabilities
    std::vector<float> attn, attn_sn, rstd_a;  // attention output, after its sub-norm, 1/rms
    std::vector<float> x_mid;                  // residual after the attention block
    std::vector<float> h2, rstd2;              // ffn norm output
    std::vector<float> gu;                     // [T][2 ff] gate|up
    std::vector<float> act, act_sn, rstd_f;    // gated activation, after its sub-norm
    BitLinearCache c_qkv, c_o, c_gu, c_down;
  };
  std::vector<LayerActs> layers;
  std::vector<float> x_final, h_final, rstd_final, logits;
  // backward scratch
  std::vector<float> dx, dh, dqkv, dattn, dgu, dact, dlogits;
};

// Loss (mean over the B x seq targets) of one batch; with grads not null, also adds the gradient
// of grad_scale x (summed loss) to *grads (same layout as params). inputs and targets are
// [batch][seq] token ids.
struct BatchResult {
  double loss_sum = 0;  // summed natural-log loss over the batch's targets
  int64_t tokens = 0;
};
BatchResult forward_backward(ThreadPool* pool, const TrainModel& m, const int32_t* inputs,
                             const int32_t* targets, int64_t batch, int64_t seq, float grad_scale,
                             std::vector<float>* grads, Workspace& ws);

// Logits of the last forward_backward call, [batch * seq][n_vocab].
inline const std::vector<float>& last_logits(const Workspace& ws) {
  return ws.logits;
}

}  // namespace bitnet::train
