#pragma once
// Row dequantization of the high-precision and block-quantized types that embeddings and output
// heads come in (F32, F16, BF16, Q8_0, Q4_0, Q6_K), written as the ggml block layouts:
//
//   Q8_0 (34 bytes / 32 values):  { fp16 d; int8 qs[32]; }           y[j] = d * qs[j]
//   Q4_0 (18 bytes / 32 values):  { fp16 d; uint8 qs[16]; }          y[j] = d * ((qs[j] & 15) - 8),
//                                                                    y[j+16] = d * ((qs[j] >> 4) - 8)
//   Q6_K (210 bytes / 256 values): { uint8 ql[128]; uint8 qh[64]; int8 scales[16]; fp16 d; }
//     for each half h (128 values; ql += 64h, qh += 32h, scales += 8h), l = 0..31, is = l / 16:
//       q1 = (ql[l]    & 15) | ((qh[l] >> 0 & 3) << 4)   -> y[128h + l]      = d * scales[is]     * (q1 - 32)
//       q2 = (ql[l+32] & 15) | ((qh[l] >> 2 & 3) << 4)   -> y[128h + l + 32] = d * scales[is + 2] * (q2 - 32)
//       q3 = (ql[l]    >> 4) | ((qh[l] >> 4 & 3) << 4)   -> y[128h + l + 64] = d * scales[is + 4] * (q3 - 32)
//       q4 = (ql[l+32] >> 4) | ((qh[l] >> 6 & 3) << 4)   -> y[128h + l + 96] = d * scales[is + 6] * (q4 - 32)
//   Q8_0X (ours, 544 bytes / 512 values; quant/q8_0x.h): { fp16 d[16]; uint8 q[8][16][4]; }
//                                    y[32L + 4v + j] = d[L] * (q[v][L][j] - 128)
#include <cstdint>

#include "core/dtype.h"

namespace bitnet {

// Whether dequantize_row supports t (its row in quant/type_traits.h has a dequantize kernel).
bool dequant_supported(DType t);
// Converts one row of n values (n a whole number of blocks) to float; throws for other types.
void dequantize_row(DType t, const uint8_t* src, int64_t n, float* dst);

// The per-type kernels the type table points at: n a whole number of blocks, unchecked.
void dequantize_row_f32(const uint8_t* src, int64_t n, float* dst);
void dequantize_row_f16(const uint8_t* src, int64_t n, float* dst);
void dequantize_row_bf16(const uint8_t* src, int64_t n, float* dst);
void dequantize_row_q8_0(const uint8_t* src, int64_t n, float* dst);
void dequantize_row_q4_0(const uint8_t* src, int64_t n, float* dst);
void dequantize_row_q6_k(const uint8_t* src, int64_t n, float* dst);
void dequantize_row_q8_0x(const uint8_t* src, int64_t n, float* dst);

}  // namespace bitnet
