#pragma once
// The small model shape the inference tests share: 2 layers, 4 query heads over 2 KV heads, and
// an FFN width that is not a multiple of 64 (exercises K padding in w_down).
#include "model/config.h"

namespace bitnet {

inline ModelConfig tiny_config(RopeStyle rope, FfnAct act, bool sub_norms) {
  ModelConfig c;
  c.arch = "test";
  c.n_vocab = 97;
  c.n_embd = 64;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_head_kv = 2;
  c.head_dim = 16;
  c.n_ff = 96;
  c.rope_dim = 16;
  c.rope_theta = 10000.0f;
  c.rms_eps = 1e-5f;
  c.rope = rope;
  c.act = act;
  c.sub_norms = sub_norms;
  return c;
}

}  // namespace bitnet
