#include "core/tensor.h"

#include "core/error.h"
#include "core/memory.h"

namespace bitnet {

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

size_t Tensor::nbytes(DType t, const std::vector<int64_t>& shape) {
  int64_t rows = 1;
  for (size_t i = 0; i + 1 < shape.size(); ++i) {
    if (shape[i] < 0) fail("negative dimension in shape {}", shape_str(shape));
    rows *= shape[i];
  }
  const int64_t cols = shape.empty() ? 1 : shape.back();
  const size_t rb = row_bytes(t, cols);
  if (rows != 0 && rb > SIZE_MAX / static_cast<size_t>(rows))
    fail("shape {} of {} overflows", shape_str(shape), dtype_name(t));
  return rb * static_cast<size_t>(rows) + dtype_info(t).tensor_trailer_bytes;
}

Tensor Tensor::empty(DType t, std::vector<int64_t> shape, std::string name, bool zero) {
  Tensor x;
  x.dtype_ = t;
  const size_t n = nbytes(t, shape);
  x.shape_ = std::move(shape);
  auto buf = std::make_shared<AlignedBuffer>(n, zero);
  x.data_ = buf->data();
  x.owner_ = buf;
  x.owns_ = true;
  x.name_ = std::move(name);
  return x;
}

Tensor Tensor::borrow(DType t, std::vector<int64_t> shape, const void* data,
                      std::shared_ptr<const void> owner, std::string name) {
  Tensor x;
  x.dtype_ = t;
  nbytes(t, shape);  // validates
  x.shape_ = std::move(shape);
  x.data_ = static_cast<const uint8_t*>(data);
  x.owner_ = std::move(owner);
  x.name_ = std::move(name);
  return x;
}

int64_t Tensor::dim(int i) const {
  const int r = rank();
  if (i < 0) i += r;
  BN_CHECK(i >= 0 && i < r, "dim {} of rank-{} tensor", i, r);
  return shape_[static_cast<size_t>(i)];
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (auto d : shape_) n *= d;
  return n;
}

int64_t Tensor::rows() const {
  int64_t n = 1;
  for (size_t i = 0; i + 1 < shape_.size(); ++i) n *= shape_[i];
  return n;
}

size_t Tensor::nbytes() const { return nbytes(dtype_, shape_); }

uint8_t* Tensor::mutable_data() {
  BN_CHECK(owns_, "tensor '{}' borrows read-only storage", name_);
  return const_cast<uint8_t*>(data_);
}

Tensor Tensor::slice(int64_t begin, int64_t end) const {
  BN_CHECK(rank() >= 1 && 0 <= begin && begin <= end && end <= shape_[0], "slice [{}, {}) of {}",
           begin, end, shape_str(shape_));
  BN_CHECK(dtype_info(dtype_).tensor_trailer_bytes == 0, "cannot slice a {} tensor",
           dtype_name(dtype_));
  Tensor x = *this;
  int64_t inner_rows = 1;
  for (size_t i = 1; i + 1 < shape_.size(); ++i) inner_rows *= shape_[i];
  size_t per_outer;
  if (rank() == 1) {
    BN_CHECK(dtype_info(dtype_).block_elems == 1, "element slice of a packed vector");
    per_outer = dtype_info(dtype_).block_bytes;
  } else {
    per_outer = row_stride_bytes() * static_cast<size_t>(inner_rows);
  }
  x.data_ = data_ + per_outer * static_cast<size_t>(begin);
  x.shape_[0] = end - begin;
  return x;
}

Tensor Tensor::reshape(std::vector<int64_t> shape) const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  if (n != numel()) fail("cannot reshape {} to {}", shape_str(shape_), shape_str(shape));
  Tensor x = *this;
  x.shape_ = std::move(shape);
  nbytes(x.dtype_, x.shape_);  // the new innermost dimension must hold whole blocks
  return x;
}

}  // namespace bitnet
