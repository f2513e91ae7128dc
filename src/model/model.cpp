#include "model/model.h"

#include <algorithm>
#include <string_view>

#include "core/error.h"
#include "quant/head_dot.h"
#include "quant/q6_kx.h"
#include "quant/q8_0x.h"

namespace bitnet {

bool head_regroups_q8_0x(DType t, int64_t cols) {
  return t == DType::Q8_0 && cols > 0 && cols % kQ8xValues == 0 &&
         std::string_view(select_head(DType::Q8_0X).name) != "scalar";
}

Tensor regroup_q8_0x(const Tensor& t, const std::function<void(const uint8_t*, size_t)>& release) {
  BN_CHECK(t.dtype() == DType::Q8_0 && t.rank() == 2, "regroup_q8_0x: '{}' is {} {}", t.name(),
           dtype_name(t.dtype()), shape_str(t.shape()));
  Tensor out = Tensor::empty(DType::Q8_0X, t.shape(), t.name(), false);  // every byte written below
  const size_t rb = t.row_stride_bytes();
  BN_CHECK(out.row_stride_bytes() == rb);
  constexpr int64_t kSlice = 1024;  // rows: 2.7 MB of the 2B4T head
  for (int64_t r0 = 0; r0 < t.rows(); r0 += kSlice) {
    const int64_t rows = std::min(kSlice, t.rows() - r0);
    const uint8_t* src = t.data() + static_cast<size_t>(r0) * rb;
    repack_q8_0x_rows(src, rows, t.cols(), out.mutable_data() + static_cast<size_t>(r0) * rb);
    if (release) release(src, static_cast<size_t>(rows) * rb);
  }
  return out;
}

DType head_layout(DType t, int64_t cols) {
  if (head_regroups_q8_0x(t, cols)) return DType::Q8_0X;
  if (t == DType::Q6_K && cols > 0 && cols % 256 == 0 &&
      std::string_view(select_head(DType::Q6_KX).name) != "scalar")
    return DType::Q6_KX;
  return t;
}

Tensor regroup_head(const Tensor& t, const std::function<void(const uint8_t*, size_t)>& release) {
  const DType to = head_layout(t.dtype(), t.cols());
  if (to == t.dtype()) return t;
  if (to == DType::Q8_0X) return regroup_q8_0x(t, release);
  BN_CHECK(to == DType::Q6_KX && t.rank() == 2, "regroup_head: '{}' is {} {}", t.name(),
           dtype_name(t.dtype()), shape_str(t.shape()));
  Tensor out = Tensor::empty(DType::Q6_KX, t.shape(), t.name(), false);  // every byte written below
  const size_t rb = t.row_stride_bytes();
  BN_CHECK(out.row_stride_bytes() == rb);
  constexpr int64_t kSlice = 1024;  // rows, whole groups of 16: 2.2 MB of the 2B4T head
  for (int64_t r0 = 0; r0 < t.rows(); r0 += kSlice) {
    const int64_t rows = std::min(kSlice, t.rows() - r0);
    const uint8_t* src = t.data() + static_cast<size_t>(r0) * rb;
    repack_q6_kx_rows(src, rows, t.cols(), out.mutable_data() + static_cast<size_t>(r0) * rb);
    if (release) release(src, static_cast<size_t>(rows) * rb);
  }
  return out;
}

size_t decode_weight_bytes(const Model& m) {
  size_t b = m.output.nbytes();
  for (const auto& L : m.layers) b += L.wqkv.bytes() + L.wo.bytes() + L.w_gate_up.bytes() + L.w_down.bytes();
  return b;
}

std::vector<std::span<const uint8_t>> decode_weight_ranges(const Model& m) {
  std::vector<std::span<const uint8_t>> r;
  for (const auto& L : m.layers)
    for (const TernaryMatrix* w : {&L.wqkv, &L.wo, &L.w_gate_up, &L.w_down})
      r.emplace_back(w->packed.data(), w->bytes());
  r.emplace_back(m.output.data(), m.output.nbytes());
  return r;
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
