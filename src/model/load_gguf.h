#pragma once
// Builds an engine Model from a GGUF file written by bitnet.cpp (arch `bitnet-b1.58`,
// `bitnet-25`; I2_S) or llama.cpp (arch `bitnet`, TQ1_0 / TQ2_0; `llama` with ternary layers).
// Ternary tensors are unpacked once and repacked into the native layout with q|k|v and gate|up
// fused; embeddings, head and norms are borrowed from the mapping (norms copied to float).
// Anything unsupported (architecture, tensor type, shape) is an error naming it.
#include <functional>
#include <memory>

#include "model/model.h"
#include "io/gguf.h"

namespace bitnet {

// Writes the `{arch}.*` hyper-parameter keys that load_gguf_model reads (one place for the names).
void write_config_metadata(GgufWriter& w, const ModelConfig& c);

// progress(done, total) is called after each layer is repacked (total = block count).
std::unique_ptr<Model> load_gguf_model(const GgufFile& f,
                                       const std::function<void(int64_t, int64_t)>& progress = {});

}  // namespace bitnet
