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
#include <optional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "model/config.h"
#include "io/gguf.h"
#include "io/safetensors.h"

namespace bitnet {

// The embedding/head type a conversion gets when none is asked for. Chosen by measured quality and
// speed (docs/PERFORMANCE.md, "Head quality"): on a trained BitNet, a Q6_K head/embedding costs
// +0.23 % perplexity and a mean KL of 0.0016 nats against F16, and decode reads 2.4x fewer head
// bytes (2B4T shape: 49.7 vs 32.8 tokens/s). Q6_K needs n_embd % 256 == 0, Q8_0 % 32; else F16.
DType default_embd_type(const ModelConfig& c);

struct ConvertOptions {
  DType ternary_type = DType::I2_S;  // I2_S, TQ2_0 or TQ1_0
  // F32, F16, BF16, Q8_0, Q4_0 or Q6_K: token embedding and untied head; empty: default_embd_type().
  std::optional<DType> embd_type;
  // Called once per tensor before it is converted: (index from 1, total, GGUF tensor name).
  std::function<void(size_t, size_t, const std::string&)> progress;
};

// The ModelConfig a checkpoint folder's config.json describes (arch "bitnet-b1.58").
ModelConfig hf_config(const std::string& dir);

// Whether config.json ties the head to the embedding (BitNetConfig's default: yes).
bool hf_tied(const std::string& dir);
// A float tensor (F32, F16 or BF16) of the checkpoint as fp32; fails naming the file and tensor when
// it is missing, of another shape or of another dtype.
std::vector<float> read_float_tensor(const SafetensorsModel& st, const std::string& name,
                                     const std::vector<int64_t>& shape);
// Builds the GGUF in memory. Throws bitnet::Error naming the file / tensor / key on bad input.
GgufWriter convert_hf(const std::string& dir, const ConvertOptions& opt);

}  // namespace bitnet
