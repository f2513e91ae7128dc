#pragma once
// safetensors (Hugging Face) reader and a small writer.
//
// File layout: u64 N (little-endian) | N bytes of UTF-8 JSON | data buffer. The JSON is an object:
//   { "__metadata__": { "key": "value", ... },          (optional, string -> string)
//     "tensor name": { "dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end] }, ... }
// with offsets relative to the data buffer. As in the reference implementation, the tensors must
// tile the data buffer exactly: no overlap, no gap, no trailing bytes, and end - begin must equal
// the shape's element count times the dtype's size. Every check runs before anything is touched,
// so a truncated or hostile file gives a bitnet::Error naming the file and tensor.
//
// Tensors are borrowed from the mapping. Their data is only as aligned as the writer made it
// (the header length is usually a multiple of 8): copy before reading a type wider than that.
//
// Multi-file models: `model.safetensors.index.json` holds { "weight_map": { tensor: shard } };
// SafetensorsModel opens every shard it names (relative to the index's folder) and checks that
// each tensor lives where the map says.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"

namespace bitnet {

// Bytes per element of a safetensors dtype ("F32", "BF16", "U8", ...); nullopt when unknown or
// sub-byte (F4, F6_*), which we do not read.
std::optional<size_t> safetensors_dtype_size(std::string_view dtype);
// Our DType for a safetensors dtype: F32, F16, BF16, I8, I32; U8 maps to I8 (same bytes, read the
// values as uint8_t). nullopt for the rest (they can be listed but not borrowed as Tensor).
std::optional<DType> dtype_from_safetensors(std::string_view dtype);
std::optional<std::string_view> safetensors_from_dtype(DType t);

struct SafetensorsTensorInfo {
  std::string name;
  std::string dtype;             // as written in the file
  std::vector<int64_t> shape;    // outermost first
  uint64_t begin = 0, end = 0;   // relative to the data buffer
  size_t nbytes() const { return static_cast<size_t>(end - begin); }
};

class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::string& path);
  static SafetensorsFile parse(std::shared_ptr<const void> owner, const uint8_t* data, size_t size,
                               std::string name);

  const std::string& name() const { return name_; }
  size_t data_offset() const { return data_offset_; }  // 8 + header length
  size_t file_size() const { return size_; }
  // __metadata__ entries, sorted by key.
  const std::vector<std::pair<std::string, std::string>>& metadata() const { return metadata_; }
  // Tensors in data order.
  const std::vector<SafetensorsTensorInfo>& tensors() const { return tensors_; }
  const SafetensorsTensorInfo* find_tensor(std::string_view name) const;
  Tensor tensor(std::string_view name) const;  // throws naming the tensor (absent or unsupported)
  Tensor tensor(const SafetensorsTensorInfo& info) const;
  const uint8_t* tensor_data(const SafetensorsTensorInfo& info) const {
    return data_ + data_offset_ + info.begin;
  }

 private:
  std::string name_;
  std::shared_ptr<const void> owner_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  size_t data_offset_ = 0;
  std::vector<std::pair<std::string, std::string>> metadata_;
  std::vector<SafetensorsTensorInfo> tensors_;
  std::unordered_map<std::string, size_t> index_;
};

// One file, or all shards of an index.
struct SafetensorsModel {
  // `path`: a .safetensors file, a model.safetensors.index.json, or a folder holding either.
  static SafetensorsModel open(const std::string& path);
  // Reads a model.safetensors.index.json and opens the shards it names (relative to its folder).
  static SafetensorsModel open_index(const std::string& index_path);

  std::vector<SafetensorsFile> files;
  std::vector<std::pair<std::string, std::string>> index_metadata;  // the index's "metadata"

  const SafetensorsTensorInfo* find_tensor(std::string_view name) const;
  const SafetensorsFile* file_of(std::string_view name) const;
  Tensor tensor(std::string_view name) const;
  std::vector<std::string> tensor_names() const;  // sorted
  size_t tensor_count() const { return where_.size(); }

 private:
  std::unordered_map<std::string, std::pair<size_t, size_t>> where_;  // name -> (file, tensor)
  void add_file(SafetensorsFile f);
};

struct SafetensorsWriter {
  std::vector<std::pair<std::string, std::string>> metadata;
  struct Item {
    std::string name;
    std::string dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
  };
  std::vector<Item> tensors;  // written in this order

  void add_tensor(const Tensor& t, std::string name = {});  // name defaults to t.name()
  void add_tensor(std::string name, std::string dtype, std::vector<int64_t> shape,
                  std::vector<uint8_t> bytes);
  std::vector<uint8_t> serialize() const;  // header padded with spaces to a multiple of 8
  void write(const std::string& path) const;
};

}  // namespace bitnet
