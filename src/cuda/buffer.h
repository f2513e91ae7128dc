#pragma once
// An owned device allocation of n elements of T (cudaMalloc / cudaFree), movable, not copyable,
// with synchronous host <-> device copies for setup and tests. No fmt: .cu files may include it.
#include <cstddef>
#include <utility>
#include <vector>

#include "cuda/check.h"

namespace bitnet::cuda {

template <typename T>
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(size_t n) { resize(n); }
  ~Buffer() { release(); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      release();
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }

  // Exactly n elements afterwards; the contents are undefined whenever the size changes (a new
  // allocation), kept otherwise, so a cache resized to the same shape every step costs nothing.
  void resize(size_t n) {
    if (n == n_) return;
    release();
    if (n > 0) BN_CUDA(cudaMalloc(reinterpret_cast<void**>(&p_), n * sizeof(T)));
    n_ = n;
  }

  T* data() { return p_; }
  const T* data() const { return p_; }
  size_t size() const { return n_; }
  size_t bytes() const { return n_ * sizeof(T); }
  bool empty() const { return n_ == 0; }

  // Resizes to n and copies from the host (synchronous).
  void upload(const T* src, size_t n) {
    resize(n);
    if (n > 0) BN_CUDA(cudaMemcpy(p_, src, n * sizeof(T), cudaMemcpyHostToDevice));
  }
  void upload(const std::vector<T>& v) { upload(v.data(), v.size()); }

  // Copies everything to the host; synchronous, so it waits for work queued on the legacy stream
  // (callers using other streams synchronize them first).
  std::vector<T> download() const {
    std::vector<T> v(n_);
    if (n_ > 0) BN_CUDA(cudaMemcpy(v.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost));
    return v;
  }

  // Every byte set to `byte` (0xFF makes a float NaN: tests poison outputs with it).
  void fill_bytes(int byte, cudaStream_t stream = nullptr) {
    if (n_ > 0) BN_CUDA(cudaMemsetAsync(p_, byte, n_ * sizeof(T), stream));
  }

 private:
  // A destructor must not throw: a failing cudaFree (the context already gone at exit) is ignored.
  void release() noexcept {
    if (p_ != nullptr) (void)cudaFree(p_);
    p_ = nullptr;
    n_ = 0;
  }

  T* p_ = nullptr;
  size_t n_ = 0;
};

}  // namespace bitnet::cuda
