#pragma once
// Bump allocator for per-step activations. reset() rewinds it; memory is kept, so after the first
// step of a given shape the arena performs no further allocations (steady state). When a step needs
// more than the current capacity, one new block is added; after the next reset() the blocks are
// merged into one block of the high-water size, so the following steps again allocate nothing.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/memory.h"

namespace bitnet {

class Arena {
 public:
  explicit Arena(size_t initial_bytes = 0);

  // 64-byte aligned, uninitialized; valid until the next reset().
  void* alloc_bytes(size_t bytes);
  template <typename T>
  T* alloc(size_t count) {
    return static_cast<T*>(alloc_bytes(count * sizeof(T)));
  }

  void reset();
  size_t used() const { return used_total_; }
  size_t high_water() const { return high_water_; }
  size_t capacity() const;
  uint64_t block_allocations() const { return block_allocations_; }

 private:
  std::vector<AlignedBuffer> blocks_;
  size_t offset_ = 0;  // into blocks_.back()
  size_t used_total_ = 0;
  size_t high_water_ = 0;
  uint64_t block_allocations_ = 0;
};

}  // namespace bitnet
