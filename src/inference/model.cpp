#include "inference/model.h"

namespace bitnet {

size_t decode_weight_bytes(const Model& m) {
  size_t b = m.output.nbytes();
  for (const auto& L : m.layers) b += L.wqkv.bytes() + L.wo.bytes() + L.w_gate_up.bytes() + L.w_down.bytes();
  return b;
}

size_t model_weight_bytes(const Model& m) {
  size_t b = m.token_embd.nbytes() + (m.tied_head ? 0 : m.output.nbytes()) + m.output_norm.size() * 4;
  for (const auto& L : m.layers) {
    b += L.wqkv.bytes() + L.wo.bytes() + L.w_gate_up.bytes() + L.w_down.bytes();
    b += (L.attn_norm.size() + L.attn_sub_norm.size() + L.ffn_norm.size() + L.ffn_sub_norm.size()) * 4;
  }
  return b;
}

}  // namespace bitnet
