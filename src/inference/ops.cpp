#include "inference/ops.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "core/thread_pool.h"
#include "quant/dequant.h"
#include "quant/vec.h"

namespace bitnet {

void rms_norm(const float* x, const float* w, int64_t n, float eps, float* y) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float mean = static_cast<float>(ss / static_cast<double>(n));
  const float scale = 1.0f / std::sqrt(mean + eps);
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * scale * w[i];
}

void rope(float* x, int64_t n_heads, int64_t head_dim, int64_t rope_dim, int64_t pos, float theta,
          RopeStyle style) {
  const int64_t half = rope_dim / 2;
  float cs[512], sn[512];
  BN_CHECK(half <= 512, "rope_dim {} too large", rope_dim);
  for (int64_t i = 0; i < half; ++i) {
    const double angle = static_cast<double>(pos) *
                         std::pow(static_cast<double>(theta), -2.0 * static_cast<double>(i) / static_cast<double>(rope_dim));
    cs[i] = static_cast<float>(std::cos(angle));
    sn[i] = static_cast<float>(std::sin(angle));
  }
  for (int64_t h = 0; h < n_heads; ++h) {
    float* v = x + h * head_dim;
    for (int64_t i = 0; i < half; ++i) {
      const int64_t a = style == RopeStyle::kNeox ? i : 2 * i;
      const int64_t b = style == RopeStyle::kNeox ? i + half : 2 * i + 1;
      const float x0 = v[a], x1 = v[b];
      v[a] = x0 * cs[i] - x1 * sn[i];
      v[b] = x0 * sn[i] + x1 * cs[i];
    }
  }
}

void gated_act(const float* gate, const float* up, int64_t n, FfnAct act, float* out) {
  if (act == FfnAct::kRelu2) {
    for (int64_t i = 0; i < n; ++i) {
      const float g = gate[i] > 0 ? gate[i] : 0.0f;
      out[i] = g * g * up[i];
    }
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
  }
}

void embedding_row(const Tensor& table, int64_t row, float* out) {
  if (row < 0 || row >= table.rows())
    fail("token id {} is out of range for '{}' ({} rows)", row, table.name(), table.rows());
  dequantize_row(table.dtype(), table.data() + static_cast<size_t>(row) * table.row_stride_bytes(),
                 table.cols(), out);
}

void head_matmul(ThreadPool* pool, const Tensor& w, const float* x_in, int64_t m, float* logits) {
  const int64_t rows = w.rows(), n = w.cols();
  // ggml's F16 and BF16 dot products convert the activation to the weight's type first; doing
  // the same keeps our logits within rounding of llama.cpp's and bitnet.cpp's.
  std::vector<float> rounded;
  const float* x = x_in;
  if (w.dtype() == DType::F16 || w.dtype() == DType::BF16) {
    rounded.resize(static_cast<size_t>(m * n));
    for (int64_t i = 0; i < m * n; ++i)
      rounded[static_cast<size_t>(i)] = w.dtype() == DType::F16 ? f16_to_f32(f32_to_f16(x_in[i])) : bf16_to_f32(f32_to_bf16(x_in[i]));
    x = rounded.data();
  }
  auto work = [&](int64_t r0, int64_t r1) {
    std::vector<float> row(static_cast<size_t>(n));
    for (int64_t r = r0; r < r1; ++r) {
      dequantize_row(w.dtype(), w.data() + static_cast<size_t>(r) * w.row_stride_bytes(), n, row.data());
      for (int64_t t = 0; t < m; ++t) logits[t * rows + r] = dot_f32(x + t * n, row.data(), n);
    }
  };
  if (pool) {
    pool->parallel_for(rows, 64, work);
  } else {
    work(0, rows);
  }
}

}  // namespace bitnet
