#pragma once
// Deterministic random models of any shape: random ternary layers (absmean-like scales), random
// embeddings and norms. Speed does not depend on weight values, so these measure exactly what a
// trained model of the same shape would; their text is meaningless.
#include <cstdint>

#include "core/dtype.h"
#include "model/model.h"

namespace bitnet {

// The BitNet b1.58 2B4T shape (hidden 2560, 30 layers, 20/5 heads, FFN 6912, vocab 128256).
ModelConfig config_2b4t();

// embd_type: F32, F16 or BF16 (the tied head uses the same table).
Model make_synthetic_model(const ModelConfig& cfg, uint64_t seed, DType embd_type = DType::F16);

}  // namespace bitnet
