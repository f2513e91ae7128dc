#pragma once
// Float rows to the stored types embeddings and heads use: F32, F16, BF16, Q8_0, Q4_0, Q6_K (block
// layouts in dequant.h). The inverse of dequantize_row up to each type's rounding:
//   Q8_0: per 32 values d = max|x| / 127, q = round(x / d)            (ggml's reference rule)
//   Q4_0: per 32 values d = x_maxabs / -8 (signed), q = min(15, trunc(x / d + 8.5))   (likewise)
//   Q6_K: per 16 values a sub-scale s = max|x| / 31, per 256 values d = max(s) / 127 stored as
//         fp16, sub-scales as int8 ceil(s / d), q = clamp(round(x / (d * sub)), -32, 31).
//         (A valid Q6_K encoding; ggml's own quantizer additionally searches scales to lower the
//         error, so our bytes differ from llama-quantize's, not the format.)
#include <cstdint>
#include <vector>

#include "core/dtype.h"

namespace bitnet {

// Whether quantize_rows supports t (its row in quant/type_traits.h has a quantize kernel).
bool quantize_supported(DType t);
// rows x cols floats (row-major) -> the type's bytes; cols must be whole blocks.
std::vector<uint8_t> quantize_rows(DType t, const float* x, int64_t rows, int64_t cols);

// The per-type kernels the type table points at: one row of n values (whole blocks, unchecked).
void quantize_row_f32(const float* x, int64_t n, uint8_t* dst);
void quantize_row_f16(const float* x, int64_t n, uint8_t* dst);
void quantize_row_bf16(const float* x, int64_t n, uint8_t* dst);
void quantize_row_q8_0(const float* x, int64_t n, uint8_t* dst);
void quantize_row_q4_0(const float* x, int64_t n, uint8_t* dst);
void quantize_row_q6_k(const float* x, int64_t n, uint8_t* dst);

}  // namespace bitnet
