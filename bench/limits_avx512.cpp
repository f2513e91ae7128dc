// 12 independent vpdpbusd chains: enough to cover the instruction's latency on current cores, so
// the loop runs at the issue rate (the peak int8 multiply-accumulate rate of AVX-512 VNNI).
#include <immintrin.h>

#include <cstdint>

#include "quant/stream_prefetch.h"

namespace bitnet {

double vnni_peak_macs_per_call() {
  return 12.0 * 64.0;
}

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

// Byte-table lookups beside the multiplies: what a lookup-table ternary product (T-MAC style:
// vpshufb over precomputed sums of activations) would run to need fewer vpdpbusd per weight. Each
// iteration issues 12 vpdpbusd (as vnni_peak_kernel) and 6 lookup blocks (two vpshufb, a vpsubb and
// a vpaddb: two 16-entry tables indexed by 64 bytes, their difference accumulated), all independent.
// with_vnni false: the lookup blocks alone. Written in assembly with fixed registers: as intrinsics
// the compiler keeps the index vectors in memory.
#define BN_VNNI(i) "vpdpbusd %%zmm1, %%zmm0, %%zmm" #i "\n\t"
#define BN_LUT(i, j)                                         \
  "vpshufb %%zmm" #j ", %%zmm2, %%zmm30\n\tvpshufb %%zmm" #j \
  ", %%zmm3, %%zmm31\n\t"                                    \
  "vpsubb %%zmm31, %%zmm30, %%zmm30\n\tvpaddb %%zmm30, %%zmm" #i ", %%zmm" #i "\n\t"
void vnni_lut_kernel(int64_t iters, bool with_vnni) {
  if (iters <= 0) return;
  if (with_vnni) {
    __asm__ volatile(
        "vpternlogd $0xff, %%zmm0, %%zmm0, %%zmm0\n\tvpabsb %%zmm0, %%zmm1\n\tvmovdqa64 %%zmm1, %%zmm2\n\t"
        "vpaddb %%zmm1, %%zmm1, %%zmm3\n\t"
        "1:\n\t" BN_VNNI(4) BN_LUT(16, 22) BN_VNNI(5) BN_VNNI(6) BN_LUT(17, 23) BN_VNNI(7) BN_VNNI(8)
            BN_LUT(18, 24) BN_VNNI(9) BN_VNNI(10) BN_LUT(19, 25) BN_VNNI(11) BN_VNNI(12) BN_LUT(20, 26)
                BN_VNNI(13) BN_VNNI(14) BN_LUT(21, 27) BN_VNNI(15) "dec %0\n\tjnz 1b"
        : "+r"(iters)
        :
        : "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",
          "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21",
          "xmm30", "xmm31");
  } else {
    __asm__ volatile(
        "vpternlogd $0xff, %%zmm2, %%zmm2, %%zmm2\n\tvpabsb %%zmm2, %%zmm2\n\tvpaddb %%zmm2, %%zmm2, "
        "%%zmm3\n\t"
        "1:\n\t" BN_LUT(16, 22) BN_LUT(17, 23) BN_LUT(18, 24) BN_LUT(19, 25) BN_LUT(20, 26)
            BN_LUT(21, 27) "dec %0\n\tjnz 1b"
        : "+r"(iters)
        :
        : "memory", "xmm2", "xmm3", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm30", "xmm31");
  }
}
#undef BN_VNNI
#undef BN_LUT

}  // namespace bitnet
