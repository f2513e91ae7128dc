// The trainer's element-wise and per-row ops: RMSNorm, RoPE, gated activation, embedding and
// softmax cross-entropy. Forwards call the engine's own primitives, so they match it bit for bit.
#include "training/ops.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "ops/layer_ops.h"
#include "ops/vec.h"
#include "training/op_checks.h"

namespace bitnet::train {

// ---- RMSNorm ------------------------------------------------------------------------------------

void rmsnorm_forward(const float* x, const float* w, int64_t T, int64_t n, float eps, float* y, float* rstd) {
  check_rmsnorm_sizes("rmsnorm_forward", T, n);
  for (int64_t t = 0; t < T; ++t) {
    // rms_norm (ops/layer_ops.cpp) with the scale kept.
    const double ss = sum_squares_f64(x + t * n, n);
    const float mean = static_cast<float>(ss / static_cast<double>(n));
    const float r = 1.0f / std::sqrt(mean + eps);
    scale_mul_f32(x + t * n, r, w, y + t * n, n);
    rstd[t] = r;
  }
}

// y_i = x_i r w_i, r = (mean(x^2) + eps)^-1/2:
//   dx_j += r w_j dy_j - r^3 / n * x_j * sum_i dy_i w_i x_i;   dw_i += dy_i x_i r.
void rmsnorm_backward(const float* dy, const float* x, const float* w, const float* rstd, int64_t T,
                      int64_t n, float* dx, float* dw) {
  check_rmsnorm_sizes("rmsnorm_backward", T, n);
  for (int64_t t = 0; t < T; ++t) {
    const float* xr = x + t * n;
    const float* g = dy + t * n;
    const float r = rstd[t];
    double sdot = 0;
    for (int64_t i = 0; i < n; ++i) sdot += static_cast<double>(g[i] * w[i]) * xr[i];
    const float c = static_cast<float>(sdot * r * r * r / static_cast<double>(n));
    if (dx != nullptr) {
      float* d = dx + t * n;
      for (int64_t i = 0; i < n; ++i) d[i] += r * w[i] * g[i] - c * xr[i];
    }
    if (dw != nullptr)
      for (int64_t i = 0; i < n; ++i) dw[i] += g[i] * xr[i] * r;
  }
}

// ---- RoPE ---------------------------------------------------------------------------------------

namespace {

// Rotates q and k (the first n_head + n_head_kv heads of each row) by the position's angles;
// inverse = true rotates by minus the angles (sin negated), the transpose of the rotation.
void rope_rows(float* qkv, int64_t T, const RopeShape& s, bool inverse) {
  if (s.rope_dim == 0 || T == 0) return;
  const int64_t half = s.rope_dim / 2;
  std::vector<float> cs(static_cast<size_t>(s.seq * half)), sn(cs.size());
  for (int64_t p = 0; p < s.seq; ++p) rope_angles(p, s.rope_dim, s.theta, &cs[p * half], &sn[p * half]);
  if (inverse)
    for (float& v : sn) v = -v;
  const int64_t C = (s.n_head + 2 * s.n_head_kv) * s.head_dim;
  for (int64_t t = 0; t < T; ++t) {
    const int64_t p = t % s.seq;
    rope_apply(qkv + t * C, s.n_head + s.n_head_kv, s.head_dim, s.rope_dim, &cs[p * half], &sn[p * half],
               s.style);
  }
}

}  // namespace

void rope_forward(float* qkv, int64_t T, const RopeShape& s) {
  check_rope("rope_forward", T, s);
  rope_rows(qkv, T, s, false);
}

void rope_backward(float* dqkv, int64_t T, const RopeShape& s) {
  check_rope("rope_backward", T, s);
  rope_rows(dqkv, T, s, true);
}

// ---- gated activation ---------------------------------------------------------------------------

void gated_forward(const float* gu, int64_t T, int64_t ff, FfnAct act, float* out) {
  check_gated_sizes("gated_forward", T, ff);
  for (int64_t t = 0; t < T; ++t) gated_act(gu + t * 2 * ff, gu + t * 2 * ff + ff, ff, act, out + t * ff);
}

void gated_backward(const float* dout, const float* gu, int64_t T, int64_t ff, FfnAct act, float* dgu) {
  check_gated_sizes("gated_backward", T, ff);
  for (int64_t t = 0; t < T; ++t) {
    const float* g = gu + t * 2 * ff;
    const float* u = g + ff;
    const float* d = dout + t * ff;
    float* dg = dgu + t * 2 * ff;
    float* du = dg + ff;
    if (act == FfnAct::kRelu2) {
      for (int64_t i = 0; i < ff; ++i) {
        const float r = g[i] > 0 ? g[i] : 0.0f;
        dg[i] += 2.0f * r * u[i] * d[i];
        du[i] += r * r * d[i];
      }
    } else {
      for (int64_t i = 0; i < ff; ++i) {
        const float sig = 1.0f / (1.0f + std::exp(-g[i]));
        dg[i] += sig * (1.0f + g[i] * (1.0f - sig)) * u[i] * d[i];
        du[i] += g[i] * sig * d[i];
      }
    }
  }
}

// ---- embedding ----------------------------------------------------------------------------------

namespace {
void check_tokens(const char* op, const int32_t* tokens, int64_t T, int64_t vocab, int64_t d) {
  check_embedding_sizes(op, T, vocab, d);
  for (int64_t t = 0; t < T; ++t)
    if (tokens[t] < 0 || tokens[t] >= vocab)
      fail("{}: token id {} at position {} is outside the vocabulary [0, {})", op, tokens[t], t, vocab);
}
}  // namespace

void embedding_forward(const int32_t* tokens, int64_t T, const float* table, int64_t vocab, int64_t d,
                       float* x) {
  check_tokens("embedding_forward", tokens, T, vocab, d);
  for (int64_t t = 0; t < T; ++t) std::copy_n(table + tokens[t] * d, d, x + t * d);
}

void embedding_backward(const int32_t* tokens, int64_t T, const float* dx, int64_t vocab, int64_t d,
                        float* dtable) {
  check_tokens("embedding_backward", tokens, T, vocab, d);
  for (int64_t t = 0; t < T; ++t) {
    float* row = dtable + tokens[t] * d;
    const float* g = dx + t * d;
    for (int64_t i = 0; i < d; ++i) row[i] += g[i];
  }
}

// ---- softmax cross-entropy ----------------------------------------------------------------------

double cross_entropy(const float* logits, const int32_t* targets, int64_t T, int64_t V, float grad_scale,
                     float* dlogits) {
  check_cross_entropy_sizes(T, V);
  for (int64_t t = 0; t < T; ++t)
    if (targets[t] < 0 || targets[t] >= V)
      fail("cross_entropy: target id {} at row {} is outside the vocabulary [0, {})", targets[t], t, V);
  double loss = 0;
  for (int64_t t = 0; t < T; ++t) {
    const float* l = logits + t * V;
    const float mx = *std::max_element(l, l + V);
    double sum = 0;
    if (dlogits != nullptr) {
      float* d = dlogits + t * V;
      for (int64_t v = 0; v < V; ++v) {
        d[v] = std::exp(l[v] - mx);
        sum += d[v];
      }
      const float inv = static_cast<float>(1.0 / sum);
      for (int64_t v = 0; v < V; ++v) d[v] = d[v] * inv * grad_scale;
      d[targets[t]] -= grad_scale;
    } else {
      for (int64_t v = 0; v < V; ++v) sum += std::exp(l[v] - mx);
    }
    loss += std::log(sum) - (static_cast<double>(l[targets[t]]) - mx);
  }
  return loss;
}

}  // namespace bitnet::train
