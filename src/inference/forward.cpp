#include "inference/forward.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "inference/ops.h"
#include "quant/act_quant.h"
#include "quant/gemm.h"
#include "quant/vec.h"

namespace bitnet {

Session::Session(const Model& model, const SessionOptions& opts)
    : model_(model), opts_(opts), pool_(opts.threads) {
  const ModelConfig& c = model.cfg;
  if (opts.n_ctx <= 0) fail("context size must be positive, got {}", opts.n_ctx);
  const size_t cache = static_cast<size_t>(c.n_layer * opts.n_ctx * c.kv_dim());
  if (opts.kv_f16) {
    k16_.assign(cache, 0);
    v16_.assign(cache, 0);
  } else {
    k_cache_.assign(cache, 0.0f);
    v_cache_.assign(cache, 0.0f);
  }
}

void Session::truncate(int64_t n) {
  BN_CHECK(n >= 0 && n <= n_past_, "truncate to {} of {}", n, n_past_);
  n_past_ = n;
}

// Per-token work (norms, activation quantization, RoPE, residual adds) runs split over tokens;
// each token's result is computed by one thread in one order, so logits do not depend on the
// thread count. A single token (decode) runs inline on the caller.
template <typename F>
static void per_token(ThreadPool& pool, int64_t n, F&& f) {
  pool.parallel_for(n, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) f(t);
  });
}

void Session::layer(int64_t il, int64_t n, float* x) {
  const ModelConfig& c = model_.cfg;
  const LayerWeights& L = model_.layers[static_cast<size_t>(il)];
  const int64_t d = c.n_embd, qd = c.q_dim(), kvd = c.kv_dim(), hd = c.head_dim, ff = c.n_ff;
  const int64_t qkv_n = qd + 2 * kvd;
  const bool f16 = opts_.kv_f16;
  const size_t layer_off = static_cast<size_t>(il * opts_.n_ctx * kvd);
  float* h = arena_.alloc<float>(static_cast<size_t>(n * d));  // normed rows

  // Attention block: RMSNorm and quantization fused per token, then one q|k|v product.
  QuantizedActs qa = alloc_quantized_acts(arena_, n, d);
  per_token(pool_, n, [&](int64_t t) {
    rms_norm(x + t * d, L.attn_norm.data(), d, c.rms_eps, h + t * d);
    quantize_act_row(h + t * d, qa, t);
  });
  float* qkv = arena_.alloc<float>(static_cast<size_t>(n * qkv_n));
  ternary_gemm(&pool_, L.wqkv, qa, {nullptr, 0, qkv, qkv_n});
  per_token(pool_, n, [&](int64_t t) {
    float* q = qkv + t * qkv_n;
    float* k = q + qd;
    const int64_t pos = n_past_ + t;
    rope(q, c.n_head, hd, c.rope_dim, pos, c.rope_theta, c.rope);
    rope(k, c.n_head_kv, hd, c.rope_dim, pos, c.rope_theta, c.rope);
    const size_t at = layer_off + static_cast<size_t>(pos * kvd);
    if (f16) {
      f32_to_f16_row(k, k16_.data() + at, kvd);
      f32_to_f16_row(k + kvd, v16_.data() + at, kvd);
    } else {
      std::memcpy(k_cache_.data() + at, k, static_cast<size_t>(kvd) * 4);
      std::memcpy(v_cache_.data() + at, k + kvd, static_cast<size_t>(kvd) * 4);
    }
  });
  float* attn = arena_.alloc<float>(static_cast<size_t>(n * qd));
  const int64_t group = c.n_head / c.n_head_kv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t n_kv_max = n_past_ + n;
  const int nt = pool_.size();
  float* scores_all = arena_.alloc<float>(static_cast<size_t>(nt * n_kv_max));
  float* qh_all = arena_.alloc<float>(static_cast<size_t>(nt * hd));
  uint16_t* q16_all = arena_.alloc<uint16_t>(static_cast<size_t>(nt * hd));
  pool_.run([&](int tid) {
    float* scores = scores_all + tid * n_kv_max;
    for (int64_t job = tid; job < n * c.n_head; job += nt) {
      const int64_t t = job / c.n_head, hh = job % c.n_head, kvh = hh / group;
      const float* q = qkv + t * qkv_n + hh * hd;
      if (f16) {  // the query meets half keys as a half, like ggml's f16 dot product
        float* qh = qh_all + tid * hd;
        uint16_t* q16 = q16_all + tid * hd;
        f32_to_f16_row(q, q16, hd);
        f16_to_f32_row(q16, qh, hd);
        q = qh;
      }
      const int64_t n_kv = n_past_ + t + 1;  // causal
      float mx = -INFINITY;
      for (int64_t j = 0; j < n_kv; ++j) {
        const size_t kat = layer_off + static_cast<size_t>(j * kvd + kvh * hd);
        scores[j] = (f16 ? dot_f16_f32(k16_.data() + kat, q, hd) : dot_f32(q, k_cache_.data() + kat, hd)) * scale;
        mx = std::max(mx, scores[j]);
      }
      double sum = 0;
      for (int64_t j = 0; j < n_kv; ++j) {
        scores[j] = std::exp(scores[j] - mx);
        sum += scores[j];
      }
      const float inv = static_cast<float>(1.0 / sum);
      float* o = attn + t * qd + hh * hd;
      std::fill(o, o + hd, 0.0f);
      for (int64_t j = 0; j < n_kv; ++j) {
        const size_t vat = layer_off + static_cast<size_t>(j * kvd + kvh * hd);
        const float p = scores[j] * inv;
        if (f16) axpy_f16(f16_to_f32(f32_to_f16(p)), v16_.data() + vat, o, hd);
        else axpy_f32(p, v_cache_.data() + vat, o, hd);
      }
    }
  });
  QuantizedActs qo = alloc_quantized_acts(arena_, n, qd);
  per_token(pool_, n, [&](int64_t t) {
    float* a = attn + t * qd;
    if (!L.attn_sub_norm.empty()) rms_norm(a, L.attn_sub_norm.data(), qd, c.rms_eps, a);
    quantize_act_row(a, qo, t);
  });
  float* o = arena_.alloc<float>(static_cast<size_t>(n * d));
  ternary_gemm(&pool_, L.wo, qo, {nullptr, 0, o, d});

  // Feed-forward block: the residual add, RMSNorm and quantization fused per token.
  QuantizedActs qf = alloc_quantized_acts(arena_, n, d);
  per_token(pool_, n, [&](int64_t t) {
    float* xt = x + t * d;
    const float* ot = o + t * d;
    for (int64_t i = 0; i < d; ++i) xt[i] += ot[i];
    rms_norm(xt, L.ffn_norm.data(), d, c.rms_eps, h + t * d);
    quantize_act_row(h + t * d, qf, t);
  });
  float* gu = arena_.alloc<float>(static_cast<size_t>(n * 2 * ff));
  ternary_gemm(&pool_, L.w_gate_up, qf, {nullptr, 0, gu, 2 * ff});
  QuantizedActs qd_ = alloc_quantized_acts(arena_, n, ff);
  float* act = arena_.alloc<float>(static_cast<size_t>(n * ff));
  per_token(pool_, n, [&](int64_t t) {
    float* at = act + t * ff;
    gated_act(gu + t * 2 * ff, gu + t * 2 * ff + ff, ff, c.act, at);
    if (!L.ffn_sub_norm.empty()) rms_norm(at, L.ffn_sub_norm.data(), ff, c.rms_eps, at);
    quantize_act_row(at, qd_, t);
  });
  ternary_gemm(&pool_, L.w_down, qd_, {nullptr, 0, o, d});
  per_token(pool_, n, [&](int64_t t) {
    float* xt = x + t * d;
    const float* ot = o + t * d;
    for (int64_t i = 0; i < d; ++i) xt[i] += ot[i];
  });
}

const float* Session::forward(std::span<const int32_t> tokens, bool all_logits) {
  const ModelConfig& c = model_.cfg;
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n == 0) fail("forward: no tokens");
  if (n_past_ + n > opts_.n_ctx)
    fail("context overflow: {} cached + {} new tokens > context size {}", n_past_, n, opts_.n_ctx);
  arena_.reset();
  const int64_t d = c.n_embd;
  float* x = arena_.alloc<float>(static_cast<size_t>(n * d));
  for (int64_t t = 0; t < n; ++t) embedding_row(model_.token_embd, tokens[static_cast<size_t>(t)], x + t * d);
  for (int64_t il = 0; il < c.n_layer; ++il) layer(il, n, x);
  const int64_t n_out = all_logits ? n : 1;
  const float* last = x + (n - n_out) * d;
  float* xn = arena_.alloc<float>(static_cast<size_t>(n_out * d));
  for (int64_t t = 0; t < n_out; ++t) rms_norm(last + t * d, model_.output_norm.data(), d, c.rms_eps, xn + t * d);
  logits_.resize(static_cast<size_t>(n_out * c.n_vocab));
  head_matmul(&pool_, model_.output, xn, n_out, logits_.data());
  n_past_ += n;
  return logits_.data();
}

}  // namespace bitnet
