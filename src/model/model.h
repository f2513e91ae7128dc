#pragma once
// Weights of a loaded model, ready for the forward pass: ternary matrices repacked once into the
// kernel-native layout (q|k|v and gate|up fused, one scale per logical sub-matrix), norms as
// float vectors, embedding and head kept in their stored type (borrowed from the mmap'd file),
// except a Q8_0 or Q6_K head, which is regrouped once into the head kernel's Q8_0X (quant/q8_0x.h)
// or Q6_KX (quant/q6_kx.h), the same number of bytes.
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "core/tensor.h"
#include "model/config.h"
#include "quant/native.h"

namespace bitnet {

struct LayerWeights {
  std::vector<float> attn_norm, attn_sub_norm, ffn_norm, ffn_sub_norm;  // sub-norms empty if absent
  TernaryMatrix wqkv;      // [q_dim + 2 kv_dim][n_embd]
  TernaryMatrix wo;        // [n_embd][q_dim]
  TernaryMatrix w_gate_up; // [2 n_ff][n_embd]: gate rows first, then up
  TernaryMatrix w_down;    // [n_embd][n_ff]
};

struct Model {
  ModelConfig cfg;
  Tensor token_embd;  // [n_vocab][n_embd]
  Tensor output;      // [n_vocab][n_embd]; the same tensor as token_embd when tied (as Q8_0X / Q6_KX)
  bool tied_head = true;
  std::vector<float> output_norm;
  std::vector<LayerWeights> layers;
};

// Whether a head table of type t and width cols is regrouped into Q8_0X at load: Q8_0, rows of
// whole 512-value superblocks, and a head kernel other than the scalar reference for Q8_0X here
// (head_dot.h's selection, so BITNET_HEAD_KERNEL=scalar keeps Q8_0).
bool head_regroups_q8_0x(DType t, int64_t cols);
// A Q8_0 table regrouped into a new owned Q8_0X tensor (same name, shape and size), in slices of
// rows; after each slice, release(p, n) is told the source bytes no longer needed (a loader
// drops their file pages there, so the two copies are never resident together).
Tensor regroup_q8_0x(const Tensor& t, const std::function<void(const uint8_t*, size_t)>& release = {});
// The type a head table of type t and width cols is held in: Q8_0X as above; Q6_KX for Q6_K where
// a head kernel other than the scalar reference runs Q6_KX here (BITNET_HEAD_KERNEL=scalar keeps
// Q6_K); else t itself.
DType head_layout(DType t, int64_t cols);
// t regrouped into head_layout(t.dtype(), t.cols()) as regroup_q8_0x does (t itself if that is
// its type already).
Tensor regroup_head(const Tensor& t, const std::function<void(const uint8_t*, size_t)>& release = {});

// Bytes of weights the forward pass reads per decoded token (ternary layers + head), for
// bandwidth-bound estimates.
size_t decode_weight_bytes(const Model& m);
// The byte ranges a decoded token reads (each layer's packed ternary matrices, the head), in
// order; their sizes add up to decode_weight_bytes.
std::vector<std::span<const uint8_t>> decode_weight_ranges(const Model& m);
// Bytes of all weights held (ternary layers as packed, embedding, separate head, norms).
size_t model_weight_bytes(const Model& m);

}  // namespace bitnet
