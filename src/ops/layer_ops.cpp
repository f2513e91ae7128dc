#include "ops/layer_ops.h"

#include <cmath>

#include "ops/vec.h"

namespace bitnet {

void rms_norm(const float* x, const float* w, int64_t n, float eps, float* y) {
  const double ss = sum_squares_f64(x, n);
  const float mean = static_cast<float>(ss / static_cast<double>(n));
  const float scale = 1.0f / std::sqrt(mean + eps);
  scale_mul_f32(x, scale, w, y, n);
}

void rope_angles(int64_t pos, int64_t rope_dim, float theta, float* cs, float* sn) {
  for (int64_t i = 0; i < rope_dim / 2; ++i) {
    const double angle =
        static_cast<double>(pos) *
        std::pow(static_cast<double>(theta), -2.0 * static_cast<double>(i) / static_cast<double>(rope_dim));
    cs[i] = static_cast<float>(std::cos(angle));
    sn[i] = static_cast<float>(std::sin(angle));
  }
}

void rope_apply(float* x, int64_t n_heads, int64_t head_dim, int64_t rope_dim, const float* cs,
                const float* sn, RopeStyle style) {
  rope_rotate(x, n_heads, head_dim, rope_dim, cs, sn, style == RopeStyle::kNeox);
}

void gated_act(const float* gate, const float* up, int64_t n, FfnAct act, float* out) {
  if (act == FfnAct::kRelu2) {
    relu2_mul(gate, up, out, n);
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
  }
}

}  // namespace bitnet
