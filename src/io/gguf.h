#pragma once
// GGUF (llama.cpp / ggml model files), versions 2 and 3, little-endian. Reader and writer.
//
// File layout (all integers little-endian; "str" is u64 length + that many UTF-8 bytes, no NUL):
//   u32 magic 0x46554747 ("GGUF" as bytes) | u32 version (2 or 3; v1 used u32 counts: refused)
//   u64 n_tensors | u64 n_kv
//   n_kv x { str key | u32 value_type | value }
//       value: u8/i8 (1 byte), u16/i16 (2), u32/i32/f32 (4), bool (1 byte, 0 or 1), str,
//              u64/i64/f64 (8), array = { u32 elem_type | u64 count | count x value }
//   n_tensors x { str name | u32 n_dims (1..4) | n_dims x u64 ne (innermost first) |
//                 u32 ggml_type | u64 offset (relative to the data section, aligned) }
//   zero padding to a multiple of `general.alignment` (u32 key, default 32, a power of two)
//   data section: each tensor's bytes at its offset, zero padding between tensors.
//
// The reader validates every count, length and offset against the bytes that remain before
// allocating or reading, so a truncated or hostile file fails with a bitnet::Error that names the
// file and byte offset. Tensor data is borrowed from the caller's buffer (normally a MappedFile).
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"
#include "quant/type_traits.h"

namespace bitnet {

class MappedFile;

// GGUF metadata value types (the numbers are the file's).
enum class GgufType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7, STRING = 8,
  ARRAY = 9, U64 = 10, I64 = 11, F64 = 12,
};
std::string_view gguf_type_name(GgufType t);  // "u8", ..., "array"; "type#N" when unknown

// ggml tensor type ids: the ones we read are the type table's (kGgml*, dtype_from_ggml and
// ggml_from_dtype in quant/type_traits.h); this names every id, ours or not.
std::string ggml_type_name(uint32_t ggml_type);  // "Q4_K", ..., "type#N" when unknown

// One metadata value. Integers are widened (unsigned -> uint64_t, signed -> int64_t, floats ->
// double) but `type` / `elem` keep the stored width, so a value round-trips through the writer.
struct GgufValue {
  GgufType type = GgufType::U8;
  GgufType elem = GgufType::U8;  // element type when type == ARRAY
  std::variant<uint64_t, int64_t, double, bool, std::string, std::vector<uint64_t>,
               std::vector<int64_t>, std::vector<double>, std::vector<bool>,
               std::vector<std::string>>
      v = uint64_t{0};

  bool is_array() const { return type == GgufType::ARRAY; }
  size_t size() const;  // array length (1 for a scalar)
  std::string to_string(size_t max_elems = 8) const;  // for printing; arrays summarized

  // Constructors for the writer and tests.
  static GgufValue u8(uint8_t x) { return scalar(GgufType::U8, uint64_t{x}); }
  static GgufValue i8(int8_t x) { return scalar(GgufType::I8, int64_t{x}); }
  static GgufValue u16(uint16_t x) { return scalar(GgufType::U16, uint64_t{x}); }
  static GgufValue i16(int16_t x) { return scalar(GgufType::I16, int64_t{x}); }
  static GgufValue u32(uint32_t x) { return scalar(GgufType::U32, uint64_t{x}); }
  static GgufValue i32(int32_t x) { return scalar(GgufType::I32, int64_t{x}); }
  static GgufValue u64(uint64_t x) { return scalar(GgufType::U64, x); }
  static GgufValue i64(int64_t x) { return scalar(GgufType::I64, x); }
  static GgufValue f32(float x) { return scalar(GgufType::F32, double{x}); }
  static GgufValue f64(double x) { return scalar(GgufType::F64, x); }
  static GgufValue boolean(bool x) { return scalar(GgufType::BOOL, x); }
  static GgufValue str(std::string x) { return scalar(GgufType::STRING, std::move(x)); }
  // Arrays: `elem` must match the vector (unsigned types with uint64_t, signed with int64_t,
  // F32/F64 with double); values must fit the element width (the writer checks).
  static GgufValue array(GgufType elem, std::vector<uint64_t> x) { return arr(elem, std::move(x)); }
  static GgufValue array(GgufType elem, std::vector<int64_t> x) { return arr(elem, std::move(x)); }
  static GgufValue array(GgufType elem, std::vector<double> x) { return arr(elem, std::move(x)); }
  static GgufValue array(std::vector<bool> x) { return arr(GgufType::BOOL, std::move(x)); }
  static GgufValue array(std::vector<std::string> x) { return arr(GgufType::STRING, std::move(x)); }

  bool operator==(const GgufValue&) const = default;

 private:
  template <typename T>
  static GgufValue scalar(GgufType t, T x) {
    GgufValue r;
    r.type = t;
    r.v = std::move(x);
    return r;
  }
  template <typename T>
  static GgufValue arr(GgufType e, T x) {
    GgufValue r;
    r.type = GgufType::ARRAY;
    r.elem = e;
    r.v = std::move(x);
    return r;
  }
};

struct GgufTensorInfo {
  std::string name;
  uint32_t ggml_type = 0;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;  // ours: outermost first (GGUF's ne reversed)
  uint64_t offset = 0;         // relative to the data section
  size_t nbytes = 0;           // Tensor::nbytes(dtype, shape)
};

class GgufFile {
 public:
  // Maps the file and parses it; the tensors borrow the mapping.
  static GgufFile open(const std::string& path);
  // Parses `size` bytes at `data`; `owner` keeps them alive for borrowed tensors; `name` is used in
  // error messages.
  static GgufFile parse(std::shared_ptr<const void> owner, const uint8_t* data, size_t size,
                        std::string name);

  const std::string& name() const { return name_; }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  size_t data_offset() const { return data_offset_; }  // absolute start of the data section
  size_t file_size() const { return size_; }

  // Metadata in file order.
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
  const GgufValue* find(std::string_view key) const;  // nullptr when absent
  bool has(std::string_view key) const { return find(key) != nullptr; }

  // Typed getters throw bitnet::Error naming the key when it is absent, has another type or does
  // not fit. Integer getters accept any integer type whose value fits; float getters accept F32 and
  // F64. The two-argument forms return `dflt` when the key is absent.
  uint32_t get_u32(std::string_view key) const;
  uint32_t get_u32(std::string_view key, uint32_t dflt) const;
  int32_t get_i32(std::string_view key) const;
  int32_t get_i32(std::string_view key, int32_t dflt) const;
  uint64_t get_u64(std::string_view key) const;
  int64_t get_i64(std::string_view key) const;
  float get_f32(std::string_view key) const;
  float get_f32(std::string_view key, float dflt) const;
  double get_f64(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  bool get_bool(std::string_view key, bool dflt) const;
  const std::string& get_str(std::string_view key) const;
  std::string get_str(std::string_view key, const std::string& dflt) const;
  // Arrays: the value must be an array with elements of the matching kind.
  const GgufValue& get_arr(std::string_view key) const;  // any array
  const std::vector<std::string>& get_str_arr(std::string_view key) const;
  std::vector<int64_t> get_int_arr(std::string_view key) const;  // any integer element type
  std::vector<float> get_f32_arr(std::string_view key) const;    // F32 or F64 elements

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(std::string_view name) const;  // nullptr when absent
  Tensor tensor(std::string_view name) const;  // throws naming the tensor when absent
  Tensor tensor(const GgufTensorInfo& info) const;
  const uint8_t* tensor_data(const GgufTensorInfo& info) const {
    return data_ + data_offset_ + info.offset;
  }
  // For a file opened with open(): drops the tensor's mapped pages from memory (see
  // MappedFile::release); a no-op for parse() over a caller's buffer.
  void release_tensor(const GgufTensorInfo& info) const;
  // The same for any n bytes at p inside the file's data (whole pages only).
  void release_bytes(const uint8_t* p, size_t n) const;

 private:
  std::string name_;
  std::shared_ptr<const void> owner_;
  const MappedFile* mapped_ = nullptr;  // owner_ when open() made it
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  uint32_t version_ = 0;
  uint32_t alignment_ = 32;
  size_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::unordered_map<std::string, size_t> kv_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::unordered_map<std::string, size_t> tensor_index_;

  friend struct GgufParser;
};

// Writer (always version 3). Metadata keys keep insertion order; tensors are laid out in order,
// each at the next multiple of `alignment`. A `general.alignment` key is added when alignment is
// not 32 and the caller did not set one.
struct GgufWriter {
  uint32_t alignment = 32;
  std::vector<std::pair<std::string, GgufValue>> kv;
  struct Item {
    std::string name;
    uint32_t ggml_type;
    std::vector<int64_t> shape;  // outermost first
    std::vector<uint8_t> bytes;
  };
  std::vector<Item> tensors;

  void set(std::string key, GgufValue v);  // replaces an existing key
  void add_tensor(const Tensor& t, std::string name = {});  // name defaults to t.name()
  // Raw form (any ggml type id; bytes must match the shape for types we know).
  void add_tensor(std::string name, uint32_t ggml_type, std::vector<int64_t> shape,
                  std::vector<uint8_t> bytes);

  std::vector<uint8_t> serialize() const;
  void write(const std::string& path) const;
};

}  // namespace bitnet
