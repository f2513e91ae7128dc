#include "training/adamw.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace bitnet::train {

double grad_norm(std::span<const float> grads) {
  double s = 0;
  for (float g : grads) s += static_cast<double>(g) * g;
  return std::sqrt(s);
}

void adamw_step(TrainModel& model, std::span<const float> grads, AdamWState& st, const AdamWConfig& cfg,
                float lr, float wd, size_t begin, size_t end) {
  const size_t n = model.params.size();
  end = std::min(end, n);
  if (begin > end) fail("adamw: parameters [{}, {}) of {}", begin, end, n);
  if (grads.size() != n) fail("adamw: {} gradients for {} parameters", grads.size(), n);
  if (st.m.size() != n || st.v.size() != n) {
    if (st.step != 0 || !st.m.empty()) fail("adamw: optimizer state does not match the model");
    st.m.assign(n, 0.0f);
    st.v.assign(n, 0.0f);
  }
  ++st.step;
  const double t = static_cast<double>(st.step);
  const float bc1 = static_cast<float>(1.0 - std::pow(static_cast<double>(cfg.beta1), t));
  const float bc2 = static_cast<float>(1.0 - std::pow(static_cast<double>(cfg.beta2), t));
  const float b1 = cfg.beta1, b2 = cfg.beta2;
  for (const ParamTensor& pt : model.tensors) {
    // The part of this tensor inside [begin, end), as indices into the tensor.
    const int64_t lo = std::max<int64_t>(0, static_cast<int64_t>(begin) - pt.offset);
    const int64_t hi = std::min<int64_t>(pt.size(), static_cast<int64_t>(end) - pt.offset);
    float* p = model.at(pt.offset);
    const float* g = grads.data() + pt.offset;
    float* m = st.m.data() + pt.offset;
    float* v = st.v.data() + pt.offset;
    const float decay = pt.decay ? 1.0f - lr * wd : 1.0f;
    for (int64_t i = lo; i < hi; ++i) {
      p[i] *= decay;
      m[i] = b1 * m[i] + (1.0f - b1) * g[i];
      v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
      const float mh = m[i] / bc1, vh = v[i] / bc2;
      p[i] -= lr * mh / (std::sqrt(vh) + cfg.eps);
    }
  }
}

}  // namespace bitnet::train
