#pragma once
// The small model shape the trainer's CPU tests share: 2 layers, width 24, 4 query heads over 2
// KV heads of 6 values, an FFN of 20.
#include <cstdint>

#include "training/trainer.h"

namespace bitnet::train {

inline ModelConfig small_config(int64_t vocab) {
  ModelConfig c = train_config("tiny", vocab);
  c.n_embd = 24;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_head_kv = 2;
  c.head_dim = 6;
  c.rope_dim = 6;
  c.n_ff = 20;
  return c;
}

}  // namespace bitnet::train
