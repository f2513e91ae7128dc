#pragma once
// Software prefetch for the decode read streams (ternary GEMV, output head); x86 only.
//
// One core's share of decode bandwidth is set by how many cache-line misses it keeps in flight.
// Prefetching into L1 (T0) alone holds one of the core's few L1 fill buffers per line for the
// whole DRAM latency; a second prefetch far ahead into L2 (T1) starts the DRAM reads early out of
// the L2's deeper miss queue, and the near T0 prefetch then finds the line in L2. Measured on the
// device's Sapphire Rapids (bench_gemv_lab, 2 threads, the 2B4T decode sequence, one lease):
// none 11.7 GB/s, 1 KiB T0 13.8, 2 KiB T0 (the previous setting) 17.3, 4 KiB T0 17.8,
// 4 KiB T1 18.2, 1 KiB T0 + 4 KiB T1 19.7, 1 KiB T0 + 8 KiB T1 20.3 (read probe 21 - 24).
// A prefetch past the end of a buffer never faults.
#include <immintrin.h>

#include <cstdint>

namespace bitnet {

inline constexpr int64_t kStreamPrefetchL1 = 1024;
inline constexpr int64_t kStreamPrefetchL2 = 8192;

// Call once per 64-byte line read at p. L1 = false leaves the near prefetch out: on Zen 5 (dev,
// bench_gemv_lab, 2 threads) the GEMV streamed 34 - 38 GB/s with it and 38 - 41 with the L2 one
// alone (its own prefetchers fill L1 well), while on Sapphire Rapids the L2 one alone lost 8 %.
template <bool L1 = true>
inline void prefetch_stream(const uint8_t* p) {
  if constexpr (L1) _mm_prefetch(reinterpret_cast<const char*>(p + kStreamPrefetchL1), _MM_HINT_T0);
  _mm_prefetch(reinterpret_cast<const char*>(p + kStreamPrefetchL2), _MM_HINT_T1);
}

// At the start of a stream of `bytes` at p: the lines the in-loop L2 prefetch will never cover
// (its first kStreamPrefetchL2 bytes), so a short stream (a decode GEMV's chunk of rows is
// 100 - 550 KB on the 2B4T) does not start on demand misses alone.
inline void prefetch_stream_start(const uint8_t* p, int64_t bytes) {
  const int64_t end = bytes < kStreamPrefetchL2 ? bytes : kStreamPrefetchL2;
  for (int64_t off = kStreamPrefetchL1; off < end; off += 64)
    _mm_prefetch(reinterpret_cast<const char*>(p + off), _MM_HINT_T1);
}

}  // namespace bitnet
