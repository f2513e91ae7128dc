#include "quant/dequant.h"

#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "ops/vec.h"
#include "quant/q8_0x.h"
#include "quant/type_traits.h"

namespace bitnet {
namespace {

inline float load_f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}

}  // namespace

void dequantize_row_f32(const uint8_t* src, int64_t n, float* dst) {
  std::memcpy(dst, src, static_cast<size_t>(n) * 4);
}

void dequantize_row_f16(const uint8_t* src, int64_t n, float* dst) {
  f16_to_f32_row(reinterpret_cast<const uint16_t*>(src), dst, n);  // rows are 2-byte aligned
}

void dequantize_row_bf16(const uint8_t* src, int64_t n, float* dst) {
  bf16_to_f32_row(reinterpret_cast<const uint16_t*>(src), dst, n);
}

void dequantize_row_q8_0(const uint8_t* src, int64_t n, float* dst) {
  for (int64_t b = 0; b < n / 32; ++b) {
    const uint8_t* blk = src + b * 34;
    const float d = load_f16(blk);
    for (int j = 0; j < 32; ++j) dst[b * 32 + j] = d * static_cast<float>(static_cast<int8_t>(blk[2 + j]));
  }
}

void dequantize_row_q8_0x(const uint8_t* src, int64_t n, float* dst) {
  for (int64_t s = 0; s < n / kQ8xValues; ++s) {
    const uint8_t* sb = src + s * kQ8xBytes;
    for (int64_t i = 0; i < kQ8xValues; ++i)
      dst[s * kQ8xValues + i] =
          load_f16(sb + 2 * (i / 32)) * static_cast<float>(sb[kQ8xScaleBytes + q8x_quant_offset(i)] - 128);
  }
}

void dequantize_row_q4_0(const uint8_t* src, int64_t n, float* dst) {
  for (int64_t b = 0; b < n / 32; ++b) {
    const uint8_t* blk = src + b * 18;
    const float d = load_f16(blk);
    for (int j = 0; j < 16; ++j) {
      dst[b * 32 + j] = d * static_cast<float>((blk[2 + j] & 15) - 8);
      dst[b * 32 + j + 16] = d * static_cast<float>((blk[2 + j] >> 4) - 8);
    }
  }
}

void dequantize_row_q6_k(const uint8_t* src, int64_t n, float* dst) {
  for (int64_t b = 0; b < n / 256; ++b) {
    const uint8_t* blk = src + b * 210;
    const float d = load_f16(blk + 208);
    float* y = dst + b * 256;
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = blk + 64 * h;
      const uint8_t* qh = blk + 128 + 32 * h;
      const int8_t* sc = reinterpret_cast<const int8_t*>(blk + 192) + 8 * h;
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 15) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[128 * h + l] = d * static_cast<float>(sc[is]) * static_cast<float>(q1);
        y[128 * h + l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
        y[128 * h + l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
        y[128 * h + l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
      }
    }
  }
}

bool dequant_supported(DType t) {
  return type_traits(t).dequantize != nullptr;
}

void dequantize_row(DType t, const uint8_t* src, int64_t n, float* dst) {
  const TypeTraits& r = type_traits(t);
  if (n % r.info.block_elems) fail("{} row of {} values is not whole blocks", dtype_name(t), n);
  if (!r.dequantize) fail("cannot dequantize type {}", dtype_name(t));
  r.dequantize(src, n, dst);
}

}  // namespace bitnet
