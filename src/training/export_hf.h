#pragma once
// The trained model as a Hugging Face BitNet checkpoint folder (config.json in the 2B4T style,
// model.safetensors with the master weights in F32 or BF16, tokenizer.json,
// tokenizer_config.json): transformers' BitNetForCausalLM loads it and `bitnet convert` reads it
// back. And the inverse: such a folder (float master weights) as the trainer's starting point.
#include <string>

#include "core/dtype.h"
#include "tokenizer/tokenizer.h"
#include "training/model.h"

namespace bitnet::train {

// dtype: F32 (exact: `bitnet convert` of it gives the trainer's integers) or BF16 (the release
// style; the ternary codes of weights near a rounding boundary may change).
void export_hf(const TrainModel& m, const TokenizerVocab& vocab, const std::string& dir, DType dtype);

// The model in an HF BitNet folder (float master weights; the packed uint8 release has none) as a
// TrainModel to continue training: config.json gives the config, tie_word_embeddings the head.
TrainModel load_hf_model(const std::string& dir, bool quantize);

}  // namespace bitnet::train
