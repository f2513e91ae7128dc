#pragma once
// Element types. Packed types store `block_elems` elements in `block_bytes` bytes along the
// innermost dimension; a row's length must be a multiple of block_elems. I2_S additionally carries
// a 32-byte trailer per tensor (its fp32 scale, padded), as bitnet.cpp writes it.
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace bitnet {

enum class DType : uint8_t {
  F32,
  F16,
  BF16,
  I8,
  I32,
  Q8_0,   // ggml: 32 int8 + fp16 scale
  Q4_0,   // ggml: 32 x 4-bit + fp16 scale
  Q6_K,   // ggml: 256-element super-block, 210 bytes
  TQ1_0,  // ggml: 256 trits, base-3 packed, 54 bytes
  TQ2_0,  // ggml: 256 x 2-bit + fp16 scale, 66 bytes
  I2_S,   // bitnet.cpp: 2-bit codes, one fp32 scale per tensor
  TNAT,   // ours: kernel-native packed ternary (src/quant/native.h)
  Q8_0X,  // ours: Q8_0 regrouped for the head kernels, 16 blocks a superblock (src/quant/q8_0x.h)
  Q6_KX,  // ours: Q6_K with 16 rows interleaved for the head kernels (src/quant/q6_kx.h)
};

// The size facts of a type; the kernels that read and write it are its row in quant/type_traits.h.
struct DTypeInfo {
  std::string_view name;
  uint32_t block_elems;
  uint32_t block_bytes;
  uint32_t tensor_trailer_bytes;
  bool ternary;
};

inline constexpr size_t kDTypeCount = 14;

// Indexed by DType; constexpr so the type table can pin its rows at compile time.
inline constexpr std::array<DTypeInfo, kDTypeCount> kDTypeInfo = {{
    {"f32", 1, 4, 0, false},
    {"f16", 1, 2, 0, false},
    {"bf16", 1, 2, 0, false},
    {"i8", 1, 1, 0, false},
    {"i32", 1, 4, 0, false},
    {"q8_0", 32, 34, 0, false},
    {"q4_0", 32, 18, 0, false},
    {"q6_k", 256, 210, 0, false},
    {"tq1_0", 256, 54, 0, true},
    {"tq2_0", 256, 66, 0, true},
    {"i2_s", 4, 1, 32, true},
    {"tnat", 4, 1, 0, true},
    {"q8_0x", 512, 544, 0, false},
    {"q6_kx", 256, 210, 0, false},
}};
static_assert(static_cast<size_t>(DType::Q6_KX) + 1 == kDTypeCount, "one DTypeInfo per DType");

[[noreturn]] void bad_dtype(size_t index);

constexpr const DTypeInfo& dtype_info(DType t) {
  const auto i = static_cast<size_t>(t);
  if (i >= kDTypeInfo.size()) [[unlikely]]
    bad_dtype(i);
  return kDTypeInfo[i];
}

std::string_view dtype_name(DType t);
std::optional<DType> dtype_from_name(std::string_view name);  // case-insensitive

// Bytes of a contiguous row of `n` elements; throws bitnet::Error when n is not a whole number of
// blocks.
size_t row_bytes(DType t, int64_t n);

}  // namespace bitnet
