#pragma once
// The trained model as a GGUF the engine runs (arch bitnet-b1.58): each logical matrix of the
// fused q|k|v and gate|up ternarized with its own absmean scale exactly as the trainer's forward
// does, so `bitnet run` computes the trainer's integers; norms in F32; the embedding (and an
// untied head) in embd_type; the tokenizer's vocabulary in tokenizer.ggml.*.
#include "core/dtype.h"
#include "io/gguf.h"
#include "tokenizer/tokenizer.h"
#include "training/model.h"

namespace bitnet::train {

GgufWriter export_gguf(const TrainModel& m, const TokenizerVocab& vocab, DType ternary_type, DType embd_type,
                       const std::string& name);

}  // namespace bitnet::train
