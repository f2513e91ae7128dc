#pragma once
// A tensor is a typed, shaped view of bytes. Shapes are row-major with the innermost (contiguous)
// dimension last, as in numpy and safetensors (GGUF lists dimensions innermost-first; its reader
// reverses them). Storage is either owned (a 64-byte aligned buffer) or borrowed (a slice of an
// mmap'd file, kept alive by `owner`). Rows are contiguous; views select ranges of the outermost
// dimension or reshape, without copying. Packed types are addressed by whole rows only.
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace bitnet {

class Tensor {
 public:
  Tensor() = default;
  // Owning, zero-filled (or, with zero = false, left as allocated: for a caller that writes every
  // byte, so the pages are touched once).
  static Tensor empty(DType t, std::vector<int64_t> shape, std::string name = {}, bool zero = true);
  // Borrowed: `data` must hold nbytes(t, shape) bytes and stay valid while `owner` lives.
  static Tensor borrow(DType t, std::vector<int64_t> shape, const void* data,
                       std::shared_ptr<const void> owner, std::string name = {});

  DType dtype() const { return dtype_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const;  // negative i counts from the end
  int64_t numel() const;
  int64_t rows() const;  // product of all but the innermost dimension (1 for rank 0/1)
  int64_t cols() const { return shape_.empty() ? 1 : shape_.back(); }
  size_t row_stride_bytes() const { return row_bytes(dtype_, cols()); }
  size_t nbytes() const;  // including a per-tensor trailer (I2_S)
  const std::string& name() const { return name_; }
  void set_name(std::string n) { name_ = std::move(n); }
  bool owns_data() const { return owns_; }

  const uint8_t* data() const { return data_; }
  uint8_t* mutable_data();  // owned tensors only (CHECKed)
  template <typename T>
  const T* data_as() const { return reinterpret_cast<const T*>(data_); }
  template <typename T>
  T* mutable_data_as() { return reinterpret_cast<T*>(mutable_data()); }

  // Rows [begin, end) of the outermost dimension (shares storage). Not for I2_S (its scale trailer
  // belongs to the whole tensor).
  Tensor slice(int64_t begin, int64_t end) const;
  // Same bytes, new shape with the same number of elements and innermost-dimension blocks.
  Tensor reshape(std::vector<int64_t> shape) const;

  static size_t nbytes(DType t, const std::vector<int64_t>& shape);

 private:
  DType dtype_ = DType::F32;
  std::vector<int64_t> shape_;
  const uint8_t* data_ = nullptr;
  std::shared_ptr<const void> owner_;
  bool owns_ = false;
  std::string name_;
};

std::string shape_str(const std::vector<int64_t>& shape);

}  // namespace bitnet
