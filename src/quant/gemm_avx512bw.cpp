// AVX-512BW variant for CPUs without VNNI (Skylake-X): vpmaddubsw + vpmaddwd per 64 products.
#define KERNEL_NAME ternary_gemm_avx512bw
#include <immintrin.h>
static inline __m512i dot4(__m512i acc, __m512i u, __m512i x) {
  // Exact: codes <= 128 (the GEMV's masked planes) give pair sums in [-32768, 32512].
  const __m512i pairs = _mm512_maddubs_epi16(u, x);
  return _mm512_add_epi32(acc, _mm512_madd_epi16(pairs, _mm512_set1_epi16(1)));
}
#define DOT4_TO(acc, u, x) acc = dot4(acc, u, x)
#define GEMV_ACC(name, reg) __m512i name = _mm512_setzero_si512()
#include "quant/gemm_avx512.inc"
