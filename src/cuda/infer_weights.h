#pragma once
// A Model's weights on the device, uploaded once. Ternary matrices are repacked from the CPU's
// TNAT blocks into the GPU-native row layout (infer_kernels.h), all of them in one allocation, so
// the read probe streams exactly the bytes a decoded token reads, in one pass. The embedding and
// the head stay in their file type: F32, F16, BF16 and Q6_K as stored (the CPU's interleaved Q6_KX
// read back into Q6_K); Q8_0 (and the CPU's regrouped Q8_0X) split into aligned int8 codes and half
// scales (the same bytes); any other type (Q4_0) is dequantized to F16 at upload, said on stderr.
#include <cstdint>
#include <vector>

#include "cuda/buffer.h"
#include "cuda/infer_kernels.h"
#include "model/model.h"
#include "model/tp_plan.h"

namespace bitnet::cuda {

struct DeviceTable {
  int type = infer::kHeadF16;  // infer::kHead*
  Buffer<uint8_t> data;        // rows as the type stores them (Q8: int8 codes)
  Buffer<uint8_t> scales;      // Q8: half [rows][cols / 32]
  int64_t rows = 0, cols = 0;
  size_t bytes() const { return data.bytes() + scales.bytes(); }
};

struct DeviceLayer {
  Buffer<float> attn_norm, attn_sub_norm, ffn_norm, ffn_sub_norm;  // sub-norms empty when absent
  infer::DevTernary wqkv, wo, gate_up, down;                       // views into DeviceModel::ternary
};

struct DeviceModel {
  Buffer<uint8_t> ternary;  // every layer's packed rows, in forward order
  Buffer<float> row_scales;
  std::vector<DeviceLayer> layers;
  DeviceTable embd, head_own;  // head_own: a separate (untied) output table
  bool tied = true;
  Buffer<float> output_norm;
  const DeviceTable& head() const { return tied ? embd : head_own; }
};

// The GPU-native words of a TNAT matrix: [n][k_pad / 16] (exposed for the kernel tests).
std::vector<uint32_t> native_to_gpu_words(const TernaryMatrix& m);
// A table (embedding or head) in a device type; `what` names it in messages.
DeviceTable upload_table(const Tensor& t, const char* what);
DeviceModel upload_model(const Model& m);
// One rank's shard for tensor-parallel inference (model/tp_plan.h): q|k|v rows of its heads, o's
// columns o_cols, gate|up rows ff (of gate and of up), down's columns ff, each row with its
// tensor's scale (quant/shard.h); norms and the embedding whole. The head (a separate output
// table) only where `head`: one rank computes the logits. Ternary layers only: the layers of the
// TP path's forward (infer_tp.h).
DeviceModel upload_model_shard(const Model& m, const TpRank& r, bool head);

}  // namespace bitnet::cuda
