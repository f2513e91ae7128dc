#include "inference/model.h"

namespace bitnet {

size_t decode_weight_bytes(const Model& m) {
  size_t b = m.output.nbytes();
  for (const auto& L : m.layers) b += L.wqkv.bytes() + L.wo.bytes() + L.w_gate_up.bytes() + L.w_down.bytes();
  return b;
}

}  // namespace bitnet
