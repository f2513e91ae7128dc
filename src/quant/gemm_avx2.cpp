// AVX2 variant: vpmaddubsw (u8 codes x s8 activations, exact 16-bit pair sums <= 512) then
// vpmaddwd against ones to widen to 32 bits.
#define KERNEL_NAME ternary_gemm_avx2
#include <immintrin.h>
static inline __m256i dot4(__m256i acc, __m256i u, __m256i x) {
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), _mm256_set1_epi16(1)));
}
#include "quant/gemm_x86_256.inc"
