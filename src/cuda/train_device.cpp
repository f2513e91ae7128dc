#include "cuda/train_device.h"

#include "core/error.h"

namespace bitnet::cuda {

using train::TrainModel;

void DeviceTrainer::prepare(const ModelConfig& c, int64_t B, int64_t S, bool q) {
  if (batch == B && seq == S && quantized == q) return;
  const size_t T = static_cast<size_t>(B * S), d = static_cast<size_t>(c.n_embd),
               qd = static_cast<size_t>(c.q_dim()), qkv_n = qd + 2 * static_cast<size_t>(c.kv_dim()),
               ff = static_cast<size_t>(c.n_ff), V = static_cast<size_t>(c.n_vocab);
  layers.resize(static_cast<size_t>(c.n_layer));
  for (LayerActs& a : layers) {
    a.x.resize(T * d);
    a.h1.resize(T * d);
    a.rstd1.resize(T);
    a.qkv.resize(q ? 0 : T * qkv_n);  // quantized: the qkv product stays in c_qkv
    a.lse.resize(static_cast<size_t>(B * c.n_head * S));
    a.attn.resize(T * qd);
    a.attn_sn.resize(T * qd);
    a.rstd_a.resize(T);
    a.x_mid.resize(T * d);
    a.h2.resize(T * d);
    a.rstd2.resize(T);
    a.gu.resize(q ? 0 : T * 2 * ff);  // quantized: the gate|up product stays in c_gu (product_rows)
    a.act.resize(T * ff);
    a.act_sn.resize(T * ff);
    a.rstd_f.resize(T);
  }
  y.resize(T * d);
  x_final.resize(T * d);
  h_final.resize(T * d);
  rstd_final.resize(T);
  logits.resize(q ? 0 : T * V);
  dx.resize(T * d);
  dh.resize(T * std::max(d, ff));
  dqkv.resize(T * qkv_n);
  dattn.resize(T * qd);
  dgu.resize(q ? 0 : T * 2 * ff);
  dy_w.resize(q ? T * std::max(2 * ff, qkv_n) : 0);
  dy_x.resize(q ? T * std::max(2 * ff, qkv_n) : 0);
  dact.resize(T * ff);
  dlogits.resize(q ? 0 : T * V);
  logits_bf16.resize(q ? T * V : 0);
  tokens.resize(T);
  targets.resize(T);
  make_rope_table({S, c.n_head, c.n_head_kv, c.head_dim, c.rope_dim, c.rope_theta, c.rope}, rope);
  batch = B;
  seq = S;
  quantized = q;
}

double DeviceTrainer::forward_backward(const TrainModel& mdl, const int32_t* in, const int32_t* tg, int64_t B,
                                       int64_t S, float grad_scale, bool with_grads) {
  const ModelConfig& c = mdl.cfg;
  prepare(c, B, S, mdl.quantize);
  const int64_t T = B * S, d = c.n_embd, qd = c.q_dim(), kvd = c.kv_dim(), qkv_n = qd + 2 * kvd, ff = c.n_ff;
  const size_t Tz = static_cast<size_t>(T);
  const int64_t qkv_groups[] = {qd, kvd, kvd}, gu_groups[] = {ff, ff}, d_group[] = {d};
  const train::RopeShape rs{S, c.n_head, c.n_head_kv, c.head_dim, c.rope_dim, c.rope_theta, c.rope};
  const train::AttnShape as{B, S, c.n_head, c.n_head_kv, c.head_dim};
  const bool q = mdl.quantize;
  auto P = [&](int64_t off) { return params.data() + off; };
  auto G = [&](int64_t off) { return grads.data() + off; };
  BN_CUDA(cudaMemcpy(tokens.data(), in, Tz * 4, cudaMemcpyHostToDevice));
  BN_CUDA(cudaMemcpy(targets.data(), tg, Tz * 4, cudaMemcpyHostToDevice));

  prof.mark("embedding", stream);
  // The residual stream lives in each layer's input buffer (a.x, then a.x_mid), the last layer
  // writing x_final: every layer's inputs stay for the backward without copies.
  embedding_forward(ctx, tokens.data(), T, P(mdl.tok_embd), c.n_vocab, d,
                    c.n_layer > 0 ? layers[0].x.data() : x_final.data(), stream);
  bool normed = false;  // quantized: the layer's first norm already ran with the residual add before it
  for (int64_t il = 0; il < c.n_layer; ++il) {
    const TrainModel::Layer& L = mdl.layers[static_cast<size_t>(il)];
    LayerActs& a = layers[static_cast<size_t>(il)];
    // Quantized, each norm before a BitLinear writes its codes (rmsnorm_quantize), not its output.
    auto norm_linear = [&](const char* norm_op, const float* x, const float* nw, int64_t n, float* rstd,
                           float* h, const char* op, const float* W, int64_t out,
                           std::span<const int64_t> groups, float* yo, BitLinearCache& cache) {
      prof.mark(norm_op, stream);
      if (q) {
        rmsnorm_quantize(ctx, x, nw, T, n, c.rms_eps, rstd, cache, stream);
        prof.mark(op, stream);
        bitlinear_forward_codes(ctx, T, n, W, out, groups, yo, cache, stream);
      } else {
        rmsnorm_forward(x, nw, T, n, c.rms_eps, h, rstd, stream);
        prof.mark(op, stream);
        bitlinear_forward(ctx, h, T, n, W, out, groups, false, yo, cache, stream);
      }
    };
    if (normed) {  // the previous layer's residual add wrote this norm's codes
      prof.mark("qkv", stream);
      bitlinear_forward_codes(ctx, T, d, P(L.wqkv), qkv_n, qkv_groups, nullptr, a.c_qkv, stream);
    } else {
      norm_linear("norm", a.x.data(), P(L.attn_norm), d, a.rstd1.data(), a.h1.data(), "qkv", P(L.wqkv), qkv_n,
                  qkv_groups, q ? nullptr : a.qkv.data(), a.c_qkv);
    }
    prof.mark("rope", stream);
    if (q)  // the qkv product read from its cache, its float output never written
      rope_attention_operands(a.c_qkv, T, rs, rope, as, a.ops, stream);
    else
      rope_attention_operands(a.qkv.data(), T, rs, rope, as, a.ops, stream);  // qkv stays unrotated
    prof.mark("attention", stream);
    attention_forward(ctx, a.ops, as, a.attn.data(), a.lse.data(), stream);
    // Quantized, the o, gate|up and down products stay int32 in their caches: the residual adds
    // and the activation apply the epilogue as they read them (product_rows), so their float
    // outputs are never written.
    float* const y_o = q ? nullptr : y.data();
    if (c.sub_norms) {
      norm_linear("norm", a.attn.data(), P(L.attn_sub_norm), qd, a.rstd_a.data(), a.attn_sn.data(), "o",
                  P(L.wo), d, d_group, y_o, a.c_o);
    } else {
      prof.mark("o", stream);
      bitlinear_forward(ctx, a.attn.data(), T, qd, P(L.wo), d, d_group, q, y_o, a.c_o, stream);
    }
    // The FFN. Quantized, the residual add and the norm after it run as one pass, as do the
    // activation and the sub-norm: x_mid and act are written (the backward reads them), the norms'
    // outputs only as their codes.
    prof.mark("norm", stream);
    if (q) {
      add_rmsnorm_quantize(ctx, a.x.data(), a.c_o, T, d, a.x_mid.data(), P(L.ffn_norm), c.rms_eps,
                           a.rstd2.data(), a.c_gu, stream);
      prof.mark("gate_up", stream);
      bitlinear_forward_codes(ctx, T, d, P(L.w_gate_up), 2 * ff, gu_groups, nullptr, a.c_gu, stream);
    } else {
      kern::add(a.x.data(), y.data(), T * d, a.x_mid.data(), stream);
      norm_linear("norm", a.x_mid.data(), P(L.ffn_norm), d, a.rstd2.data(), a.h2.data(), "gate_up",
                  P(L.w_gate_up), 2 * ff, gu_groups, a.gu.data(), a.c_gu);
    }
    prof.mark("act", stream);
    if (q && c.sub_norms) {
      gated_rmsnorm_quantize(ctx, a.c_gu, T, ff, c.act, a.act.data(), P(L.ffn_sub_norm), c.rms_eps,
                             a.rstd_f.data(), a.c_down, stream);
      prof.mark("down", stream);
      bitlinear_forward_codes(ctx, T, ff, P(L.w_down), d, d_group, nullptr, a.c_down, stream);
    } else {
      if (q)
        gated_forward(a.c_gu, T, ff, c.act, a.act.data(), stream);
      else
        gated_forward(a.gu.data(), T, ff, c.act, a.act.data(), stream);
      if (c.sub_norms) {
        norm_linear("act", a.act.data(), P(L.ffn_sub_norm), ff, a.rstd_f.data(), a.act_sn.data(), "down",
                    P(L.w_down), d, d_group, y_o, a.c_down);
      } else {
        prof.mark("down", stream);
        bitlinear_forward(ctx, a.act.data(), T, ff, P(L.w_down), d, d_group, q, y_o, a.c_down, stream);
      }
    }
    prof.mark("norm", stream);
    const bool last = il + 1 == c.n_layer;
    float* const next = last ? x_final.data() : layers[static_cast<size_t>(il + 1)].x.data();
    if (q && !last) {  // the residual add and the next layer's first norm in one pass
      LayerActs& n = layers[static_cast<size_t>(il + 1)];
      add_rmsnorm_quantize(ctx, a.x_mid.data(), a.c_down, T, d, next,
                           P(mdl.layers[static_cast<size_t>(il + 1)].attn_norm), c.rms_eps, n.rstd1.data(),
                           n.c_qkv, stream);
      normed = true;
    } else if (q) {
      add_product(a.x_mid.data(), a.c_down, T, d, next, stream);
    } else {
      kern::add(a.x_mid.data(), y.data(), T * d, next, stream);
    }
  }
  prof.mark("head", stream);
  rmsnorm_forward(x_final.data(), P(mdl.output_norm), T, d, c.rms_eps, h_final.data(), rstd_final.data(),
                  stream);
  if (q)
    matmul_bf16_forward(ctx, h_final.data(), T, d, P(mdl.output), c.n_vocab, logits_bf16.data(), head,
                        stream);
  else
    matmul_forward(ctx, h_final.data(), T, d, P(mdl.output), c.n_vocab, logits.data(), stream);
  prof.mark("cross_entropy", stream);
  // Quantized: the bf16 logits' gradient is written over them.
  const double loss = q ? cross_entropy(ctx, logits_bf16.data(), targets.data(), T, c.n_vocab, grad_scale,
                                        with_grads ? logits_bf16.data() : nullptr, stream)
                        : cross_entropy(ctx, logits.data(), targets.data(), T, c.n_vocab, grad_scale,
                                        with_grads ? dlogits.data() : nullptr, stream);
  if (!with_grads) return loss;

  prof.mark("head_bwd", stream);
  if (q) {
    matmul_bf16_backward(ctx, logits_bf16.data(), T, d, c.n_vocab, head, dh.data(), G(mdl.output), stream);
  } else {
    zero(dh, Tz * d);
    matmul_backward(ctx, dlogits.data(), h_final.data(), T, d, P(mdl.output), c.n_vocab, dh.data(),
                    G(mdl.output), stream);
  }
  // The residual stream's gradient dx. Quantized, each norm backward that writes it also writes the
  // bf16 operands of the product whose output gradient it is next (down, then o, then the previous
  // layer's down: rmsnorm_backward_scaled), so no pass reads dx back to scale it.
  auto residual_norm_backward = [&](const float* x, const float* w, const float* rstd, float* dw,
                                    const BitLinearCache* next, bool accumulate) {
    if (q && next != nullptr)
      rmsnorm_backward_scaled(ctx, dh.data(), x, w, rstd, T, d, dx.data(), dw, *next, dy_w.data(),
                              dy_x.data(), stream, accumulate);
    else
      rmsnorm_backward(ctx, dh.data(), x, w, rstd, T, d, dx.data(), dw, stream, accumulate);
  };
  // The backward of a product whose output gradient is dx (down, o): from those operands when quantized.
  auto residual_product_backward = [&](const float* x_in, int64_t in, const float* W,
                                       const BitLinearCache& cache, float* dxo, float* dW) {
    if (q)
      bitlinear_backward_scaled(ctx, dy_w.data(), dy_x.data(), T, in, d, cache, dxo, dW, stream,
                                /*accumulate_dx=*/false);
    else
      bitlinear_backward(ctx, dx.data(), x_in, T, in, W, d, cache, dxo, dW, stream, /*accumulate_dx=*/false);
  };
  prof.mark("norm_bwd", stream);
  residual_norm_backward(x_final.data(), P(mdl.output_norm), rstd_final.data(), G(mdl.output_norm),
                         c.n_layer > 0 ? &layers.back().c_down : nullptr, /*accumulate=*/false);
  for (int64_t il = c.n_layer - 1; il >= 0; --il) {
    const TrainModel::Layer& L = mdl.layers[static_cast<size_t>(il)];
    LayerActs& a = layers[static_cast<size_t>(il)];
    prof.mark("down_bwd", stream);
    const float* down_in = c.sub_norms ? a.act_sn.data() : a.act.data();
    if (c.sub_norms) {
      residual_product_backward(down_in, ff, P(L.w_down), a.c_down, dh.data(), G(L.w_down));
      prof.mark("norm_bwd", stream);
      rmsnorm_backward(ctx, dh.data(), a.act.data(), P(L.ffn_sub_norm), a.rstd_f.data(), T, ff, dact.data(),
                       G(L.ffn_sub_norm), stream, /*accumulate_dx=*/false);
    } else {
      residual_product_backward(down_in, ff, P(L.w_down), a.c_down, dact.data(), G(L.w_down));
    }
    prof.mark("act_bwd", stream);
    if (q) {  // the gate|up product's bf16 operands straight from the activation's backward
      gated_backward_scaled(dact.data(), nullptr, T, ff, c.act, a.c_gu, dy_w.data(), dy_x.data(), stream);
      prof.mark("gate_up_bwd", stream);
      bitlinear_backward_scaled(ctx, dy_w.data(), dy_x.data(), T, d, 2 * ff, a.c_gu, dh.data(),
                                G(L.w_gate_up), stream, /*accumulate_dx=*/false);
    } else {
      gated_backward(dact.data(), a.gu.data(), T, ff, c.act, dgu.data(), stream, /*accumulate=*/false);
      prof.mark("gate_up_bwd", stream);
      bitlinear_backward(ctx, dgu.data(), a.h2.data(), T, d, P(L.w_gate_up), 2 * ff, a.c_gu, dh.data(),
                         G(L.w_gate_up), stream, /*accumulate_dx=*/false);
    }
    prof.mark("norm_bwd", stream);
    residual_norm_backward(a.x_mid.data(), P(L.ffn_norm), a.rstd2.data(), G(L.ffn_norm), &a.c_o,
                           /*accumulate=*/true);
    prof.mark("o_bwd", stream);
    const float* o_in = c.sub_norms ? a.attn_sn.data() : a.attn.data();
    if (c.sub_norms) {
      residual_product_backward(o_in, qd, P(L.wo), a.c_o, dh.data(), G(L.wo));
      prof.mark("norm_bwd", stream);
      rmsnorm_backward(ctx, dh.data(), a.attn.data(), P(L.attn_sub_norm), a.rstd_a.data(), T, qd,
                       dattn.data(), G(L.attn_sub_norm), stream, /*accumulate_dx=*/false);
    } else {
      residual_product_backward(o_in, qd, P(L.wo), a.c_o, dattn.data(), G(L.wo));
    }
    prof.mark("attention_bwd", stream);
    attention_backward(ctx, dattn.data(), a.ops, a.attn.data(), a.lse.data(), as, dqkv.data(), stream,
                       /*accumulate=*/false);
    prof.mark("rope_bwd", stream);
    if (q) {  // RoPE's backward writes the qkv product's bf16 operands
      rope_backward_scaled(dqkv.data(), T, rs, rope, a.c_qkv, dy_w.data(), dy_x.data(), stream);
      prof.mark("qkv_bwd", stream);
      bitlinear_backward_scaled(ctx, dy_w.data(), dy_x.data(), T, d, qkv_n, a.c_qkv, dh.data(), G(L.wqkv),
                                stream,
                                /*accumulate_dx=*/false);
    } else {
      rope_backward(dqkv.data(), T, rs, rope, stream);
      prof.mark("qkv_bwd", stream);
      bitlinear_backward(ctx, dqkv.data(), a.h1.data(), T, d, P(L.wqkv), qkv_n, a.c_qkv, dh.data(), G(L.wqkv),
                         stream, /*accumulate_dx=*/false);
    }
    prof.mark("norm_bwd", stream);
    residual_norm_backward(a.x.data(), P(L.attn_norm), a.rstd1.data(), G(L.attn_norm),
                           il > 0 ? &layers[static_cast<size_t>(il - 1)].c_down : nullptr,
                           /*accumulate=*/true);
    if (on_grads_done) on_grads_done(il);
  }
  prof.mark("embedding_bwd", stream);
  embedding_backward(ctx, tokens.data(), T, dx.data(), c.n_vocab, d, G(mdl.tok_embd), stream);
  if (on_grads_done) on_grads_done(-1);
  return loss;
}

}  // namespace bitnet::cuda
