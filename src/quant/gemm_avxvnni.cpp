// AVX-VNNI variant (VEX-encoded vpdpbusd on ymm: Alder Lake and later, Zen 5).
#define KERNEL_NAME ternary_gemm_avxvnni
#include <immintrin.h>
static inline __m256i dot4(__m256i acc, __m256i u, __m256i x) { return _mm256_dpbusd_avx_epi32(acc, u, x); }
#include "quant/gemm_x86_256.inc"
