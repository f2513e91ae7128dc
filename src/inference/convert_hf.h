#pragma once
// Hugging Face BitNet b1.58 checkpoint -> GGUF (architecture "bitnet-b1.58", the layout
// bitnet.cpp writes and load_gguf.cpp reads).
//
// Input folder: config.json (transformers BitNetConfig, 4.x or 5.x style), *.safetensors (one file
// or model.safetensors.index.json), tokenizer.json (+ tokenizer_config.json for bos/eos/add_bos).
// Linear weights are either
//   * float master weights (F32/F16/BF16): ternarized with absmean (quant/ternary.h), or
//   * packed uint8 [ceil(out/4), in] (transformers `pack_weights`, the official 2B4T release) with a
//     `weight_scale` tensor: real weight = codes / weight_scale for BitLinear (the default
//     linear_class), codes * weight_scale for AutoBitLinear in offline mode.
#include <cstddef>
#include <functional>
#include <string>

#include "core/dtype.h"
#include "inference/config.h"
#include "model/gguf.h"

namespace bitnet {

struct ConvertOptions {
  DType ternary_type = DType::I2_S;  // I2_S, TQ2_0 or TQ1_0
  DType embd_type = DType::F16;      // F32, F16 or BF16: token embedding and untied head
  // Called once per tensor before it is converted: (index from 1, total, GGUF tensor name).
  std::function<void(size_t, size_t, const std::string&)> progress;
};

// The ModelConfig a checkpoint folder's config.json describes (arch "bitnet-b1.58").
ModelConfig hf_config(const std::string& dir);

// Builds the GGUF in memory. Throws bitnet::Error naming the file / tensor / key on bad input.
GgufWriter convert_hf(const std::string& dir, const ConvertOptions& opt);

}  // namespace bitnet
