// 12 independent vpdpbusd chains: enough to cover the instruction's latency on current cores, so
// the loop runs at the issue rate (the peak int8 multiply-accumulate rate of AVX-512 VNNI).
#include <immintrin.h>

#include <cstdint>

#include "quant/stream_prefetch.h"

namespace bitnet {

double vnni_peak_macs_per_call() { return 12.0 * 64.0; }

// Sum of a buffer with 64-byte loads, 4 independent accumulators: a pure sequential read stream
// like the decode GEMV's (which reads each weight once).
// prefetch: the decode streams' two-level software prefetch (stream_prefetch.h) on every line, so
// the probe is not below what the kernels themselves can pull (on Sapphire Rapids the hardware
// prefetchers alone keep fewer lines in flight).
uint64_t read_stream_avx512(const uint8_t* p, size_t bytes, bool prefetch) {
  __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
  if (prefetch)
    for (size_t i = 0; i + 256 <= bytes; i += 256) {
      for (int l = 0; l < 4; ++l) prefetch_stream(p + i + 64 * l);
      s0 = _mm512_add_epi64(s0, _mm512_load_si512(p + i));
      s1 = _mm512_add_epi64(s1, _mm512_load_si512(p + i + 64));
      s2 = _mm512_add_epi64(s2, _mm512_load_si512(p + i + 128));
      s3 = _mm512_add_epi64(s3, _mm512_load_si512(p + i + 192));
    }
  else
    for (size_t i = 0; i + 256 <= bytes; i += 256) {
      s0 = _mm512_add_epi64(s0, _mm512_load_si512(p + i));
      s1 = _mm512_add_epi64(s1, _mm512_load_si512(p + i + 64));
      s2 = _mm512_add_epi64(s2, _mm512_load_si512(p + i + 128));
      s3 = _mm512_add_epi64(s3, _mm512_load_si512(p + i + 192));
    }
  return static_cast<uint64_t>(
      _mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_add_epi64(s0, s1), _mm512_add_epi64(s2, s3))));
}

uint64_t vnni_peak_kernel(int64_t iters) {
  // Distinct starting values and opaque operands: with equal chains GCC merges all twelve into one
  // dependent chain (which then measures 12 x the latency-bound rate, not the issue rate).
  __m512i a0 = _mm512_set1_epi32(0), a1 = _mm512_set1_epi32(1), a2 = _mm512_set1_epi32(2),
          a3 = _mm512_set1_epi32(3), a4 = _mm512_set1_epi32(4), a5 = _mm512_set1_epi32(5),
          a6 = _mm512_set1_epi32(6), a7 = _mm512_set1_epi32(7), a8 = _mm512_set1_epi32(8),
          a9 = _mm512_set1_epi32(9), a10 = _mm512_set1_epi32(10), a11 = _mm512_set1_epi32(11);
  __m512i x = _mm512_set1_epi8(1), y = _mm512_set1_epi8(2);
  __asm__("" : "+v"(x), "+v"(y));
  for (int64_t i = 0; i < iters; ++i) {
    a0 = _mm512_dpbusd_epi32(a0, x, y);
    a1 = _mm512_dpbusd_epi32(a1, x, y);
    a2 = _mm512_dpbusd_epi32(a2, x, y);
    a3 = _mm512_dpbusd_epi32(a3, x, y);
    a4 = _mm512_dpbusd_epi32(a4, x, y);
    a5 = _mm512_dpbusd_epi32(a5, x, y);
    a6 = _mm512_dpbusd_epi32(a6, x, y);
    a7 = _mm512_dpbusd_epi32(a7, x, y);
    a8 = _mm512_dpbusd_epi32(a8, x, y);
    a9 = _mm512_dpbusd_epi32(a9, x, y);
    a10 = _mm512_dpbusd_epi32(a10, x, y);
    a11 = _mm512_dpbusd_epi32(a11, x, y);
  }
  __m512i r = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3)),
                               _mm512_add_epi32(_mm512_add_epi32(a4, a5), _mm512_add_epi32(a6, a7)));
  r = _mm512_add_epi32(r, _mm512_add_epi32(_mm512_add_epi32(a8, a9), _mm512_add_epi32(a10, a11)));
  return static_cast<uint64_t>(static_cast<uint32_t>(_mm512_reduce_add_epi32(r)));
}

}  // namespace bitnet
