#include "training/model.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "training/rng.h"

namespace bitnet::train {

TrainModel make_train_model(const ModelConfig& cfg, bool tied, bool quantize, uint64_t seed) {
  validate(cfg);
  TrainModel m;
  m.cfg = cfg;
  m.tied = tied;
  m.quantize = quantize;
  const int64_t d = cfg.n_embd, qd = cfg.q_dim(), kvd = cfg.kv_dim(), ff = cfg.n_ff;
  int64_t off = 0;
  auto add = [&](std::string name, int64_t rows, int64_t cols, bool decay) {
    m.tensors.push_back({std::move(name), off, rows, cols, decay});
    const int64_t at = off;
    off += rows * cols;
    return at;
  };
  m.tok_embd = add("model.embed_tokens.weight", cfg.n_vocab, d, false);
  for (int64_t il = 0; il < cfg.n_layer; ++il) {
    const std::string h = "model.layers." + std::to_string(il) + ".";
    TrainModel::Layer L{};
    L.attn_norm = add(h + "input_layernorm.weight", 1, d, false);
    L.wqkv = add(h + "self_attn.qkv_proj.weight", qd + 2 * kvd, d, true);
    L.attn_sub_norm = cfg.sub_norms ? add(h + "self_attn.attn_sub_norm.weight", 1, qd, false) : -1;
    L.wo = add(h + "self_attn.o_proj.weight", d, qd, true);
    L.ffn_norm = add(h + "post_attention_layernorm.weight", 1, d, false);
    L.w_gate_up = add(h + "mlp.gate_up_proj.weight", 2 * ff, d, true);
    L.ffn_sub_norm = cfg.sub_norms ? add(h + "mlp.ffn_sub_norm.weight", 1, ff, false) : -1;
    L.w_down = add(h + "mlp.down_proj.weight", d, ff, true);
    m.layers.push_back(L);
  }
  m.output_norm = add("model.norm.weight", 1, d, false);
  m.output = tied ? m.tok_embd : add("lm_head.weight", cfg.n_vocab, d, true);
  m.params.assign(static_cast<size_t>(off), 0.0f);

  Rng rng(seed);
  const float resid_std = 0.02f / std::sqrt(2.0f * static_cast<float>(cfg.n_layer));
  for (const ParamTensor& t : m.tensors) {
    float* p = m.at(t.offset);
    const bool norm = t.rows == 1;
    const bool resid =
        t.name.find("o_proj") != std::string::npos || t.name.find("down_proj") != std::string::npos;
    for (int64_t i = 0; i < t.size(); ++i) p[i] = norm ? 1.0f : rng.normal() * (resid ? resid_std : 0.02f);
  }
  return m;
}

namespace {

void resize(std::vector<float>& v, int64_t n) {
  v.assign(static_cast<size_t>(n), 0.0f);
}

void prepare(Workspace& ws, const ModelConfig& c, int64_t B, int64_t S) {
  if (ws.batch == B && ws.seq == S && ws.layers.size() == static_cast<size_t>(c.n_layer)) return;
  const int64_t T = B * S, d = c.n_embd, qd = c.q_dim(), qkv_n = qd + 2 * c.kv_dim(), ff = c.n_ff;
  ws.batch = B;
  ws.seq = S;
  ws.layers.assign(static_cast<size_t>(c.n_layer), {});
  for (auto& a : ws.layers) {
    resize(a.x, T * d);
    resize(a.h1, T * d);
    resize(a.rstd1, T);
    resize(a.qkv, T * qkv_n);
    resize(a.att, B * c.n_head * S * S);
    resize(a.attn, T * qd);
    resize(a.attn_sn, T * qd);
    resize(a.rstd_a, T);
    resize(a.x_mid, T * d);
    resize(a.h2, T * d);
    resize(a.rstd2, T);
    resize(a.gu, T * 2 * ff);
    resize(a.act, T * ff);
    resize(a.act_sn, T * ff);
    resize(a.rstd_f, T);
  }
  resize(ws.x_final, T * d);
  resize(ws.h_final, T * d);
  resize(ws.rstd_final, T);
  resize(ws.logits, T * c.n_vocab);
  resize(ws.dx, T * d);
  resize(ws.dh, T * std::max(d, ff));
  resize(ws.dqkv, T * qkv_n);
  resize(ws.dattn, T * qd);
  resize(ws.dgu, T * 2 * ff);
  resize(ws.dact, T * ff);
  resize(ws.dlogits, T * c.n_vocab);
}

void zero(std::vector<float>& v, int64_t n) {
  std::fill(v.begin(), v.begin() + n, 0.0f);
}

}  // namespace

BatchResult forward_backward(ThreadPool* pool, const TrainModel& m, const int32_t* inputs,
                             const int32_t* targets, int64_t B, int64_t S, float grad_scale,
                             std::vector<float>* grads, Workspace& ws) {
  const ModelConfig& c = m.cfg;
  if (B <= 0 || S <= 0) fail("train: batch {} x sequence {} must be positive", B, S);
  if (grads && grads->size() != m.params.size())
    fail("train: gradient buffer holds {} values, the model {}", grads->size(), m.params.size());
  for (int64_t i = 0; i < B * S; ++i)
    if (inputs[i] < 0 || inputs[i] >= c.n_vocab)
      fail("train: token id {} is out of range (vocabulary of {})", inputs[i], c.n_vocab);
  prepare(ws, c, B, S);
  const int64_t T = B * S, d = c.n_embd, qd = c.q_dim(), kvd = c.kv_dim(), qkv_n = qd + 2 * kvd, ff = c.n_ff;
  const int64_t qkv_groups[] = {qd, kvd, kvd}, gu_groups[] = {ff, ff}, d_group[] = {d};
  const RopeShape rs{S, c.n_head, c.n_head_kv, c.head_dim, c.rope_dim, c.rope_theta, c.rope};
  const AttnShape as{B, S, c.n_head, c.n_head_kv, c.head_dim};
  const bool q = m.quantize;

  // ---- forward: the engine's recipe (model/config.h), layer by layer ----
  std::vector<float> x(static_cast<size_t>(T * d));
  embedding_forward(inputs, T, m.at(m.tok_embd), c.n_vocab, d, x.data());
  for (int64_t il = 0; il < c.n_layer; ++il) {
    const TrainModel::Layer& L = m.layers[static_cast<size_t>(il)];
    Workspace::LayerActs& a = ws.layers[static_cast<size_t>(il)];
    std::copy(x.begin(), x.end(), a.x.begin());
    rmsnorm_forward(x.data(), m.at(L.attn_norm), T, d, c.rms_eps, a.h1.data(), a.rstd1.data());
    bitlinear_forward(pool, a.h1.data(), T, d, m.at(L.wqkv), qkv_n, qkv_groups, q, a.qkv.data(), a.c_qkv);
    rope_forward(a.qkv.data(), T, rs);
    attention_forward(pool, a.qkv.data(), as, a.attn.data(), a.att.data());
    const float* o_in = a.attn.data();
    if (c.sub_norms) {
      rmsnorm_forward(a.attn.data(), m.at(L.attn_sub_norm), T, qd, c.rms_eps, a.attn_sn.data(),
                      a.rstd_a.data());
      o_in = a.attn_sn.data();
    }
    std::vector<float>& y = ws.dh;  // scratch for the o product before the residual add
    bitlinear_forward(pool, o_in, T, qd, m.at(L.wo), d, d_group, q, y.data(), a.c_o);
    for (int64_t i = 0; i < T * d; ++i) x[static_cast<size_t>(i)] += y[static_cast<size_t>(i)];
    std::copy(x.begin(), x.end(), a.x_mid.begin());
    rmsnorm_forward(x.data(), m.at(L.ffn_norm), T, d, c.rms_eps, a.h2.data(), a.rstd2.data());
    bitlinear_forward(pool, a.h2.data(), T, d, m.at(L.w_gate_up), 2 * ff, gu_groups, q, a.gu.data(), a.c_gu);
    gated_forward(a.gu.data(), T, ff, c.act, a.act.data());
    const float* down_in = a.act.data();
    if (c.sub_norms) {
      rmsnorm_forward(a.act.data(), m.at(L.ffn_sub_norm), T, ff, c.rms_eps, a.act_sn.data(), a.rstd_f.data());
      down_in = a.act_sn.data();
    }
    bitlinear_forward(pool, down_in, T, ff, m.at(L.w_down), d, d_group, q, y.data(), a.c_down);
    for (int64_t i = 0; i < T * d; ++i) x[static_cast<size_t>(i)] += y[static_cast<size_t>(i)];
  }
  std::copy(x.begin(), x.end(), ws.x_final.begin());
  rmsnorm_forward(x.data(), m.at(m.output_norm), T, d, c.rms_eps, ws.h_final.data(), ws.rstd_final.data());
  matmul_forward(pool, ws.h_final.data(), T, d, m.at(m.output), c.n_vocab, ws.logits.data());
  BatchResult r;
  r.tokens = T;
  r.loss_sum =
      cross_entropy(ws.logits.data(), targets, T, c.n_vocab, grad_scale, grads ? ws.dlogits.data() : nullptr);
  if (!grads) return r;

  // ---- backward, in reverse ----
  float* g = grads->data();
  std::vector<float>& dx = ws.dx;  // gradient of the residual stream
  zero(dx, T * d);
  zero(ws.dh, T * d);
  matmul_backward(pool, ws.dlogits.data(), ws.h_final.data(), T, d, m.at(m.output), c.n_vocab, ws.dh.data(),
                  g + m.output);
  rmsnorm_backward(ws.dh.data(), ws.x_final.data(), m.at(m.output_norm), ws.rstd_final.data(), T, d,
                   dx.data(), g + m.output_norm);
  for (int64_t il = c.n_layer - 1; il >= 0; --il) {
    const TrainModel::Layer& L = m.layers[static_cast<size_t>(il)];
    Workspace::LayerActs& a = ws.layers[static_cast<size_t>(il)];
    // down product (its output was added to the residual: its gradient is dx)
    float* dact = ws.dact.data();
    zero(ws.dact, T * ff);
    const float* down_in = c.sub_norms ? a.act_sn.data() : a.act.data();
    if (c.sub_norms) {
      zero(ws.dh, T * ff);
      bitlinear_backward(pool, dx.data(), down_in, T, ff, m.at(L.w_down), d, a.c_down, ws.dh.data(),
                         g + L.w_down);
      rmsnorm_backward(ws.dh.data(), a.act.data(), m.at(L.ffn_sub_norm), a.rstd_f.data(), T, ff, dact,
                       g + L.ffn_sub_norm);
    } else {
      bitlinear_backward(pool, dx.data(), down_in, T, ff, m.at(L.w_down), d, a.c_down, dact, g + L.w_down);
    }
    zero(ws.dgu, T * 2 * ff);
    gated_backward(dact, a.gu.data(), T, ff, c.act, ws.dgu.data());
    zero(ws.dh, T * d);
    bitlinear_backward(pool, ws.dgu.data(), a.h2.data(), T, d, m.at(L.w_gate_up), 2 * ff, a.c_gu,
                       ws.dh.data(), g + L.w_gate_up);
    rmsnorm_backward(ws.dh.data(), a.x_mid.data(), m.at(L.ffn_norm), a.rstd2.data(), T, d, dx.data(),
                     g + L.ffn_norm);
    // o product
    zero(ws.dattn, T * qd);
    const float* o_in = c.sub_norms ? a.attn_sn.data() : a.attn.data();
    if (c.sub_norms) {
      zero(ws.dh, T * qd);
      bitlinear_backward(pool, dx.data(), o_in, T, qd, m.at(L.wo), d, a.c_o, ws.dh.data(), g + L.wo);
      rmsnorm_backward(ws.dh.data(), a.attn.data(), m.at(L.attn_sub_norm), a.rstd_a.data(), T, qd,
                       ws.dattn.data(), g + L.attn_sub_norm);
    } else {
      bitlinear_backward(pool, dx.data(), o_in, T, qd, m.at(L.wo), d, a.c_o, ws.dattn.data(), g + L.wo);
    }
    zero(ws.dqkv, T * qkv_n);
    attention_backward(pool, ws.dattn.data(), a.qkv.data(), a.att.data(), as, ws.dqkv.data());
    rope_backward(ws.dqkv.data(), T, rs);
    zero(ws.dh, T * d);
    bitlinear_backward(pool, ws.dqkv.data(), a.h1.data(), T, d, m.at(L.wqkv), qkv_n, a.c_qkv, ws.dh.data(),
                       g + L.wqkv);
    rmsnorm_backward(ws.dh.data(), a.x.data(), m.at(L.attn_norm), a.rstd1.data(), T, d, dx.data(),
                     g + L.attn_norm);
  }
  embedding_backward(inputs, T, dx.data(), c.n_vocab, d, g + m.tok_embd);
  return r;
}

}  // namespace bitnet::train
