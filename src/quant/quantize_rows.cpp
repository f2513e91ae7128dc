#include "quant/quantize_rows.h"

#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "quant/type_traits.h"

namespace bitnet {
namespace {

void put_f16(uint8_t* p, float v) {
  const uint16_t h = f32_to_f16(v);
  std::memcpy(p, &h, 2);
}

}  // namespace

void quantize_row_f32(const float* x, int64_t n, uint8_t* dst) {
  std::memcpy(dst, x, static_cast<size_t>(n) * 4);
}

void quantize_row_f16(const float* x, int64_t n, uint8_t* dst) {
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t h = f32_to_f16(x[i]);
    std::memcpy(dst + 2 * i, &h, 2);
  }
}

void quantize_row_bf16(const float* x, int64_t n, uint8_t* dst) {
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t h = f32_to_bf16(x[i]);
    std::memcpy(dst + 2 * i, &h, 2);
  }
}

void quantize_row_q8_0(const float* x, int64_t n, uint8_t* dst) {
  for (int64_t b = 0; b < n / 32; ++b, dst += 34) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
    const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
    put_f16(dst, d);
    for (int j = 0; j < 32; ++j)
      dst[2 + j] = static_cast<uint8_t>(
          static_cast<int8_t>(std::clamp(std::nearbyint(x[b * 32 + j] * id), -127.0f, 127.0f)));
  }
}

// ggml's reference rule: d = (the value of largest magnitude) / -8, q = min(15, trunc(x / d + 8.5)).
void quantize_row_q4_0(const float* x, int64_t n, uint8_t* dst) {
  for (int64_t b = 0; b < n / 32; ++b, dst += 18) {
    const float* v = x + b * 32;
    float amax = 0, mx = 0;
    for (int j = 0; j < 32; ++j)
      if (std::fabs(v[j]) > amax) amax = std::fabs(v[j]), mx = v[j];
    const float d = mx / -8.0f, id = d != 0 ? 1.0f / d : 0.0f;
    put_f16(dst, d);
    for (int j = 0; j < 16; ++j) {
      const int a = std::min(15, static_cast<int>(static_cast<int8_t>(v[j] * id + 8.5f)));
      const int c = std::min(15, static_cast<int>(static_cast<int8_t>(v[j + 16] * id + 8.5f)));
      dst[2 + j] = static_cast<uint8_t>(a | c << 4);
    }
  }
}

void quantize_row_q6_k(const float* x, int64_t n, uint8_t* dst) {
  for (int64_t b = 0; b < n / 256; ++b, dst += 210) {
    const float* v = x + b * 256;
    float sub[16], smax = 0;
    for (int s = 0; s < 16; ++s) {
      float amax = 0;
      for (int j = 0; j < 16; ++j) amax = std::max(amax, std::fabs(v[16 * s + j]));
      sub[s] = amax / 31.0f;
      smax = std::max(smax, sub[s]);
    }
    std::memset(dst, 0, 210);
    const float d = smax / 127.0f;
    const float d16 = f16_to_f32(f32_to_f16(d));  // the d the reader will see
    int8_t* scales = reinterpret_cast<int8_t*>(dst + 192);
    int q[256];
    for (int s = 0; s < 16; ++s) {
      // Rounding the sub-scale up keeps |x| / step <= 31, so no value needs clamping.
      const int sc = d16 != 0 ? static_cast<int>(std::min(std::ceil(sub[s] / d16), 127.0f)) : 0;
      scales[s] = static_cast<int8_t>(sc);
      const float step = d16 * static_cast<float>(sc);
      for (int j = 0; j < 16; ++j)
        q[16 * s + j] =
            step != 0 ? static_cast<int>(std::clamp(std::nearbyint(v[16 * s + j] / step), -32.0f, 31.0f)) : 0;
    }
    for (int h = 0; h < 2; ++h) {
      uint8_t* ql = dst + 64 * h;
      uint8_t* qh = dst + 128 + 32 * h;
      for (int l = 0; l < 32; ++l) {
        const int q1 = q[128 * h + l] + 32, q2 = q[128 * h + l + 32] + 32;
        const int q3 = q[128 * h + l + 64] + 32, q4 = q[128 * h + l + 96] + 32;
        ql[l] = static_cast<uint8_t>((q1 & 15) | (q3 & 15) << 4);
        ql[l + 32] = static_cast<uint8_t>((q2 & 15) | (q4 & 15) << 4);
        qh[l] = static_cast<uint8_t>((q1 >> 4) | (q2 >> 4) << 2 | (q3 >> 4) << 4 | (q4 >> 4) << 6);
      }
    }
    put_f16(dst + 208, d);
  }
}

bool quantize_supported(DType t) {
  return type_traits(t).quantize != nullptr;
}

namespace {

// The largest |value| a type stores without an infinity: its own range (F16), or where the block
// scale it keeps as fp16 would pass fp16's largest value (65504). 0: any finite value.
double largest_storable(DType t) {
  constexpr double kHalfMax = 65504.0;
  switch (t) {
    case DType::F16:
      return kHalfMax;
    case DType::BF16:
      return 3.38e38;  // rounds to bf16's largest finite value, 3.3895e38
    case DType::Q8_0:
      return kHalfMax * 127;  // d = max / 127
    case DType::Q4_0:
      return kHalfMax * 8;  // d = max / -8
    case DType::Q6_K:
      return kHalfMax * 31 * 127;  // d = max sub-scale / 127, sub-scale = max / 31
    default:
      return 0;
  }
}

}  // namespace

std::vector<uint8_t> quantize_rows(DType t, const float* x, int64_t rows, int64_t cols) {
  const TypeTraits& r = type_traits(t);
  if (!r.quantize)
    fail("cannot write type {} (supported: {})", dtype_name(t),
         fmt::join(type_names(&TypeTraits::quantize), ", "));
  const size_t rb = row_bytes(t, cols);  // checks whole blocks
  // A value beyond the type's range would be stored as an infinity (or an infinite block scale),
  // which every later product spreads: refused, naming the value, rather than written.
  if (const double lim = largest_storable(t); lim > 0) {
    const auto limf = static_cast<float>(lim);
    const int64_t n = rows * cols;
    int bad = 0;  // int, not bool: GCC vectorizes the or of an int
    for (int64_t i = 0; i < n; ++i) bad |= !(std::fabs(x[i]) <= limf);  // NaN too
    if (bad)
      for (int64_t i = 0; i < n; ++i)
        if (!(std::fabs(x[i]) <= limf))
          fail("value {} (row {}, column {}) does not fit type {} (largest {}): store it as f32{}", x[i],
               i / cols, i % cols, dtype_name(t), lim, t == DType::BF16 ? "" : " or bf16");
  }
  std::vector<uint8_t> out(rb * static_cast<size_t>(rows));
  for (int64_t i = 0; i < rows; ++i) r.quantize(x + i * cols, cols, out.data() + static_cast<size_t>(i) * rb);
  return out;
}

}  // namespace bitnet
