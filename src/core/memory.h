#pragma once
// 64-byte aligned allocation (one cache line; also the width of an AVX-512 register, so aligned
// loads never split a line) with process-wide accounting of live and peak bytes.
#include <cstddef>
#include <cstdint>
#include <utility>

namespace bitnet {

inline constexpr size_t kAlign = 64;

inline constexpr size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

void* aligned_alloc_bytes(size_t bytes);  // throws bitnet::Error when the system refuses
void aligned_free_bytes(void* p, size_t bytes);

struct MemoryStats {
  size_t live_bytes;
  size_t peak_bytes;
  uint64_t allocations;  // number of aligned_alloc_bytes calls so far
};
MemoryStats memory_stats();
// The process's peak resident set size so far (getrusage), in bytes; 0 where unavailable.
size_t peak_rss_bytes();
// The machine's physical memory in bytes (sysconf); 0 where unavailable.
size_t physical_memory_bytes();
void reset_peak_memory();

// Owning, move-only aligned byte buffer, zero-initialized unless asked not to be (an untouched
// large buffer costs no resident memory until written).
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t bytes, bool zero = true);
  ~AlignedBuffer() { reset(); }
  AlignedBuffer(AlignedBuffer&& o) noexcept
      : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept {
    if (this != &o) {
      reset();
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;

  void reset();
  uint8_t* data() { return static_cast<uint8_t*>(p_); }
  const uint8_t* data() const { return static_cast<const uint8_t*>(p_); }
  template <typename T>
  T* as() { return static_cast<T*>(p_); }
  template <typename T>
  const T* as() const { return static_cast<const T*>(p_); }
  size_t size() const { return n_; }

 private:
  void* p_ = nullptr;
  size_t n_ = 0;
};

}  // namespace bitnet
