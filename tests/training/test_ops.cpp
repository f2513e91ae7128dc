// The trainer's ops: each backward against central finite differences of L = sum(out * R) (the
// loss in double), the quantized BitLinear against the engine's numerics and the STE formula, and
// results independent of the thread count.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "ops/layer_ops.h"
#include "training/ops.h"
#include "training/test_util.h"

namespace bitnet::train {
namespace {

using test_util::random_vec;
using test_util::Vec;

double weighted_sum(const Vec& out, const Vec& R) {
  double s = 0;
  for (size_t i = 0; i < out.size(); ++i) s += static_cast<double>(out[i]) * R[i];
  return s;
}

// Central differences of loss() wrt every element of p.
std::vector<double> finite_diff(Vec& p, const std::function<double()>& loss, float eps = 1e-3f) {
  std::vector<double> g(p.size());
  for (size_t i = 0; i < p.size(); ++i) {
    const float keep = p[i];
    p[i] = keep + eps;
    const double lp = loss();
    p[i] = keep - eps;
    const double lm = loss();
    p[i] = keep;
    g[i] = (lp - lm) / (2.0 * static_cast<double>(eps));
  }
  return g;
}

// ||got - want|| / ||want||, over elements [begin, end). want must be clearly non-zero, so that a
// gradient with the wrong sign (relative error 2) or a missing one (1) fails.
double rel_err(const Vec& got, const std::vector<double>& want, size_t begin = 0, size_t end = SIZE_MAX) {
  end = std::min(end, want.size());
  double num = 0, den = 0;
  for (size_t i = begin; i < end; ++i) {
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  EXPECT_GT(std::sqrt(den), 1e-2) << "the reference gradient is ~0: the check would prove nothing";
  return std::sqrt(num / den);
}

// got - base, for gradients that started from random values (backwards accumulate).
Vec minus(const Vec& got, const Vec& base) {
  Vec d(got.size());
  for (size_t i = 0; i < got.size(); ++i) d[i] = got[i] - base[i];
  return d;
}

constexpr double kTol = 1e-2;

// ---- BitLinear ----------------------------------------------------------------------------------

// The engine's numerics written out in scalar code: absmean per group, ternary codes, per-token
// absmax int8, exact integer product, epilogue float(acc) * (scale * (1/s)).
Vec scalar_bitlinear(const Vec& x, int64_t T, int64_t in, const Vec& W, int64_t out,
                     const std::vector<int64_t>& groups) {
  std::vector<int> wq(W.size());
  std::vector<float> rs(static_cast<size_t>(out));
  int64_t r0 = 0;
  for (int64_t g : groups) {
    double s = 0;
    for (int64_t i = r0 * in; i < (r0 + g) * in; ++i) s += std::fabs(static_cast<double>(W[i]));
    const float scale = std::max(static_cast<float>(s / static_cast<double>(g * in)), 1e-5f);
    const float inv = 1.0f / scale;
    for (int64_t i = r0 * in; i < (r0 + g) * in; ++i)
      wq[i] = static_cast<int>(std::clamp(std::nearbyint(W[i] * inv), -1.0f, 1.0f));
    for (int64_t r = r0; r < r0 + g; ++r) rs[r] = scale;
    r0 += g;
  }
  Vec y(static_cast<size_t>(T * out));
  for (int64_t t = 0; t < T; ++t) {
    float amax = 0;
    for (int64_t i = 0; i < in; ++i) amax = std::max(amax, std::fabs(x[t * in + i]));
    const float s = 127.0f / std::max(amax, 1e-5f);
    std::vector<int> xq(static_cast<size_t>(in));
    for (int64_t i = 0; i < in; ++i)
      xq[i] = static_cast<int>(std::clamp(std::nearbyint(x[t * in + i] * s), -128.0f, 127.0f));
    for (int64_t o = 0; o < out; ++o) {
      int32_t acc = 0;
      for (int64_t i = 0; i < in; ++i) acc += xq[i] * wq[o * in + i];
      y[t * out + o] = static_cast<float>(acc) * (rs[o] * (1.0f / s));
    }
  }
  return y;
}

struct LinearCase {
  int64_t T = 6, in = 37, out = 29;
  std::vector<int64_t> groups{13, 16};
  Vec x, W;
  LinearCase() {
    x = random_vec(static_cast<size_t>(T * in), 1);
    W = random_vec(static_cast<size_t>(out * in), 2, -0.1f, 0.1f);
    for (int64_t i = 13 * in; i < out * in; ++i) W[i] *= 7.0f;  // the second group's scale differs
  }
};

TEST(TrainBitLinear, QuantizedForwardIsTheEnginesNumericsBitForBit) {
  LinearCase c;
  for (int64_t i = 0; i < c.in; ++i) c.x[i] *= 1e-3f;
  c.x[5] = 3.0e4f;                                                // row 0: one huge outlier
  std::fill(c.x.begin() + c.in, c.x.begin() + 2 * c.in, 0.0f);    // row 1: zeros (max clamped at 1e-5)
  for (int64_t i = 2 * c.in; i < 3 * c.in; ++i) c.x[i] *= 1e-7f;  // row 2: below the clamp
  c.x[3 * c.in + 7] = -1e6f;                                      // row 3: a huge negative outlier
  Vec y(static_cast<size_t>(c.T * c.out));
  BitLinearCache cache;
  bitlinear_forward(nullptr, c.x.data(), c.T, c.in, c.W.data(), c.out, c.groups, true, y.data(), cache);
  const Vec want = scalar_bitlinear(c.x, c.T, c.in, c.W, c.out, c.groups);
  ASSERT_EQ(y.size(), want.size());
  for (size_t i = 0; i < y.size(); ++i) ASSERT_EQ(std::memcmp(&y[i], &want[i], sizeof(float)), 0) << i;
  EXPECT_TRUE(cache.quantized);
  EXPECT_EQ(cache.dq[1], 1.0f / (127.0f / 1e-5f));
  for (int64_t i = 0; i < c.in; ++i) EXPECT_EQ(cache.xq[c.in + i], 0);
  EXPECT_EQ(cache.xq[5], 127);
  EXPECT_EQ(cache.xq[3 * c.in + 7], -127);
  EXPECT_NE(cache.row_scale[0], cache.row_scale[c.out - 1]);
  EXPECT_EQ(cache.row_scale[0], cache.row_scale[12]);
  EXPECT_EQ(cache.row_scale[13], cache.row_scale[c.out - 1]);
  for (int8_t q : cache.wq) EXPECT_TRUE(q >= -1 && q <= 1);
  // The outlier row quantizes the small values to zero: its output is the outlier's alone.
  for (int64_t o = 0; o < c.out; ++o)
    EXPECT_EQ(y[o], static_cast<float>(127 * cache.wq[o * c.in + 5]) * (cache.row_scale[o] * cache.dq[0]));
}

TEST(TrainBitLinear, QuantizedBackwardIsTheSteFormula) {
  LinearCase c;
  Vec y(static_cast<size_t>(c.T * c.out));
  BitLinearCache cache;
  bitlinear_forward(nullptr, c.x.data(), c.T, c.in, c.W.data(), c.out, c.groups, true, y.data(), cache);
  const Vec dy = random_vec(y.size(), 3);
  const Vec dx0 = random_vec(c.x.size(), 4), dW0 = random_vec(c.W.size(), 5);
  Vec dx = dx0, dW = dW0;
  bitlinear_backward(nullptr, dy.data(), c.x.data(), c.T, c.in, c.W.data(), c.out, cache, dx.data(),
                     dW.data());
  std::vector<double> wdx(c.x.size(), 0.0), wdW(c.W.size(), 0.0);
  for (int64_t t = 0; t < c.T; ++t)
    for (int64_t o = 0; o < c.out; ++o)
      for (int64_t i = 0; i < c.in; ++i) {
        const double g = dy[t * c.out + o];
        wdx[t * c.in + i] += g * cache.wq[o * c.in + i] * static_cast<double>(cache.row_scale[o]);
        wdW[o * c.in + i] += g * cache.xq[t * c.in + i] * static_cast<double>(cache.dq[t]);
      }
  const Vec gx = minus(dx, dx0), gW = minus(dW, dW0);
  EXPECT_LT(rel_err(gx, wdx), 1e-5);
  EXPECT_LT(rel_err(gW, wdW), 1e-5);
  // dx may be null.
  Vec dW2 = dW0;
  bitlinear_backward(nullptr, dy.data(), c.x.data(), c.T, c.in, c.W.data(), c.out, cache, nullptr,
                     dW2.data());
  EXPECT_EQ(dW2, dW);
}

TEST(TrainBitLinear, FloatModeFiniteDifferences) {
  LinearCase c;
  const Vec R = random_vec(static_cast<size_t>(c.T * c.out), 6);
  Vec y(R.size());
  BitLinearCache cache;
  auto loss = [&] {
    bitlinear_forward(nullptr, c.x.data(), c.T, c.in, c.W.data(), c.out, c.groups, false, y.data(), cache);
    return weighted_sum(y, R);
  };
  loss();
  EXPECT_FALSE(cache.quantized);
  const Vec dx0 = random_vec(c.x.size(), 7), dW0 = random_vec(c.W.size(), 8);
  Vec dx = dx0, dW = dW0;
  bitlinear_backward(nullptr, R.data(), c.x.data(), c.T, c.in, c.W.data(), c.out, cache, dx.data(),
                     dW.data());
  EXPECT_LT(rel_err(minus(dx, dx0), finite_diff(c.x, loss)), kTol);
  EXPECT_LT(rel_err(minus(dW, dW0), finite_diff(c.W, loss)), kTol);
}

TEST(TrainMatmul, FiniteDifferences) {
  LinearCase c;
  const Vec R = random_vec(static_cast<size_t>(c.T * c.out), 9);
  Vec y(R.size());
  auto loss = [&] {
    matmul_forward(nullptr, c.x.data(), c.T, c.in, c.W.data(), c.out, y.data());
    return weighted_sum(y, R);
  };
  loss();
  const Vec dx0 = random_vec(c.x.size(), 10), dW0 = random_vec(c.W.size(), 11);
  Vec dx = dx0, dW = dW0;
  matmul_backward(nullptr, R.data(), c.x.data(), c.T, c.in, c.W.data(), c.out, dx.data(), dW.data());
  EXPECT_LT(rel_err(minus(dx, dx0), finite_diff(c.x, loss)), kTol);
  EXPECT_LT(rel_err(minus(dW, dW0), finite_diff(c.W, loss)), kTol);
}

// ---- RMSNorm ------------------------------------------------------------------------------------

TEST(TrainRmsNorm, ForwardIsTheEnginesAndFiniteDifferences) {
  const int64_t T = 6, n = 37;
  const float eps = 1e-5f;
  Vec x = random_vec(static_cast<size_t>(T * n), 12), w = random_vec(static_cast<size_t>(n), 13, 0.5f, 1.5f);
  const Vec R = random_vec(x.size(), 14);
  Vec y(x.size()), rstd(static_cast<size_t>(T));
  auto loss = [&] {
    rmsnorm_forward(x.data(), w.data(), T, n, eps, y.data(), rstd.data());
    return weighted_sum(y, R);
  };
  loss();
  Vec ref(static_cast<size_t>(n));
  for (int64_t t = 0; t < T; ++t) {
    rms_norm(x.data() + t * n, w.data(), n, eps, ref.data());
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(y[t * n + i], ref[i]);
  }
  const Vec dx0 = random_vec(x.size(), 15), dw0 = random_vec(w.size(), 16);
  Vec dx = dx0, dw = dw0;
  rmsnorm_backward(R.data(), x.data(), w.data(), rstd.data(), T, n, dx.data(), dw.data());
  EXPECT_LT(rel_err(minus(dx, dx0), finite_diff(x, loss)), kTol);
  EXPECT_LT(rel_err(minus(dw, dw0), finite_diff(w, loss)), kTol);
}

// ---- RoPE ---------------------------------------------------------------------------------------

RopeShape rope_shape(RopeStyle style, int64_t rope_dim) {
  RopeShape s;
  s.seq = 3;
  s.n_head = 4;
  s.n_head_kv = 2;
  s.head_dim = 6;
  s.rope_dim = rope_dim;
  s.theta = 100.0f;  // large angles at small positions
  s.style = style;
  return s;
}

TEST(TrainRope, BackwardIsTheInverseRotation) {
  for (RopeStyle style : {RopeStyle::kNeox, RopeStyle::kNorm}) {
    for (int64_t rd : {6, 4}) {
      const RopeShape s = rope_shape(style, rd);
      const int64_t T = 6, C = (s.n_head + 2 * s.n_head_kv) * s.head_dim;
      const Vec x0 = random_vec(static_cast<size_t>(T * C), 17);
      Vec x = x0;
      rope_forward(x.data(), T, s);
      EXPECT_NE(x, x0);
      // v untouched; position 0 of each batch row is the identity.
      for (int64_t t = 0; t < T; ++t)
        for (int64_t i = (s.n_head + s.n_head_kv) * s.head_dim; i < C; ++i)
          EXPECT_EQ(x[t * C + i], x0[t * C + i]);
      for (int64_t i = 0; i < C; ++i) EXPECT_EQ(x[3 * C + i], x0[3 * C + i]);
      rope_backward(x.data(), T, s);
      for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(x[i], x0[i], 1e-6) << i;
    }
  }
}

TEST(TrainRope, ForwardIsTheEnginesRotation) {
  for (RopeStyle style : {RopeStyle::kNeox, RopeStyle::kNorm}) {
    const RopeShape s = rope_shape(style, 6);
    const int64_t T = 6, C = (s.n_head + 2 * s.n_head_kv) * s.head_dim;
    const Vec x0 = random_vec(static_cast<size_t>(T * C), 18);
    Vec x = x0;
    rope_forward(x.data(), T, s);
    // Token 5 sits at position 2: its q head 1, pair 1, by hand.
    float cs[3], sn[3];
    rope_angles(2, 6, s.theta, cs, sn);
    const int64_t base = 5 * C + 1 * s.head_dim;
    const int64_t ia = style == RopeStyle::kNeox ? 1 : 2, ib = style == RopeStyle::kNeox ? 4 : 3;
    const float a = x0[base + ia], b = x0[base + ib];
    EXPECT_FLOAT_EQ(x[base + ia], a * cs[1] - b * sn[1]);
    EXPECT_FLOAT_EQ(x[base + ib], a * sn[1] + b * cs[1]);
  }
}

TEST(TrainRope, FiniteDifferences) {
  for (RopeStyle style : {RopeStyle::kNeox, RopeStyle::kNorm}) {
    const RopeShape s = rope_shape(style, 4);
    const int64_t T = 6, C = (s.n_head + 2 * s.n_head_kv) * s.head_dim;
    Vec x = random_vec(static_cast<size_t>(T * C), 19);
    const Vec R = random_vec(x.size(), 20);
    Vec y;
    auto loss = [&] {
      y = x;
      rope_forward(y.data(), T, s);
      return weighted_sum(y, R);
    };
    Vec g = R;  // the gradient of L wrt the rotated buffer is R; rope_backward maps it in place
    rope_backward(g.data(), T, s);
    EXPECT_LT(rel_err(g, finite_diff(x, loss)), kTol);
  }
}

// ---- attention ----------------------------------------------------------------------------------

AttnShape attn_shape() {
  AttnShape s;
  s.batch = 2;
  s.seq = 3;
  s.n_head = 4;
  s.n_head_kv = 2;
  s.head_dim = 6;
  return s;
}

TEST(TrainAttention, FiniteDifferencesOnQKV) {
  const AttnShape s = attn_shape();
  const int64_t T = s.batch * s.seq, hd = s.head_dim, q_dim = s.n_head * hd, kv_dim = s.n_head_kv * hd;
  const int64_t C = q_dim + 2 * kv_dim;
  Vec qkv = random_vec(static_cast<size_t>(T * C), 21, -1.5f, 1.5f);
  const Vec R = random_vec(static_cast<size_t>(T * q_dim), 22);
  Vec out(R.size()), att(static_cast<size_t>(s.batch * s.n_head * s.seq * s.seq));
  auto loss = [&] {
    attention_forward(nullptr, qkv.data(), s, out.data(), att.data());
    return weighted_sum(out, R);
  };
  loss();
  const Vec d0 = random_vec(qkv.size(), 23);
  Vec d = d0;
  attention_backward(nullptr, R.data(), qkv.data(), att.data(), s, d.data());
  const Vec g = minus(d, d0);
  const std::vector<double> fd = finite_diff(qkv, loss);
  // q, k and v parts separately (each token's row), so an error in one part can't hide.
  for (int64_t part = 0; part < 3; ++part) {
    const int64_t b = part == 0 ? 0 : part == 1 ? q_dim : q_dim + kv_dim, e = part == 0 ? q_dim : b + kv_dim;
    Vec gp;
    std::vector<double> fp;
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = b; i < e; ++i) {
        gp.push_back(g[t * C + i]);
        fp.push_back(fd[t * C + i]);
      }
    EXPECT_LT(rel_err(gp, fp), kTol) << "part " << part;
  }
}

TEST(TrainAttention, IsCausalAndKeepsTheSoftmax) {
  const AttnShape s = attn_shape();
  const int64_t T = s.batch * s.seq, hd = s.head_dim, q_dim = s.n_head * hd, kv_dim = s.n_head_kv * hd;
  const int64_t C = q_dim + 2 * kv_dim;
  Vec qkv = random_vec(static_cast<size_t>(T * C), 24);
  Vec out(static_cast<size_t>(T * q_dim)), att(static_cast<size_t>(s.batch * s.n_head * s.seq * s.seq));
  attention_forward(nullptr, qkv.data(), s, out.data(), att.data());
  for (int64_t r = 0; r < s.batch * s.n_head * s.seq; ++r) {
    const int64_t i = r % s.seq;
    double sum = 0;
    for (int64_t j = 0; j < s.seq; ++j) {
      if (j > i) {
        EXPECT_EQ(att[r * s.seq + j], 0.0f);
      }
      sum += att[r * s.seq + j];
    }
    EXPECT_NEAR(sum, 1.0, 1e-6);
  }
  // Token 0 of a row attends only to itself: its output is v.
  for (int64_t h = 0; h < s.n_head; ++h)
    for (int64_t d = 0; d < hd; ++d) EXPECT_EQ(out[h * hd + d], qkv[q_dim + kv_dim + (h / 2) * hd + d]);
  // Changing token 2's k and v (batch row 0) leaves tokens 0 and 1 unchanged, and the other batch row.
  Vec qkv2 = qkv;
  for (int64_t i = q_dim; i < C; ++i) qkv2[2 * C + i] += 0.5f;
  Vec out2(out.size());
  attention_forward(nullptr, qkv2.data(), s, out2.data(), att.data());
  for (int64_t i = 0; i < 2 * q_dim; ++i) EXPECT_EQ(out2[i], out[i]);
  for (int64_t i = 3 * q_dim; i < T * q_dim; ++i) EXPECT_EQ(out2[i], out[i]);
  bool changed = false;
  for (int64_t i = 2 * q_dim; i < 3 * q_dim; ++i) changed |= out2[i] != out[i];
  EXPECT_TRUE(changed);
}

// ---- gated activation ---------------------------------------------------------------------------

TEST(TrainGated, ForwardIsTheEnginesAndFiniteDifferences) {
  const int64_t T = 6, ff = 11;
  for (FfnAct act : {FfnAct::kRelu2, FfnAct::kSilu}) {
    Vec gu = random_vec(static_cast<size_t>(T * 2 * ff), 25, -2.0f, 2.0f);
    const Vec R = random_vec(static_cast<size_t>(T * ff), 26);
    Vec out(R.size());
    auto loss = [&] {
      gated_forward(gu.data(), T, ff, act, out.data());
      return weighted_sum(out, R);
    };
    loss();
    Vec ref(static_cast<size_t>(ff));
    for (int64_t t = 0; t < T; ++t) {
      gated_act(gu.data() + t * 2 * ff, gu.data() + t * 2 * ff + ff, ff, act, ref.data());
      for (int64_t i = 0; i < ff; ++i) ASSERT_EQ(out[t * ff + i], ref[i]);
    }
    const Vec d0 = random_vec(gu.size(), 27);
    Vec d = d0;
    gated_backward(R.data(), gu.data(), T, ff, act, d.data());
    const Vec g = minus(d, d0);
    const std::vector<double> fd = finite_diff(gu, loss);
    Vec gg, gup;
    std::vector<double> fg, fu;
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < ff; ++i) {
        gg.push_back(g[t * 2 * ff + i]);
        fg.push_back(fd[t * 2 * ff + i]);
        gup.push_back(g[t * 2 * ff + ff + i]);
        fu.push_back(fd[t * 2 * ff + ff + i]);
      }
    EXPECT_LT(rel_err(gg, fg), kTol) << "gate, act " << static_cast<int>(act);
    EXPECT_LT(rel_err(gup, fu), kTol) << "up, act " << static_cast<int>(act);
  }
}

// ---- embedding ----------------------------------------------------------------------------------

TEST(TrainEmbedding, ForwardGathersBackwardScatters) {
  const int64_t T = 6, V = 5, d = 7;
  const std::vector<int32_t> tok{3, 1, 3, 0, 3, 4};
  const Vec table = random_vec(static_cast<size_t>(V * d), 28);
  Vec x(static_cast<size_t>(T * d));
  embedding_forward(tok.data(), T, table.data(), V, d, x.data());
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < d; ++i) EXPECT_EQ(x[t * d + i], table[tok[t] * d + i]);
  const Vec dx = random_vec(x.size(), 29), dt0 = random_vec(table.size(), 30);
  Vec dt = dt0;
  embedding_backward(tok.data(), T, dx.data(), V, d, dt.data());
  for (int64_t i = 0; i < d; ++i) {
    EXPECT_FLOAT_EQ(dt[3 * d + i], dt0[3 * d + i] + dx[0 * d + i] + dx[2 * d + i] + dx[4 * d + i]);
    EXPECT_FLOAT_EQ(dt[1 * d + i], dt0[1 * d + i] + dx[1 * d + i]);
    EXPECT_FLOAT_EQ(dt[0 * d + i], dt0[0 * d + i] + dx[3 * d + i]);
    EXPECT_FLOAT_EQ(dt[4 * d + i], dt0[4 * d + i] + dx[5 * d + i]);
    EXPECT_EQ(dt[2 * d + i], dt0[2 * d + i]);  // an unused row is untouched
  }
}

// ---- cross-entropy ------------------------------------------------------------------------------

TEST(TrainCrossEntropy, LossIsLogSoftmaxAndGradientIsFiniteDifferences) {
  const int64_t T = 6, V = 29;
  Vec logits = random_vec(static_cast<size_t>(T * V), 31, -4.0f, 4.0f);
  for (int64_t v = 0; v < V; ++v) logits[v] += 80.0f;  // row 0: large logits (exp would overflow)
  const std::vector<int32_t> tgt{0, 28, 5, 5, 17, 3};
  double want = 0;
  for (int64_t t = 0; t < T; ++t) {
    double mx = -1e300, sum = 0;
    for (int64_t v = 0; v < V; ++v) mx = std::max(mx, static_cast<double>(logits[t * V + v]));
    for (int64_t v = 0; v < V; ++v) sum += std::exp(static_cast<double>(logits[t * V + v]) - mx);
    want += -(static_cast<double>(logits[t * V + tgt[t]]) - mx - std::log(sum));
  }
  const float gs = 1.0f / 6.0f;
  Vec d(logits.size(), 123.0f);  // written (=), not accumulated
  const double loss = cross_entropy(logits.data(), tgt.data(), T, V, gs, d.data());
  EXPECT_NEAR(loss, want, 1e-6 * want);
  EXPECT_EQ(cross_entropy(logits.data(), tgt.data(), T, V, gs, nullptr), loss);
  auto mean_loss = [&] { return cross_entropy(logits.data(), tgt.data(), T, V, gs, nullptr) * gs; };
  EXPECT_LT(rel_err(d, finite_diff(logits, mean_loss, 1e-2f)), kTol);
  for (int64_t t = 0; t < T; ++t) {
    double row = 0;
    for (int64_t v = 0; v < V; ++v) row += d[t * V + v];
    EXPECT_NEAR(row, 0.0, 1e-6);
    EXPECT_LT(d[t * V + tgt[t]], 0.0f);
  }
}

// ---- threads ------------------------------------------------------------------------------------

template <typename F>
void expect_same_bits_across_threads(F&& run) {
  ThreadPool p1(1), p3(3);
  const std::vector<Vec> a = run(nullptr), b = run(&p1), c = run(&p3);
  ASSERT_EQ(a.size(), c.size());
  for (size_t k = 0; k < a.size(); ++k) {
    ASSERT_EQ(a[k].size(), c[k].size());
    EXPECT_EQ(std::memcmp(a[k].data(), b[k].data(), a[k].size() * sizeof(float)), 0) << k;
    EXPECT_EQ(std::memcmp(a[k].data(), c[k].data(), a[k].size() * sizeof(float)), 0) << k;
  }
}

TEST(TrainThreads, ResultsDoNotDependOnTheThreadCount) {
  const int64_t T = 26, in = 37, out = 29;
  const std::vector<int64_t> groups{13, 16};
  const Vec x = random_vec(static_cast<size_t>(T * in), 32),
            W = random_vec(static_cast<size_t>(out * in), 33);
  const Vec dy = random_vec(static_cast<size_t>(T * out), 34);
  for (bool quant : {true, false}) {
    expect_same_bits_across_threads([&](ThreadPool* pool) {
      Vec y(dy.size()), dx(x.size(), 0.25f), dW(W.size(), -0.5f);
      BitLinearCache cache;
      bitlinear_forward(pool, x.data(), T, in, W.data(), out, groups, quant, y.data(), cache);
      bitlinear_backward(pool, dy.data(), x.data(), T, in, W.data(), out, cache, dx.data(), dW.data());
      return std::vector<Vec>{y, dx, dW};
    });
  }
  expect_same_bits_across_threads([&](ThreadPool* pool) {
    Vec y(dy.size()), dx(x.size(), 0.25f), dW(W.size(), -0.5f);
    matmul_forward(pool, x.data(), T, in, W.data(), out, y.data());
    matmul_backward(pool, dy.data(), x.data(), T, in, W.data(), out, dx.data(), dW.data());
    return std::vector<Vec>{y, dx, dW};
  });
  AttnShape s;
  s.batch = 3;
  s.seq = 5;
  s.n_head = 6;
  s.n_head_kv = 2;
  s.head_dim = 8;
  const int64_t C = (s.n_head + 2 * s.n_head_kv) * s.head_dim, TA = s.batch * s.seq;
  const Vec qkv = random_vec(static_cast<size_t>(TA * C), 35);
  const Vec dout = random_vec(static_cast<size_t>(TA * s.n_head * s.head_dim), 36);
  expect_same_bits_across_threads([&](ThreadPool* pool) {
    Vec o(dout.size()), att(static_cast<size_t>(s.batch * s.n_head * s.seq * s.seq)), d(qkv.size(), 0.125f);
    attention_forward(pool, qkv.data(), s, o.data(), att.data());
    attention_backward(pool, dout.data(), qkv.data(), att.data(), s, d.data());
    return std::vector<Vec>{o, att, d};
  });
}

// ---- bad input ----------------------------------------------------------------------------------

TEST(TrainOps, BadSizesFailCleanly) {
  const Vec x(64, 0.5f), W(64, 0.5f);
  Vec y(64);
  BitLinearCache cache;
  const std::vector<int64_t> bad_groups{2, 3}, zero_group{4, 0, 4};
  EXPECT_THROW(bitlinear_forward(nullptr, x.data(), 2, 4, W.data(), 6, bad_groups, true, y.data(), cache),
               Error);
  EXPECT_THROW(bitlinear_forward(nullptr, x.data(), 2, 4, W.data(), 8, zero_group, true, y.data(), cache),
               Error);
  EXPECT_THROW(bitlinear_forward(nullptr, x.data(), 2, 4, W.data(), 5, {}, false, y.data(), cache), Error);
  const std::vector<int64_t> g{5};
  bitlinear_forward(nullptr, x.data(), 2, 4, W.data(), 5, g, true, y.data(), cache);
  Vec dx(64), dW(64);
  // A cache from another shape.
  EXPECT_THROW(
      bitlinear_backward(nullptr, y.data(), x.data(), 3, 4, W.data(), 5, cache, dx.data(), dW.data()), Error);
  EXPECT_THROW(matmul_forward(nullptr, x.data(), 2, 0, W.data(), 5, y.data()), Error);

  Vec qkv(1024);
  RopeShape rs = rope_shape(RopeStyle::kNeox, 6);
  EXPECT_THROW(rope_forward(qkv.data(), 5, rs), Error);  // T not a multiple of seq
  rs.n_head_kv = 3;
  EXPECT_THROW(rope_forward(qkv.data(), 6, rs), Error);
  rs = rope_shape(RopeStyle::kNorm, 5);
  EXPECT_THROW(rope_backward(qkv.data(), 6, rs), Error);  // odd rope_dim
  rs = rope_shape(RopeStyle::kNorm, 8);
  EXPECT_THROW(rope_forward(qkv.data(), 6, rs), Error);  // rope_dim > head_dim

  AttnShape as = attn_shape();
  as.n_head_kv = 3;
  Vec o(1024), att(1024);
  EXPECT_THROW(attention_forward(nullptr, qkv.data(), as, o.data(), att.data()), Error);
  EXPECT_THROW(attention_backward(nullptr, o.data(), qkv.data(), att.data(), as, qkv.data()), Error);
  as = attn_shape();
  as.seq = 0;
  EXPECT_THROW(attention_forward(nullptr, qkv.data(), as, o.data(), att.data()), Error);

  const Vec logits(12, 0.0f);
  const std::vector<int32_t> bad_tgt{0, 4}, neg_tgt{-1, 0};
  EXPECT_THROW(cross_entropy(logits.data(), bad_tgt.data(), 2, 4, 1.0f, nullptr), Error);
  EXPECT_THROW(cross_entropy(logits.data(), neg_tgt.data(), 2, 4, 1.0f, nullptr), Error);
  Vec e(64);
  EXPECT_THROW(embedding_forward(bad_tgt.data(), 2, W.data(), 4, 2, e.data()), Error);
  EXPECT_THROW(embedding_backward(neg_tgt.data(), 2, x.data(), 4, 2, e.data()), Error);
  try {
    cross_entropy(logits.data(), bad_tgt.data(), 2, 4, 1.0f, nullptr);
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("target id 4"), std::string::npos) << err.what();
  }
}

}  // namespace
}  // namespace bitnet::train
