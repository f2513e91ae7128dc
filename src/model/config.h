#pragma once
// Hyper-parameters of a BitNet-family decoder, as read from a model file or chosen for a
// synthetic model. One struct covers the three architectures we run; their differences are
// explicit fields, not code paths per model.
#include <cstdint>
#include <string>

#include "ops/layer_ops.h"

namespace bitnet {

struct ModelConfig {
  std::string arch;  // "bitnet-b1.58", "bitnet", "llama"
  int64_t n_vocab = 0;
  int64_t n_embd = 0;
  int64_t n_layer = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim = 0;  // n_embd / n_head unless the file says otherwise
  int64_t n_ff = 0;
  int64_t n_ctx_train = 0;
  int64_t rope_dim = 0;  // dimensions rotated per head (== head_dim for these models)
  float rope_theta = 10000.0f;
  float rms_eps = 1e-5f;
  RopeStyle rope = RopeStyle::kNeox;
  FfnAct act = FfnAct::kRelu2;
  bool sub_norms = true;  // attn_sub_norm before wo, ffn_sub_norm before w_down

  int64_t q_dim() const { return n_head * head_dim; }
  int64_t kv_dim() const { return n_head_kv * head_dim; }
};

// Throws bitnet::Error naming the first inconsistent field (zero sizes, heads not dividing, ...).
void validate(const ModelConfig& c);
std::string describe(const ModelConfig& c);

}  // namespace bitnet
