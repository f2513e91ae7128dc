// Causal attention with grouped KV heads over a fused q|k|v buffer: forward keeps the softmax,
// backward recomputes nothing else.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "training/kernels.h"
#include "training/op_checks.h"
#include "training/ops.h"
#include "training/parallel.h"

namespace bitnet::train {

namespace {

struct Layout {
  int64_t hd, q_dim, kv_dim, C, group, out_dim;
  float scale;
  explicit Layout(const AttnShape& s)
      : hd(s.head_dim),
        q_dim(s.n_head * s.head_dim),
        kv_dim(s.n_head_kv * s.head_dim),
        C(q_dim + 2 * kv_dim),
        group(s.n_head / s.n_head_kv),
        out_dim(q_dim),
        scale(1.0f / std::sqrt(static_cast<float>(s.head_dim))) {}
};

}  // namespace

void attention_forward(ThreadPool* pool, const float* qkv, const AttnShape& s, float* out, float* att) {
  check_attention("attention_forward", s);
  const Layout L(s);
  const int64_t seq = s.seq, H = s.n_head, hd = L.hd;
  parallel_ranges(pool, s.batch * H, 1, [&](int64_t bh0, int64_t bh1) {
    for (int64_t bh = bh0; bh < bh1; ++bh) {
      const int64_t b = bh / H, h = bh % H, kvh = h / L.group;
      const float* base = qkv + b * seq * L.C;
      for (int64_t i = 0; i < seq; ++i) {
        const float* q = base + i * L.C + h * hd;
        float* p = att + (bh * seq + i) * seq;
        float mx = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j <= i; ++j) {
          p[j] = kern::dot_f32(q, base + j * L.C + L.q_dim + kvh * hd, hd) * L.scale;
          mx = std::max(mx, p[j]);
        }
        float sum = 0;
        for (int64_t j = 0; j <= i; ++j) {
          p[j] = std::exp(p[j] - mx);
          sum += p[j];
        }
        const float inv = 1.0f / sum;
        for (int64_t j = 0; j <= i; ++j) p[j] *= inv;
        for (int64_t j = i + 1; j < seq; ++j) p[j] = 0.0f;
        float* o = out + (b * seq + i) * L.out_dim + h * hd;
        std::fill(o, o + hd, 0.0f);
        for (int64_t j = 0; j <= i; ++j)
          kern::axpy(p[j], base + j * L.C + L.q_dim + L.kv_dim + kvh * hd, o, hd);
      }
    }
  });
}

void attention_backward(ThreadPool* pool, const float* dout, const float* qkv, const float* att,
                        const AttnShape& s, float* dqkv) {
  check_attention("attention_backward", s);
  const Layout L(s);
  const int64_t seq = s.seq, H = s.n_head, Hkv = s.n_head_kv, hd = L.hd;
  // Split over (batch, KV head): the query heads sharing a KV head all add into its dk and dv, so
  // they run in one task, in order.
  parallel_ranges(pool, s.batch * Hkv, 1, [&](int64_t bk0, int64_t bk1) {
    std::vector<float> dp(static_cast<size_t>(seq));
    for (int64_t bk = bk0; bk < bk1; ++bk) {
      const int64_t b = bk / Hkv, kvh = bk % Hkv;
      const float* base = qkv + b * seq * L.C;
      float* dbase = dqkv + b * seq * L.C;
      const int64_t koff = L.q_dim + kvh * hd, voff = L.q_dim + L.kv_dim + kvh * hd;
      for (int64_t h = kvh * L.group; h < (kvh + 1) * L.group; ++h) {
        for (int64_t i = 0; i < seq; ++i) {
          const float* p = att + ((b * H + h) * seq + i) * seq;
          const float* go = dout + (b * seq + i) * L.out_dim + h * hd;
          float pdp = 0;
          for (int64_t j = 0; j <= i; ++j) {
            dp[static_cast<size_t>(j)] = kern::dot_f32(go, base + j * L.C + voff, hd);
            pdp += p[j] * dp[static_cast<size_t>(j)];
            kern::axpy(p[j], go, dbase + j * L.C + voff, hd);  // dv_j += p_ij * dout_i
          }
          const float* q = base + i * L.C + h * hd;
          float* dq = dbase + i * L.C + h * hd;
          for (int64_t j = 0; j <= i; ++j) {
            const float ds = p[j] * (dp[static_cast<size_t>(j)] - pdp) * L.scale;
            kern::axpy(ds, base + j * L.C + koff, dq, hd);  // dq_i += ds_ij * k_j
            kern::axpy(ds, q, dbase + j * L.C + koff, hd);  // dk_j += ds_ij * q_i
          }
        }
      }
    }
  });
}

}  // namespace bitnet::train
