#pragma once
// Weights of a loaded model, ready for the forward pass: ternary matrices repacked once into the
// kernel-native layout (q|k|v and gate|up fused, one scale per logical sub-matrix), norms as
// float vectors, embedding and head kept in their stored type (borrowed from the mmap'd file).
#include <memory>
#include <vector>

#include "core/tensor.h"
#include "inference/config.h"
#include "quant/native.h"

namespace bitnet {

struct LayerWeights {
  std::vector<float> attn_norm, attn_sub_norm, ffn_norm, ffn_sub_norm;  // sub-norms empty if absent
  TernaryMatrix wqkv;      // [q_dim + 2 kv_dim][n_embd]
  TernaryMatrix wo;        // [n_embd][q_dim]
  TernaryMatrix w_gate_up; // [2 n_ff][n_embd]: gate rows first, then up
  TernaryMatrix w_down;    // [n_embd][n_ff]
};

struct Model {
  ModelConfig cfg;
  Tensor token_embd;  // [n_vocab][n_embd]
  Tensor output;      // [n_vocab][n_embd]; the same tensor as token_embd when tied
  bool tied_head = true;
  std::vector<float> output_norm;
  std::vector<LayerWeights> layers;
};

// Bytes of weights the forward pass reads per decoded token (ternary layers + head), for
// bandwidth-bound estimates.
size_t decode_weight_bytes(const Model& m);
// Bytes of all weights held (ternary layers as packed, embedding, separate head, norms).
size_t model_weight_bytes(const Model& m);

}  // namespace bitnet
