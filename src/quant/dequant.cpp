#include "quant/dequant.h"

#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "quant/q8_0x.h"
#include "ops/vec.h"

namespace bitnet {
namespace {

inline float load_f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}

}  // namespace

bool dequant_supported(DType t) {
  switch (t) {
    case DType::F32:
    case DType::F16:
    case DType::BF16:
    case DType::Q8_0:
    case DType::Q4_0:
    case DType::Q6_K:
    case DType::Q8_0X:
      return true;
    default:
      return false;
  }
}

void dequantize_row(DType t, const uint8_t* src, int64_t n, float* dst) {
  const int64_t be = dtype_info(t).block_elems, bb = dtype_info(t).block_bytes;
  if (n % be) fail("{} row of {} values is not whole blocks", dtype_name(t), n);
  switch (t) {
    case DType::F32:
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return;
    case DType::F16:
      f16_to_f32_row(reinterpret_cast<const uint16_t*>(src), dst, n);  // rows are 2-byte aligned
      return;
    case DType::BF16:
      bf16_to_f32_row(reinterpret_cast<const uint16_t*>(src), dst, n);
      return;
    case DType::Q8_0:
      for (int64_t b = 0; b < n / be; ++b) {
        const uint8_t* blk = src + b * bb;
        const float d = load_f16(blk);
        for (int j = 0; j < 32; ++j) dst[b * 32 + j] = d * static_cast<float>(static_cast<int8_t>(blk[2 + j]));
      }
      return;
    case DType::Q8_0X:
      for (int64_t s = 0; s < n / be; ++s) {
        const uint8_t* sb = src + s * bb;
        for (int64_t i = 0; i < kQ8xValues; ++i)
          dst[s * kQ8xValues + i] = load_f16(sb + 2 * (i / 32)) *
                                    static_cast<float>(sb[kQ8xScaleBytes + q8x_quant_offset(i)] - 128);
      }
      return;
    case DType::Q4_0:
      for (int64_t b = 0; b < n / be; ++b) {
        const uint8_t* blk = src + b * bb;
        const float d = load_f16(blk);
        for (int j = 0; j < 16; ++j) {
          dst[b * 32 + j] = d * static_cast<float>((blk[2 + j] & 15) - 8);
          dst[b * 32 + j + 16] = d * static_cast<float>((blk[2 + j] >> 4) - 8);
        }
      }
      return;
    case DType::Q6_K:
      for (int64_t b = 0; b < n / be; ++b) {
        const uint8_t* blk = src + b * bb;
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
      return;
    default:
      fail("cannot dequantize type {}", dtype_name(t));
  }
}

}  // namespace bitnet
