// The engine's forward pass against a plain reference written here from the spec (a different
// code path: int8 matrices instead of the native layout, double-precision arithmetic, no fusing,
// no KV cache), plus cache and threading invariants.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "inference/forward.h"
#include "model/synthetic.h"
#include "quant/dequant.h"
#include "quant/head.h"
#include "tiny_config.h"

namespace bitnet {
namespace {

struct RefMatrix {
  int64_t n = 0, k = 0;
  std::vector<int8_t> w;
  std::vector<float> scale;
};

RefMatrix to_ref(const TernaryMatrix& m) {
  RefMatrix r{m.n, m.k, std::vector<int8_t>(static_cast<size_t>(m.n * m.k)), {}};
  unpack_native(m, r.w.data());
  r.scale.assign(m.row_scale(), m.row_scale() + m.n);
  return r;
}

// BitLinear from the spec: per-token absmax int8, exact integer dot, scales.
std::vector<double> ref_bitlinear(const RefMatrix& m, const std::vector<double>& x) {
  double amax = 0;
  for (double v : x) amax = std::max(amax, std::fabs(v));
  const float s = 127.0f / std::max(static_cast<float>(amax), 1e-5f);
  std::vector<int> q(x.size());
  for (size_t i = 0; i < x.size(); ++i)
    q[i] = static_cast<int>(std::clamp(std::nearbyint(static_cast<float>(x[i]) * s), -128.0f, 127.0f));
  std::vector<double> y(static_cast<size_t>(m.n));
  for (int64_t j = 0; j < m.n; ++j) {
    long acc = 0;
    for (int64_t i = 0; i < m.k; ++i)
      acc += m.w[static_cast<size_t>(j * m.k + i)] * q[static_cast<size_t>(i)];
    y[static_cast<size_t>(j)] = static_cast<double>(acc) * m.scale[static_cast<size_t>(j)] / s;
  }
  return y;
}

std::vector<double> ref_rms(const std::vector<double>& x, const std::vector<float>& w, double eps) {
  double ss = 0;
  for (double v : x) ss += v * v;
  const double r = 1.0 / std::sqrt(ss / static_cast<double>(x.size()) + eps);
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * r * w[i];
  return y;
}

void ref_rope(double* v, int64_t hd, int64_t rd, int64_t pos, double theta, RopeStyle st) {
  for (int64_t i = 0; i < rd / 2; ++i) {
    const double a =
        static_cast<double>(pos) * std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(rd));
    const int64_t p = st == RopeStyle::kNeox ? i : 2 * i, q = st == RopeStyle::kNeox ? i + rd / 2 : 2 * i + 1;
    const double x0 = v[p], x1 = v[q];
    v[p] = x0 * std::cos(a) - x1 * std::sin(a);
    v[q] = x0 * std::sin(a) + x1 * std::cos(a);
  }
  (void)hd;
}

// Logits for every position of `tokens`, recomputing everything from scratch.
double h16(double v) {
  return f16_to_f32(f32_to_f16(static_cast<float>(v)));
}

// half_kv: keys, values, queries and attention probabilities rounded to IEEE half, as the
// engine's (and llama.cpp's) f16 KV cache does.
std::vector<std::vector<double>> reference_forward(const Model& m, const std::vector<int32_t>& tokens,
                                                   bool half_kv) {
  const ModelConfig& c = m.cfg;
  const int64_t d = c.n_embd, hd = c.head_dim, T = static_cast<int64_t>(tokens.size());
  std::vector<std::vector<double>> x(static_cast<size_t>(T));
  std::vector<float> row(static_cast<size_t>(d));
  for (int64_t t = 0; t < T; ++t) {
    embedding_row(m.token_embd, tokens[static_cast<size_t>(t)], row.data());  // any held layout
    x[static_cast<size_t>(t)].assign(row.begin(), row.end());
  }
  for (const LayerWeights& L : m.layers) {
    // Split the fused matrices back into their logical parts.
    RefMatrix qkv = to_ref(L.wqkv), wo = to_ref(L.wo), gu = to_ref(L.w_gate_up), down = to_ref(L.w_down);
    std::vector<std::vector<double>> q(static_cast<size_t>(T)), k(static_cast<size_t>(T)),
        v(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) {
      auto y = ref_bitlinear(qkv, ref_rms(x[static_cast<size_t>(t)], L.attn_norm, c.rms_eps));
      q[static_cast<size_t>(t)].assign(y.begin(), y.begin() + c.q_dim());
      k[static_cast<size_t>(t)].assign(y.begin() + c.q_dim(), y.begin() + c.q_dim() + c.kv_dim());
      v[static_cast<size_t>(t)].assign(y.begin() + c.q_dim() + c.kv_dim(), y.end());
      for (int64_t h = 0; h < c.n_head; ++h)
        ref_rope(q[static_cast<size_t>(t)].data() + h * hd, hd, c.rope_dim, t, c.rope_theta, c.rope);
      for (int64_t h = 0; h < c.n_head_kv; ++h)
        ref_rope(k[static_cast<size_t>(t)].data() + h * hd, hd, c.rope_dim, t, c.rope_theta, c.rope);
      if (half_kv)
        for (auto* vec : {&q[static_cast<size_t>(t)], &k[static_cast<size_t>(t)], &v[static_cast<size_t>(t)]})
          for (auto& e : *vec) e = h16(e);
    }
    for (int64_t t = 0; t < T; ++t) {
      std::vector<double> att(static_cast<size_t>(c.q_dim()), 0.0);
      for (int64_t h = 0; h < c.n_head; ++h) {
        const int64_t kvh = h / (c.n_head / c.n_head_kv);
        std::vector<double> s(static_cast<size_t>(t + 1));
        for (int64_t j = 0; j <= t; ++j) {
          double dot = 0;
          for (int64_t i = 0; i < hd; ++i)
            dot += q[static_cast<size_t>(t)][static_cast<size_t>(h * hd + i)] *
                   k[static_cast<size_t>(j)][static_cast<size_t>(kvh * hd + i)];
          s[static_cast<size_t>(j)] = dot / std::sqrt(static_cast<double>(hd));
        }
        const double mx = *std::max_element(s.begin(), s.end());
        double sum = 0;
        for (auto& e : s) sum += (e = std::exp(e - mx));
        for (int64_t j = 0; j <= t; ++j)
          for (int64_t i = 0; i < hd; ++i)
            att[static_cast<size_t>(h * hd + i)] +=
                (half_kv ? h16(s[static_cast<size_t>(j)] / sum) : s[static_cast<size_t>(j)] / sum) *
                v[static_cast<size_t>(j)][static_cast<size_t>(kvh * hd + i)];
      }
      if (!L.attn_sub_norm.empty()) att = ref_rms(att, L.attn_sub_norm, c.rms_eps);
      auto o = ref_bitlinear(wo, att);
      for (int64_t i = 0; i < d; ++i)
        x[static_cast<size_t>(t)][static_cast<size_t>(i)] += o[static_cast<size_t>(i)];
      auto g = ref_bitlinear(gu, ref_rms(x[static_cast<size_t>(t)], L.ffn_norm, c.rms_eps));
      std::vector<double> a(static_cast<size_t>(c.n_ff));
      for (int64_t i = 0; i < c.n_ff; ++i) {
        const double gv = g[static_cast<size_t>(i)], uv = g[static_cast<size_t>(c.n_ff + i)];
        a[static_cast<size_t>(i)] = c.act == FfnAct::kRelu2 ? std::max(gv, 0.0) * std::max(gv, 0.0) * uv
                                                            : gv / (1 + std::exp(-gv)) * uv;
      }
      if (!L.ffn_sub_norm.empty()) a = ref_rms(a, L.ffn_sub_norm, c.rms_eps);
      auto dn = ref_bitlinear(down, a);
      for (int64_t i = 0; i < d; ++i)
        x[static_cast<size_t>(t)][static_cast<size_t>(i)] += dn[static_cast<size_t>(i)];
    }
  }
  std::vector<std::vector<double>> logits(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) {
    auto xn = ref_rms(x[static_cast<size_t>(t)], m.output_norm, c.rms_eps);
    for (int64_t r = 0; r < c.n_vocab; ++r) {
      embedding_row(m.output, r, row.data());
      double s = 0;
      for (int64_t i = 0; i < d; ++i) s += xn[static_cast<size_t>(i)] * row[static_cast<size_t>(i)];
      logits[static_cast<size_t>(t)].push_back(s);
    }
  }
  return logits;
}

std::vector<int32_t> some_tokens(int n, int vocab) {
  std::vector<int32_t> t;
  for (int i = 0; i < n; ++i) t.push_back((i * 37 + 11) % vocab);
  return t;
}

}  // namespace

class ForwardVsReference : public ::testing::TestWithParam<int> {};

TEST_P(ForwardVsReference, LogitsAgree) {
  const int variant = GetParam();
  const ModelConfig c = tiny_config(variant % 2 ? RopeStyle::kNorm : RopeStyle::kNeox,
                                    variant / 2 % 2 ? FfnAct::kSilu : FfnAct::kRelu2, variant != 3);
  const Model m =
      make_synthetic_model(c, 7 + static_cast<uint64_t>(variant), variant == 2 ? DType::F32 : DType::F16);
  const auto tokens = some_tokens(12, static_cast<int>(c.n_vocab));
  const bool half_kv = variant % 2 == 1;
  const auto ref = reference_forward(m, tokens, half_kv);
  Session s(m, {64, 2, half_kv});
  const float* got = s.forward(tokens, true);
  // Float rounding in the engine can flip an activation's int8 rounding now and then; each flip
  // moves a logit by well under 0.1% of the logit range (seen: 3e-7 overall), while any wiring
  // error (a wrong norm,
  // rope pairing, head grouping) moves it by tens of percent.
  double worst = 0;
  for (size_t t = 0; t < tokens.size(); ++t) {
    double range = 0;
    for (double v : ref[t]) range = std::max(range, std::fabs(v));
    for (int64_t vi = 0; vi < c.n_vocab; ++vi)
      worst = std::max(
          worst,
          std::fabs(got[static_cast<int64_t>(t) * c.n_vocab + vi] - ref[t][static_cast<size_t>(vi)]) / range);
  }
  EXPECT_LT(worst, 1e-3) << describe(c);
  RecordProperty("worst_relative_error", std::to_string(worst));
  std::printf("worst relative logit error %.3g\n", worst);
}

INSTANTIATE_TEST_SUITE_P(Archs, ForwardVsReference, ::testing::Values(0, 1, 2, 3));

TEST(Forward, KvCacheDecodeEqualsFullRecompute) {
  const ModelConfig c = tiny_config(RopeStyle::kNeox, FfnAct::kRelu2, true);
  const Model m = make_synthetic_model(c, 3);
  const auto tokens = some_tokens(10, static_cast<int>(c.n_vocab));
  Session full(m, {32, 2});
  const float* all = full.forward(tokens, true);
  std::vector<float> all_copy(all, all + 10 * c.n_vocab);
  Session inc(m, {32, 2});
  inc.forward(std::span(tokens).first(4), false);  // prefill 4 (GEMM path)...
  for (size_t t = 4; t < tokens.size(); ++t) {     // ...then decode one at a time (GEMV path)
    const float* l = inc.forward(std::span(tokens).subspan(t, 1), false);
    for (int64_t v = 0; v < c.n_vocab; ++v)
      ASSERT_EQ(l[v], all_copy[t * static_cast<size_t>(c.n_vocab) + static_cast<size_t>(v)]) << t;
  }
  EXPECT_EQ(inc.n_past(), 10);
}

// tiny_config with heads of 128 (the 2B4T head size): 4 query heads over n_head_kv KV heads.
ModelConfig wide_head_config(int64_t n_head_kv) {
  ModelConfig c = tiny_config(RopeStyle::kNeox, FfnAct::kRelu2, true);
  c.n_embd = 256;
  c.n_head = 4;
  c.n_head_kv = n_head_kv;
  c.head_dim = 128;
  c.rope_dim = 128;
  return c;
}

// Heads of 128 and 40 positions (three key tiles, the last partial): decoding token by token, a
// 13-token prompt followed by decoding, and one 40-token prompt give the same logits bit for bit
// (the scores are the same fma chains either way: vec.h, dot_f16_tiles).
TEST(Forward, DecodeEqualsPromptAcrossKeyTiles) {
  const ModelConfig c = wide_head_config(1);
  const Model m = make_synthetic_model(c, 12);
  const auto tokens = some_tokens(40, static_cast<int>(c.n_vocab));
  Session full(m, {40, 2});
  const float* all = full.forward(tokens, true);
  const std::vector<float> want(all, all + 40 * c.n_vocab);
  Session one(m, {40, 1}), mixed(m, {40, 3});
  mixed.forward(std::span(tokens).first(13), false);
  for (size_t t = 0; t < tokens.size(); ++t) {
    const float* l = one.forward(std::span(tokens).subspan(t, 1), false);
    ASSERT_EQ(std::memcmp(l, want.data() + t * static_cast<size_t>(c.n_vocab), c.n_vocab * 4), 0) << t;
    if (t < 13) continue;
    const float* lm = mixed.forward(std::span(tokens).subspan(t, 1), false);
    ASSERT_EQ(std::memcmp(lm, want.data() + t * static_cast<size_t>(c.n_vocab), c.n_vocab * 4), 0) << t;
  }
}

// Past 512 cached positions a decoded token's attention splits keys and value columns across
// jobs (forward.cpp, attention_decode_split); its logits still equal the prompt's bit for bit.
TEST(Forward, LongContextDecodeSplitEqualsPrompt) {
  const ModelConfig c = wide_head_config(2);
  const Model m = make_synthetic_model(c, 13);
  const int n = 530;
  const auto tokens = some_tokens(n, static_cast<int>(c.n_vocab));
  Session full(m, {n, 2});
  const float* all = full.forward(tokens, true);
  const std::vector<float> want(all, all + static_cast<size_t>(n) * c.n_vocab);
  for (int threads : {1, 2, 3}) {
    Session inc(m, {n, threads});
    inc.forward(std::span(tokens).first(505), false);
    for (int t = 505; t < n; ++t) {
      const float* l = inc.forward(std::span(tokens).subspan(static_cast<size_t>(t), 1), false);
      ASSERT_EQ(std::memcmp(l, want.data() + static_cast<size_t>(t) * c.n_vocab, c.n_vocab * 4), 0)
          << t << " " << threads;
    }
  }
}

// Prompts compute gate|up in stripes of rows per thread with the activation applied per stripe
// (forward.cpp); decoding runs the whole product. With an FFN of 1040 (stripes of 512, 512, 16)
// the two give the same logits bit for bit at 1, 2 and 3 threads; an FFN of 100 (not a multiple
// of 16) takes the whole-product path for prompts too.
TEST(Forward, StripedGateUpEqualsTheWholeProduct) {
  for (int64_t ff : {1040, 100}) {
    ModelConfig c = tiny_config(RopeStyle::kNeox, FfnAct::kRelu2, true);
    c.n_ff = ff;
    const Model m = make_synthetic_model(c, 14);
    const auto tokens = some_tokens(9, static_cast<int>(c.n_vocab));
    for (int threads : {1, 2, 3}) {
      Session full(m, {16, threads}), one(m, {16, threads});
      const float* all = full.forward(tokens, true);
      const std::vector<float> want(all, all + 9 * c.n_vocab);
      for (size_t t = 0; t < tokens.size(); ++t) {
        const float* l = one.forward(std::span(tokens).subspan(t, 1), false);
        ASSERT_EQ(std::memcmp(l, want.data() + t * static_cast<size_t>(c.n_vocab), c.n_vocab * 4), 0)
            << ff << " " << threads << " " << t;
      }
    }
  }
}

TEST(Forward, ThreadCountDoesNotChangeLogits) {
  const ModelConfig c = tiny_config(RopeStyle::kNeox, FfnAct::kRelu2, true);
  const Model m = make_synthetic_model(c, 5);
  const auto tokens = some_tokens(7, static_cast<int>(c.n_vocab));
  Session a(m, {16, 1}), b(m, {16, 3});
  const float* la = a.forward(tokens, true);
  std::vector<float> ca(la, la + 7 * c.n_vocab);
  const float* lb = b.forward(tokens, true);
  for (size_t i = 0; i < ca.size(); ++i) ASSERT_EQ(ca[i], lb[i]) << i;
}

// A long prompt runs in micro-batches; the split must not change any logit, and all-logits output
// must cover every token.
TEST(Forward, MicroBatchesDoNotChangeLogits) {
  const ModelConfig c = tiny_config(RopeStyle::kNeox, FfnAct::kRelu2, true);
  const Model m = make_synthetic_model(c, 8, DType::Q8_0);
  const auto tokens = some_tokens(23, static_cast<int>(c.n_vocab));
  SessionOptions whole{32, 2};
  SessionOptions pieces = whole;
  pieces.n_ubatch = 5;
  Session a(m, whole), b(m, pieces);
  const float* la = a.forward(tokens, true);
  std::vector<float> ca(la, la + 23 * c.n_vocab);
  const float* lb = b.forward(tokens, true);
  for (size_t i = 0; i < ca.size(); ++i) ASSERT_EQ(ca[i], lb[i]) << i;
  Session d(m, pieces);
  const float* last = d.forward(tokens, false);
  for (int64_t v = 0; v < c.n_vocab; ++v)
    ASSERT_EQ(last[v], ca[22 * static_cast<size_t>(c.n_vocab) + static_cast<size_t>(v)]);
  EXPECT_EQ(d.n_past(), 23);
}

TEST(Forward, ErrorsOnOverflowAndBadToken) {
  const ModelConfig c = tiny_config(RopeStyle::kNeox, FfnAct::kRelu2, true);
  const Model m = make_synthetic_model(c, 5);
  Session s(m, {4, 1});
  const std::vector<int32_t> five = {1, 2, 3, 4, 5};
  EXPECT_THROW(s.forward(five), Error);
  const std::vector<int32_t> bad = {1000};
  EXPECT_THROW(s.forward(bad), Error);
  const std::vector<int32_t> late_bad = {1, 2, -1};  // rejected before any token is cached
  EXPECT_THROW(s.forward(late_bad), Error);
  EXPECT_EQ(s.n_past(), 0);
}

}  // namespace bitnet
