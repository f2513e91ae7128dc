// AVX-512 VNNI variant: one vpdpbusd per 64 multiply-adds.
#define KERNEL_NAME ternary_gemm_avx512vnni
#include <immintrin.h>
static inline __m512i dot4(__m512i acc, __m512i u, __m512i x) { return _mm512_dpbusd_epi32(acc, u, x); }
#include "quant/gemm_avx512.inc"
