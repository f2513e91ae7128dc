#include "quant/type_traits.h"

#include <array>
#include <cctype>
#include <cstring>

#include "core/error.h"
#include "core/tensor.h"
#include "quant/dequant.h"
#include "quant/formats.h"
#include "quant/quantize_rows.h"

namespace bitnet {
namespace {

// I2_S keeps its one scale in the trailer, not in its blocks: the codes alone fit the table's
// unpack, the scale is read once by i2s_tensor_scale.
void i2s_unpack(const uint8_t* in, int64_t n, int8_t* w, float*, const std::string& what, int64_t first) {
  unpack_i2s_codes(in, n, w, what, first);
}

float i2s_tensor_scale(const uint8_t* tensor, int64_t n) {
  float s;
  std::memcpy(&s, tensor + n / 4, sizeof s);
  return s;
}

constexpr TypeTraits row(DType t, std::optional<uint32_t> ggml) {
  return {dtype_info(t), ggml};
}

constexpr TypeTraits float_row(DType t, std::optional<uint32_t> ggml, DequantizeRowFn dq,
                               QuantizeStoredRowFn q) {
  TypeTraits r = row(t, ggml);
  r.dequantize = dq;
  r.quantize = q;
  return r;
}

constexpr TypeTraits ternary_row(DType t, uint32_t ggml, int64_t pack_block, PackTernaryFn pack,
                                 UnpackTernaryFn unpack, TensorScaleFn tensor_scale) {
  TypeTraits r = row(t, ggml);
  r.pack_block = pack_block;
  r.pack = pack;
  r.unpack = unpack;
  r.tensor_scale = tensor_scale;
  return r;
}

// Indexed by DType. One row a line (clang-format would pack them).
// clang-format off
constexpr std::array<TypeTraits, kDTypeCount> kTraits = {{
    float_row(DType::F32, kGgmlF32, dequantize_row_f32, quantize_row_f32),
    float_row(DType::F16, kGgmlF16, dequantize_row_f16, quantize_row_f16),
    float_row(DType::BF16, kGgmlBF16, dequantize_row_bf16, quantize_row_bf16),
    row(DType::I8, kGgmlI8),
    row(DType::I32, kGgmlI32),
    float_row(DType::Q8_0, kGgmlQ8_0, dequantize_row_q8_0, quantize_row_q8_0),
    float_row(DType::Q4_0, kGgmlQ4_0, dequantize_row_q4_0, quantize_row_q4_0),
    float_row(DType::Q6_K, kGgmlQ6_K, dequantize_row_q6_k, quantize_row_q6_k),
    ternary_row(DType::TQ1_0, kGgmlTQ1_0, kTqBlock, pack_tq1_0, unpack_tq1_0, nullptr),
    ternary_row(DType::TQ2_0, kGgmlTQ2_0, kTqBlock, pack_tq2_0, unpack_tq2_0, nullptr),
    ternary_row(DType::I2_S, kGgmlI2_S, kI2sBlock, pack_i2s, i2s_unpack, i2s_tensor_scale),
    row(DType::TNAT, std::nullopt),                                        // quant/native.h
    float_row(DType::Q8_0X, std::nullopt, dequantize_row_q8_0x, nullptr),  // quant/q8_0x.h
    row(DType::Q6_KX, std::nullopt),  // quant/q6_kx.h: rows interleaved, no row of its own to dequantize
}};
// clang-format on

// ---- Pins: each row's facts as the formats define them ------------------------------------------

constexpr const TypeTraits& at(DType t) {
  return kTraits[static_cast<size_t>(t)];
}

constexpr bool sizes_are(DType t, uint32_t elems, uint32_t bytes, uint32_t trailer = 0) {
  return at(t).info.block_elems == elems && at(t).info.block_bytes == bytes &&
         at(t).info.tensor_trailer_bytes == trailer;
}
static_assert(sizes_are(DType::F32, 1, 4) && sizes_are(DType::F16, 1, 2) && sizes_are(DType::BF16, 1, 2));
static_assert(sizes_are(DType::I8, 1, 1) && sizes_are(DType::I32, 1, 4));
static_assert(sizes_are(DType::Q8_0, 32, 34) && sizes_are(DType::Q4_0, 32, 18));
static_assert(sizes_are(DType::Q6_K, 256, 210));
static_assert(sizes_are(DType::TQ1_0, 256, 54) && sizes_are(DType::TQ2_0, 256, 66));
static_assert(sizes_are(DType::I2_S, 4, 1, 32));  // 2 bits a weight, fp32 scale padded to 32 bytes
static_assert(sizes_are(DType::TNAT, 4, 1) && sizes_are(DType::Q8_0X, 512, 544) &&
              sizes_are(DType::Q6_KX, 256, 210));

constexpr bool id_is(DType t, std::optional<uint32_t> id) {
  return at(t).ggml_type == id;
}
static_assert(id_is(DType::F32, 0) && id_is(DType::F16, 1) && id_is(DType::Q4_0, 2) && id_is(DType::Q8_0, 8));
static_assert(id_is(DType::Q6_K, 14) && id_is(DType::I8, 24) && id_is(DType::I32, 26) &&
              id_is(DType::BF16, 30));
static_assert(id_is(DType::TQ1_0, 34) && id_is(DType::TQ2_0, 35) && id_is(DType::I2_S, 36));
static_assert(id_is(DType::TNAT, std::nullopt) && id_is(DType::Q8_0X, std::nullopt) &&
              id_is(DType::Q6_KX, std::nullopt));

// A row is its own DType's (the table is indexed by DType).
static_assert([] {
  for (size_t i = 0; i < kTraits.size(); ++i)
    if (kTraits[i].info.name != dtype_info(static_cast<DType>(i)).name) return false;
  return true;
}());
// Pack blocks: TQ's 256-weight blocks; I2_S's 128-weight groups of 32 bytes.
static_assert(at(DType::TQ1_0).pack_block == 256 && at(DType::TQ2_0).pack_block == 256 &&
              at(DType::I2_S).pack_block == 128);

// The rules every row keeps that involve its kernels (function pointers, which GCC's sanitizer
// builds do not fold in constant expressions: type_table_violation, checked by a test).
bool rows_hold(bool (*ok)(const TypeTraits&)) {
  for (const TypeTraits& r : kTraits)
    if (!ok(r)) return false;
  return true;
}

std::string upper(std::string_view s) {
  std::string u(s);
  for (char& c : u) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return u;
}

const TypeTraits& stored_ternary(DType t, const std::string& what) {
  const TypeTraits& r = type_traits(t);
  if (!r.stored_ternary())
    fail("tensor '{}': {} is not a stored ternary type ({})", what, dtype_name(t),
         or_list(type_names(&TypeTraits::pack)));
  return r;
}

void check_whole_blocks(const TypeTraits& r, int64_t n) {
  if (n <= 0 || n % r.pack_block)
    fail("{} needs a multiple of {} elements, got {}", upper(r.info.name), r.pack_block, n);
}

}  // namespace

const char* type_table_violation() {
  // Every ternary type in files packs and unpacks, in whole blocks of the stored layout; TNAT is
  // ternary but only in memory (native.h). No type is both ternary and dequantized by row.
  if (!rows_hold([](const TypeTraits& r) {
        const bool stored = r.info.ternary && r.ggml_type;
        return stored == (r.pack && r.unpack) && stored == (r.pack_block > 0) &&
               (!stored || r.pack_block % r.info.block_elems == 0) && !(r.info.ternary && r.dequantize);
      }))
    return "a stored ternary type lacks pack/unpack or whole pack blocks, or a ternary type dequantizes";
  // Block scales are read per row by the loader, so a per-block scale type's blocks never straddle
  // rows: its pack block is its row block.
  if (!rows_hold([](const TypeTraits& r) {
        return !r.pack || r.tensor_scale || r.pack_block == r.info.block_elems;
      }))
    return "a per-block-scale ternary type's pack block is not its row block";
  // Every float and block-quantized type dequantizes by row, but Q6_KX, whose rows interleave
  // (q6_kx.h reads one back into Q6_K); what we quantize to we can read back.
  if (!rows_hold([](const TypeTraits& r) {
        const bool no_rows = r.info.name == "i8" || r.info.name == "i32" || r.info.name == "q6_kx";
        return (!r.info.ternary && !no_rows) == (r.dequantize != nullptr) && (!r.quantize || r.dequantize);
      }))
    return "a float or block-quantized type cannot be dequantized, or one we quantize to cannot be read back";
  return nullptr;
}

const TypeTraits& type_traits(DType t) {
  const auto i = static_cast<size_t>(t);
  BN_CHECK(i < kTraits.size());
  return kTraits[i];
}

std::optional<DType> dtype_from_ggml(uint32_t ggml_type) {
  for (size_t i = 0; i < kTraits.size(); ++i)
    if (kTraits[i].ggml_type == ggml_type) return static_cast<DType>(i);
  return std::nullopt;
}

std::optional<uint32_t> ggml_from_dtype(DType t) {
  return type_traits(t).ggml_type;
}

std::string or_list(const std::vector<std::string>& names) {
  std::string s;
  for (size_t i = 0; i < names.size(); ++i)
    s += (i == 0 ? "" : i + 1 == names.size() ? " or " : ", ") + names[i];
  return s;
}

bool ternary_fits(DType t, int64_t rows, int64_t cols) {
  const TypeTraits& r = type_traits(t);
  return r.stored_ternary() && rows > 0 && cols > 0 && cols % r.info.block_elems == 0 &&
         rows * cols % r.pack_block == 0;
}

std::vector<uint8_t> pack_ternary(DType t, const int8_t* w, int64_t rows, int64_t cols, float scale,
                                  const std::string& what) {
  const TypeTraits& r = stored_ternary(t, what);
  if (cols <= 0 || cols % r.info.block_elems)
    fail("tensor '{}' has rows of {} weights; {} needs a multiple of {}", what, cols, dtype_name(t),
         r.info.block_elems);
  if (!ternary_fits(t, rows, cols))
    fail("tensor '{}' has {} weights; {} needs a multiple of {}", what, rows * cols, dtype_name(t),
         r.pack_block);
  std::vector<uint8_t> bytes(Tensor::nbytes(t, {rows, cols}));
  r.pack(w, rows * cols, scale, bytes.data());
  return bytes;
}

void unpack_ternary(DType t, const uint8_t* in, int64_t n, int8_t* w, float* scales,
                    const std::string& what) {
  const TypeTraits& r = stored_ternary(t, what);
  check_whole_blocks(r, n);
  r.unpack(in, n, w, scales, what, 0);
  if (r.tensor_scale) scales[0] = r.tensor_scale(in, n);
}

size_t ternary_scale_count(DType t, int64_t n) {
  const TypeTraits& r = stored_ternary(t, "");
  return r.tensor_scale ? 1 : static_cast<size_t>(n / r.pack_block);
}

}  // namespace bitnet
