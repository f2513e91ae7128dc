#pragma once
// One row per element type (ggml's type_traits): its size facts (core/dtype.h), its GGUF id, and
// the kernels that read and write it. Callers go through the row instead of switching over types,
// so a new stored format is one row here (plus its size facts in core/dtype.h) and its kernels.
//
// Which kernels a row has:
//   stored ternary (TQ1_0, TQ2_0, I2_S)      pack, unpack (and tensor_scale where the scale is
//                                            per tensor, not per block)
//   float and block-quantized rows           dequantize; quantize where we write the type
//   TNAT, Q8_0X, Q6_KX (ours, built at load) no GGUF id; their kernels live in native.h, q8_0x.h,
//                                            q6_kx.h (Q6_KX has no dequantize: its rows interleave)
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace bitnet {

// ggml tensor type ids (the numbers GGUF files store); ggml_type_name (io/gguf.h) names the rest.
inline constexpr uint32_t kGgmlF32 = 0, kGgmlF16 = 1, kGgmlQ4_0 = 2, kGgmlQ8_0 = 8, kGgmlQ6_K = 14,
                          kGgmlI8 = 24, kGgmlI32 = 26, kGgmlBF16 = 30, kGgmlTQ1_0 = 34, kGgmlTQ2_0 = 35,
                          kGgmlI2_S = 36;

// n ternary values {-1, 0, +1} and one scale -> the type's bytes (n a multiple of pack_block;
// out holds Tensor::nbytes of them). Throws on a value outside {-1, 0, +1}.
using PackTernaryFn = void (*)(const int8_t* w, int64_t n, float scale, uint8_t* out);
// The codes of elements [first, first + n) of a tensor, `in` pointing at their first block (n and
// first multiples of pack_block). Validating: a code no ternary value has throws, naming `what`
// and the element. Per-block scale types write one scale per pack_block elements to block_scales;
// per-tensor scale types leave it alone (it may be null) and keep their scale for tensor_scale.
using UnpackTernaryFn = void (*)(const uint8_t* in, int64_t n, int8_t* w, float* block_scales,
                                 const std::string& what, int64_t first);
// The one scale of a whole tensor of n elements at `tensor` (its trailer), unvalidated.
using TensorScaleFn = float (*)(const uint8_t* tensor, int64_t n);
// One row of n values (whole blocks, already checked) to float, and back.
using DequantizeRowFn = void (*)(const uint8_t* src, int64_t n, float* dst);
using QuantizeStoredRowFn = void (*)(const float* x, int64_t n, uint8_t* dst);

struct TypeTraits {
  DTypeInfo info;                     // name, block elements / bytes, trailer, ternary (core)
  std::optional<uint32_t> ggml_type;  // GGUF id; none for our in-memory layouts
  int64_t pack_block = 0;             // stored ternary: elements pack / unpack work in
  PackTernaryFn pack = nullptr;
  UnpackTernaryFn unpack = nullptr;
  TensorScaleFn tensor_scale = nullptr;  // set where one scale covers the tensor (I2_S)
  DequantizeRowFn dequantize = nullptr;
  QuantizeStoredRowFn quantize = nullptr;

  bool stored_ternary() const { return pack != nullptr; }
};

const TypeTraits& type_traits(DType t);
// nullptr when every row keeps the table's rules about its kernels (checked by a test: function
// pointers cannot be compared in a static_assert in every build), else the rule broken.
const char* type_table_violation();
std::optional<DType> dtype_from_ggml(uint32_t ggml_type);  // nullopt for ids we do not read
std::optional<uint32_t> ggml_from_dtype(DType t);          // nullopt for TNAT, Q8_0X, Q6_KX

// The names of the types whose row has `kernel`, in table order, for messages and CLI choices:
// type_names(&TypeTraits::pack) -> {"tq1_0", "tq2_0", "i2_s"}.
template <typename Fn>
std::vector<std::string> type_names(Fn TypeTraits::*kernel) {
  std::vector<std::string> names;
  for (size_t i = 0; i < kDTypeCount; ++i)
    if (type_traits(static_cast<DType>(i)).*kernel) names.emplace_back(dtype_name(static_cast<DType>(i)));
  return names;
}
// "a, b or c"
std::string or_list(const std::vector<std::string>& names);

// Whether a [rows, cols] ternary weight packs into stored type t: rows of whole blocks, the tensor
// whole pack blocks (I2_S's 128-weight blocks may span rows).
bool ternary_fits(DType t, int64_t rows, int64_t cols);
// A whole stored ternary tensor [rows, cols] with one scale -> its bytes. Throws naming `what`
// when t is not a stored ternary type or the shape does not fit it.
std::vector<uint8_t> pack_ternary(DType t, const int8_t* w, int64_t rows, int64_t cols, float scale,
                                  const std::string& what);
// A whole stored ternary tensor of n elements -> codes and its scales (ternary_scale_count of them:
// one per block, or the tensor's one scale). Validating, like UnpackTernaryFn.
void unpack_ternary(DType t, const uint8_t* in, int64_t n, int8_t* w, float* scales,
                    const std::string& what = "");
size_t ternary_scale_count(DType t, int64_t n);

}  // namespace bitnet
