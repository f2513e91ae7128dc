#pragma once
// A synthetic model written as a GGUF file the way bitnet.cpp / llama.cpp lay one out: random
// ternary layers in I2_S, TQ2_0 or TQ1_0, a float embedding (tied head), norms, and a byte-level
// tokenizer (the 256 GPT-2 byte tokens, BOS/EOS, then reserved control tokens up to the
// vocabulary size). Loading it exercises the same path as a real model; its text is meaningless.
#include <cstdint>
#include <string>

#include "core/dtype.h"
#include "model/config.h"
#include "io/gguf.h"

namespace bitnet {

// The 2B4T shape ("2b4t") or a 4-layer, 256-wide model ("tiny").
ModelConfig synthetic_config(const std::string& shape);

GgufWriter synthetic_gguf(const ModelConfig& cfg, DType ternary_type, DType embd_type, uint64_t seed);

}  // namespace bitnet
