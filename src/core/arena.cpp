#include "core/arena.h"

#include <algorithm>

namespace bitnet {

Arena::Arena(size_t initial_bytes) {
  if (initial_bytes) {
    blocks_.emplace_back(round_up(initial_bytes, kAlign), false);
    ++block_allocations_;
  }
}

void* Arena::alloc_bytes(size_t bytes) {
  const size_t n = round_up(bytes == 0 ? 1 : bytes, kAlign);
  if (blocks_.empty() || offset_ + n > blocks_.back().size()) {
    // Blocks are not zeroed: the arena hands out uninitialized memory, and pages never written
    // (the unused tail of a block) then cost no resident memory.
    const size_t grow = std::max(n, blocks_.empty() ? size_t{1} << 20 : blocks_.back().size());
    blocks_.emplace_back(grow, false);
    ++block_allocations_;
    offset_ = 0;
  }
  void* p = blocks_.back().data() + offset_;
  offset_ += n;
  used_total_ += n;
  high_water_ = std::max(high_water_, used_total_);
  return p;
}

void Arena::reset() {
  if (blocks_.size() > 1) {
    // Replace the chain by one block big enough for the largest step seen.
    blocks_.clear();
    blocks_.emplace_back(round_up(high_water_, kAlign), false);
    ++block_allocations_;
  }
  offset_ = 0;
  used_total_ = 0;
}

size_t Arena::capacity() const {
  size_t c = 0;
  for (const auto& b : blocks_) c += b.size();
  return c;
}

}  // namespace bitnet
