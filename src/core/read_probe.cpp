#include "core/read_probe.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <vector>

#include "core/thread_pool.h"

namespace bitnet {
namespace {

// Four independent 16-byte accumulators per 64 bytes (GCC/clang vector types: SSE2 or NEON
// loads, no ISA-specific build); the xor keeps every load live without a chain longer than the
// loads' own. (A plain uint64 loop compiled to stack round trips and read at half the speed.)
// PF: the lines are prefetched as the decode streams prefetch theirs (quant/stream_prefetch.h):
// far ahead into L2, near into L1.
using V16 = uint64_t __attribute__((vector_size(16)));
template <bool PF>
uint64_t read_range(const uint8_t* p, size_t n) {
  V16 a0 = {}, a1 = {}, a2 = {}, a3 = {};
  size_t i = 0;
  if constexpr (PF)
    for (size_t o = 1024; o < 8192 && o < n; o += 64) __builtin_prefetch(p + o, 0, 2);  // the stream's start
  for (; i + 64 <= n; i += 64) {
    if constexpr (PF) {
      __builtin_prefetch(p + i + 1024, 0, 3);  // T0; past the end of a range it never faults
      __builtin_prefetch(p + i + 8192, 0, 2);  // T1
    }
    V16 w0, w1, w2, w3;
    std::memcpy(&w0, p + i, 16);
    std::memcpy(&w1, p + i + 16, 16);
    std::memcpy(&w2, p + i + 32, 16);
    std::memcpy(&w3, p + i + 48, 16);
    a0 ^= w0;
    a1 ^= w1;
    a2 ^= w2;
    a3 ^= w3;
  }
  const V16 a = a0 ^ a1 ^ a2 ^ a3;
  uint64_t r = a[0] ^ a[1];
  for (; i < n; ++i) r ^= p[i];
  return r;
}

}  // namespace

double timed_read(ThreadPool& pool, std::span<const std::span<const uint8_t>> ranges, bool prefetch) {
  constexpr size_t kChunk = size_t{256} << 10;
  struct Piece {
    const uint8_t* p;
    size_t n;
  };
  std::vector<Piece> pieces;
  for (const auto& r : ranges)
    for (size_t o = 0; o < r.size(); o += kChunk)
      pieces.push_back({r.data() + o, std::min(kChunk, r.size() - o)});
  std::atomic<uint64_t> sink{0};
  const auto t0 = std::chrono::steady_clock::now();
  pool.parallel_for_dynamic(static_cast<int64_t>(pieces.size()), 1, [&](int64_t b, int64_t e) {
    uint64_t x = 0;
    for (int64_t i = b; i < e; ++i) {
      const Piece& q = pieces[static_cast<size_t>(i)];
      x ^= prefetch ? read_range<true>(q.p, q.n) : read_range<false>(q.p, q.n);
    }
    sink.fetch_xor(x, std::memory_order_relaxed);
  });
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (sink.load() == 0x5eed5eed5eed5eedull)
    std::atomic_signal_fence(std::memory_order_seq_cst);  // keeps the reads
  return s;
}

}  // namespace bitnet
