#include "quant/ternary.h"

#include <algorithm>
#include <cmath>

namespace bitnet {

float absmean_scale(const float* w, size_t n) {
  double s = 0.0;
  for (size_t i = 0; i < n; ++i) s += std::fabs(static_cast<double>(w[i]));
  const float mean = n ? static_cast<float>(s / static_cast<double>(n)) : 0.0f;
  return std::max(mean, 1e-5f);
}

void ternarize(const float* w, size_t n, float scale, int8_t* q) {
  const float inv = 1.0f / scale;
  for (size_t i = 0; i < n; ++i) {
    const float r = std::nearbyint(w[i] * inv);
    q[i] = static_cast<int8_t>(std::clamp(r, -1.0f, 1.0f));
  }
}

void dequantize_ternary(const int8_t* q, size_t n, float scale, float* w) {
  for (size_t i = 0; i < n; ++i) w[i] = static_cast<float>(q[i]) * scale;
}

}  // namespace bitnet
