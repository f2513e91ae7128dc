// AVX-512 VNNI variant: one vpdpbusd per 64 multiply-adds.
#define KERNEL_NAME ternary_gemm_avx512vnni
#include <immintrin.h>
static inline __m512i dot4(__m512i acc, __m512i u, __m512i x) { return _mm512_dpbusd_epi32(acc, u, x); }
// The same, accumulating in place (a macro, so that the GEMV's accumulators can be register
// variables named in the asm operands). In the GEMV loop GCC 12 wrapped each intrinsic vpdpbusd in
// two register copies: 8 extra moves among 30 instructions per 64 weight bytes. Measured: GEMV
// unchanged within noise on dev and spr, decode +3 % on spr (two interleaved rounds).
#define DOT4_TO(acc, u, x) asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(u), "v"(x))
#define GEMV_ACC(name, reg) register __m512i name asm(reg) = _mm512_setzero_si512()
#include "quant/gemm_avx512.inc"
