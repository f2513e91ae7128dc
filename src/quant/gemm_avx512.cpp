// AVX-512 VNNI variant: one vpdpbusd per 64 multiply-adds.
#define KERNEL_NAME ternary_gemm_avx512vnni
#include "quant/gemm_avx512vnni.inc"
