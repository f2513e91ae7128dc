// AVX-512 VNNI variant for CPUs with GFNI as well (Ice Lake and later, Zen 4 and later): the
// same kernels, with the small-batch paths' 2-bit planes taken by gf2p8affineqb (planes4 in
// gemm_avx512.inc). Same results bit for bit.
#define KERNEL_NAME ternary_gemm_avx512vnni_gfni
#define BITNET_PLANES_GFNI 1
#include "quant/gemm_avx512vnni.inc"
