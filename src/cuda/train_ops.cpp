// Host side of the GPU training ops other than the linear layers: the CPU ops' shape checks
// (training/op_checks.h), the RoPE tables, scratch sizing and the launches (train_kernels.h).
#include "cuda/train_ops.h"

#include <cmath>

#include "core/error.h"
#include "cuda/train_kernels.h"
#include "training/op_checks.h"

namespace bitnet::cuda {

// ---- RMSNorm ----

void rmsnorm_forward(const float* x, const float* w, int64_t T, int64_t n, float eps, float* y, float* rstd,
                     cudaStream_t stream) {
  train::check_rmsnorm_sizes("rmsnorm_forward", T, n);
  kern::rmsnorm_forward(x, w, T, n, eps, y, rstd, stream);
}

namespace {
// Scratch for dw's partial sums (one row of n per kRmsChunk rows); null without dw.
float* dw_partial(TrainContext& ctx, int64_t T, int64_t n, const float* dw) {
  if (dw == nullptr || T == 0) return nullptr;
  const int64_t parts = (T + kern::kRmsChunk - 1) / kern::kRmsChunk;
  return static_cast<float*>(ctx.scratch(sizeof(float) * static_cast<size_t>(parts * n)));
}
}  // namespace

void rmsnorm_backward(TrainContext& ctx, const float* dy, const float* x, const float* w, const float* rstd,
                      int64_t T, int64_t n, float* dx, float* dw, cudaStream_t stream, bool accumulate_dx) {
  train::check_rmsnorm_sizes("rmsnorm_backward", T, n);
  float* const partial = dw_partial(ctx, T, n, dw);
  kern::rmsnorm_backward(dy, x, w, rstd, T, n, dx, accumulate_dx, dw, partial, stream);
}

void rmsnorm_backward_scaled(TrainContext& ctx, const float* dy, const float* x, const float* w,
                             const float* rstd, int64_t T, int64_t n, float* dx, float* dw,
                             const BitLinearCache& next, kern::bf16_t* dy_w, kern::bf16_t* dy_x,
                             cudaStream_t stream, bool accumulate_dx) {
  train::check_rmsnorm_sizes("rmsnorm_backward_scaled", T, n);
  product_rows(next, "rmsnorm_backward_scaled", T, n);  // a quantized product of T x n
  if (dx == nullptr) fail("rmsnorm_backward_scaled: dx is needed (the operands are scaled from it)");
  float* const partial = dw_partial(ctx, T, n, dw);
  if (kern::rmsnorm_backward_scaled(dy, x, w, rstd, T, n, dx, accumulate_dx, dw, partial,
                                    next.row_scale.data(), next.dq.data(), dy_w, dy_x, stream))
    return;
  kern::rmsnorm_backward(dy, x, w, rstd, T, n, dx, accumulate_dx, dw, partial, stream);
  kern::scale_grad_bf16(dx, T, n, next.row_scale.data(), next.dq.data(), dy_w, dy_x, stream);
}

// ---- RoPE ----

namespace {

void check_table(const char* op, const train::RopeShape& s, const RopeTable& t) {
  if (t.seq != s.seq || t.rope_dim != s.rope_dim || t.theta != s.theta)
    fail(
        "{}: the RoPE table (seq={} rope_dim={} theta={}) was made for another shape (seq={} rope_dim={} "
        "theta={})",
        op, t.seq, t.rope_dim, t.theta, s.seq, s.rope_dim, s.theta);
}

void rope_rows(float* qkv, int64_t T, const train::RopeShape& s, const RopeTable& t, bool inverse,
               cudaStream_t stream) {
  if (s.rope_dim == 0 || T == 0) return;
  const int64_t C = (s.n_head + 2 * s.n_head_kv) * s.head_dim;
  kern::rope(qkv, T, s.seq, s.n_head + s.n_head_kv, s.head_dim, C, s.rope_dim, s.style == RopeStyle::kNeox,
             t.cs.data(), t.sn.data(), inverse, stream);
}

}  // namespace

void make_rope_table(const train::RopeShape& s, RopeTable& table) {
  train::check_rope("make_rope_table", 0, s);
  const int64_t half = s.rope_dim / 2;
  std::vector<float> cs(static_cast<size_t>(s.seq * half)), sn(cs.size());
  for (int64_t p = 0; p < s.seq && half > 0; ++p)
    rope_angles(p, s.rope_dim, s.theta, &cs[static_cast<size_t>(p * half)],
                &sn[static_cast<size_t>(p * half)]);
  table.seq = s.seq;
  table.rope_dim = s.rope_dim;
  table.theta = s.theta;
  table.cs.upload(cs);
  table.sn.upload(sn);
}

void rope_forward(float* qkv, int64_t T, const train::RopeShape& s, const RopeTable& table,
                  cudaStream_t stream) {
  train::check_rope("rope_forward", T, s);
  check_table("rope_forward", s, table);
  rope_rows(qkv, T, s, table, false, stream);
}

void rope_backward(float* dqkv, int64_t T, const train::RopeShape& s, const RopeTable& table,
                   cudaStream_t stream) {
  train::check_rope("rope_backward", T, s);
  check_table("rope_backward", s, table);
  rope_rows(dqkv, T, s, table, true, stream);
}

void rope_backward_scaled(const float* dqkv, int64_t T, const train::RopeShape& s, const RopeTable& table,
                          const BitLinearCache& cache, kern::bf16_t* dy_w, kern::bf16_t* dy_x,
                          cudaStream_t stream) {
  train::check_rope("rope_backward_scaled", T, s);
  check_table("rope_backward_scaled", s, table);
  const int64_t C = (s.n_head + 2 * s.n_head_kv) * s.head_dim;
  if (!cache.quantized || cache.T != T || cache.out != C)
    fail(
        "rope_backward_scaled: the cache (quantized={} T={} out={}) is not a quantized qkv product of T={} "
        "out={}",
        cache.quantized, cache.T, cache.out, T, C);
  kern::rope_backward_scaled(dqkv, T, s.seq, s.n_head + s.n_head_kv, s.head_dim, C, s.rope_dim,
                             s.style == RopeStyle::kNeox, table.cs.data(), table.sn.data(),
                             cache.row_scale.data(), cache.dq.data(), dy_w, dy_x, stream);
}

// ---- attention ----

namespace {

kern::AttnDims attn_dims(const char* op, const train::AttnShape& s) {
  train::check_attention(op, s);
  // The kernels' grids put the rows along x and batch x heads along y, which holds at most 65535.
  if (s.batch * s.n_head > 65535)
    fail("{}: batch x n_head = {} is more than the 65535 blocks of a grid's y dimension", op,
         s.batch * s.n_head);
  // The kernels pad the head dimension to 16, 32, 64 or 128 (their fragments' shapes).
  if (s.head_dim > 128) fail("{}: head_dim {} is more than the 128 the GPU kernels support", op, s.head_dim);
  return kern::AttnDims{s.batch,     s.seq,      s.n_head,
                        s.n_head_kv, s.head_dim, 1.0f / std::sqrt(static_cast<float>(s.head_dim))};
}

}  // namespace

void attention_forward(TrainContext& ctx, const float* qkv, const train::AttnShape& s, float* out, float* lse,
                       cudaStream_t stream) {
  const kern::AttnDims d = attn_dims("attention_forward", s);
  kern::attention_forward(qkv, d, out, lse, ctx.scratch(kern::attention_scratch(d, false)), stream);
}

namespace {
void rope_operands(const kern::ProductRows& qkv, int64_t T, const train::RopeShape& rs,
                   const RopeTable& table, const train::AttnShape& s, AttnOperands& ops,
                   cudaStream_t stream) {
  train::check_rope("rope_attention_operands", T, rs);
  check_table("rope_attention_operands", rs, table);
  const kern::AttnDims d = attn_dims("rope_attention_operands", s);
  if (T != s.batch * s.seq || rs.seq != s.seq || rs.n_head != s.n_head || rs.n_head_kv != s.n_head_kv ||
      rs.head_dim != s.head_dim)
    fail("rope_attention_operands: the RoPE shape and the attention shape (T={}) disagree", T);
  ops.batch = s.batch;
  ops.seq = s.seq;
  ops.n_head = s.n_head;
  ops.n_head_kv = s.n_head_kv;
  ops.head_dim = s.head_dim;
  ops.qh.resize(kern::attention_operands_bytes(d) / sizeof(kern::bf16_t));
  const kern::RopeArgs rope{rs.seq,          rs.n_head + rs.n_head_kv,
                            rs.rope_dim,     rs.style == RopeStyle::kNeox,
                            table.cs.data(), table.sn.data()};
  kern::attention_operands(qkv, d, &rope, ops.qh.data(), stream);
}
}  // namespace

void rope_attention_operands(const float* qkv, int64_t T, const train::RopeShape& rs, const RopeTable& table,
                             const train::AttnShape& s, AttnOperands& ops, cudaStream_t stream) {
  const int64_t C = (s.n_head + 2 * s.n_head_kv) * s.head_dim;
  rope_operands(kern::ProductRows{.y = qkv, .ld = C}, T, rs, table, s, ops, stream);
}

void rope_attention_operands(const BitLinearCache& qkv, int64_t T, const train::RopeShape& rs,
                             const RopeTable& table, const train::AttnShape& s, AttnOperands& ops,
                             cudaStream_t stream) {
  const int64_t C = (s.n_head + 2 * s.n_head_kv) * s.head_dim;
  if (!qkv.quantized || qkv.T != T || qkv.out != C)
    fail(
        "rope_attention_operands: the cache (quantized={} T={} out={}) holds no quantized qkv product of "
        "T={} "
        "out={}",
        qkv.quantized, qkv.T, qkv.out, T, C);
  rope_operands(product_rows(qkv), T, rs, table, s, ops, stream);
}

namespace {

void check_operands(const char* op, const AttnOperands& ops, const train::AttnShape& s) {
  if (ops.batch != s.batch || ops.seq != s.seq || ops.n_head != s.n_head || ops.n_head_kv != s.n_head_kv ||
      ops.head_dim != s.head_dim)
    fail("{}: the operands were made for another attention shape", op);
}

}  // namespace

void attention_forward(TrainContext& ctx, const AttnOperands& ops, const train::AttnShape& s, float* out,
                       float* lse, cudaStream_t stream) {
  const kern::AttnDims d = attn_dims("attention_forward", s);
  check_operands("attention_forward", ops, s);
  kern::attention_forward_from(ops.qh.data(), d, out, lse, stream);
}

void attention_backward(TrainContext& ctx, const float* dout, const AttnOperands& ops, const float* out,
                        const float* lse, const train::AttnShape& s, float* dqkv, cudaStream_t stream,
                        bool accumulate) {
  const kern::AttnDims d = attn_dims("attention_backward", s);
  check_operands("attention_backward", ops, s);
  kern::attention_backward_from(dout, ops.qh.data(), out, lse, d,
                                ctx.scratch(kern::attention_backward_scratch(d)), dqkv, accumulate, stream);
}

void attention_backward(TrainContext& ctx, const float* dout, const float* qkv, const float* out,
                        const float* lse, const train::AttnShape& s, float* dqkv, cudaStream_t stream,
                        bool accumulate) {
  const kern::AttnDims d = attn_dims("attention_backward", s);
  kern::attention_backward(dout, qkv, out, lse, d, ctx.scratch(kern::attention_scratch(d, true)), dqkv,
                           accumulate, stream);
}

// ---- gated activation ----

void gated_forward(const float* gu, int64_t T, int64_t ff, FfnAct act, float* out, cudaStream_t stream) {
  train::check_gated_sizes("gated_forward", T, ff);
  kern::gated_forward(kern::ProductRows{.y = gu, .ld = 2 * ff}, T, ff, act == FfnAct::kRelu2, out, stream);
}

void gated_forward(const BitLinearCache& gu, int64_t T, int64_t ff, FfnAct act, float* out,
                   cudaStream_t stream) {
  train::check_gated_sizes("gated_forward", T, ff);
  kern::gated_forward(product_rows(gu, "gated_forward", T, 2 * ff), T, ff, act == FfnAct::kRelu2, out,
                      stream);
}

void add_product(const float* a, const BitLinearCache& cache, int64_t T, int64_t n, float* out,
                 cudaStream_t stream) {
  kern::add_rows(a, product_rows(cache, "add_product", T, n), T, n, out, stream);
}

void gated_backward(const float* dout, const float* gu, int64_t T, int64_t ff, FfnAct act, float* dgu,
                    cudaStream_t stream, bool accumulate) {
  train::check_gated_sizes("gated_backward", T, ff);
  kern::gated_backward(dout, gu, T, ff, act == FfnAct::kRelu2, accumulate, dgu, stream);
}

void gated_backward_scaled(const float* dout, const float* gu, int64_t T, int64_t ff, FfnAct act,
                           const BitLinearCache& cache, kern::bf16_t* dy_w, kern::bf16_t* dy_x,
                           cudaStream_t stream) {
  train::check_gated_sizes("gated_backward_scaled", T, ff);
  const kern::ProductRows product = product_rows(cache, "gated_backward_scaled", T, 2 * ff);
  const kern::ProductRows rows = gu != nullptr ? kern::ProductRows{.y = gu, .ld = 2 * ff} : product;
  kern::gated_backward_scaled(dout, rows, T, ff, act == FfnAct::kRelu2, cache.row_scale.data(),
                              cache.dq.data(), dy_w, dy_x, stream);
}

// ---- embedding ----

void embedding_forward(TrainContext& ctx, const int32_t* tokens, int64_t T, const float* table, int64_t vocab,
                       int64_t d, float* x, cudaStream_t stream) {
  train::check_embedding_sizes("embedding_forward", T, vocab, d);
  kern::embedding_forward(tokens, T, table, vocab, d, x, ctx.bad_id_flag(), stream);
  ctx.check_ids("embedding_forward", vocab, stream);
}

void embedding_backward(TrainContext& ctx, const int32_t* tokens, int64_t T, const float* dx, int64_t vocab,
                        int64_t d, float* dtable, cudaStream_t stream) {
  train::check_embedding_sizes("embedding_backward", T, vocab, d);
  const size_t bytes = kern::embedding_backward_scratch(T);
  kern::embedding_backward(tokens, T, dx, vocab, d, dtable, ctx.bad_id_flag(), ctx.scratch(bytes), bytes,
                           stream);
  ctx.check_ids("embedding_backward", vocab, stream);
}

// ---- cross-entropy ----

namespace {

// The summed loss from kern::cross_entropy or kern::cross_entropy_bf16 (`run`), per-row losses in scratch.
template <typename Run>
double summed_loss(TrainContext& ctx, int64_t T, int64_t V, cudaStream_t stream, Run run) {
  train::check_cross_entropy_sizes(T, V);
  auto* row_loss = static_cast<double*>(ctx.scratch(sizeof(double) * static_cast<size_t>(T + 1)));
  double* loss = row_loss + T;
  run(row_loss, loss);
  double host = 0;
  BN_CUDA(cudaMemcpyAsync(&host, loss, sizeof(host), cudaMemcpyDeviceToHost, stream));
  ctx.check_ids("cross_entropy", V, stream);  // waits for the stream, so `host` is set
  return host;
}

}  // namespace

double cross_entropy(TrainContext& ctx, const float* logits, const int32_t* targets, int64_t T, int64_t V,
                     float grad_scale, float* dlogits, cudaStream_t stream) {
  return summed_loss(ctx, T, V, stream, [&](double* row_loss, double* loss) {
    kern::cross_entropy(logits, targets, T, V, grad_scale, dlogits, row_loss, loss, ctx.bad_id_flag(),
                        stream);
  });
}

double cross_entropy(TrainContext& ctx, const kern::bf16_t* logits, const int32_t* targets, int64_t T,
                     int64_t V, float grad_scale, kern::bf16_t* dlogits, cudaStream_t stream) {
  return summed_loss(ctx, T, V, stream, [&](double* row_loss, double* loss) {
    kern::cross_entropy_bf16(logits, targets, T, V, grad_scale, dlogits, row_loss, loss, ctx.bad_id_flag(),
                             stream);
  });
}

// ---- optimizer ----

std::vector<uint8_t> decay_mask(const train::TrainModel& model) {
  std::vector<uint8_t> mask(model.params.size(), 0);
  for (const train::ParamTensor& pt : model.tensors)
    if (pt.decay)
      for (int64_t i = 0; i < pt.size(); ++i) mask[static_cast<size_t>(pt.offset + i)] = 1;
  return mask;
}

void adamw_step(float* params, const float* grads, float* m, float* v, const uint8_t* decay, int64_t n,
                int64_t step, const train::AdamWConfig& cfg, float lr, float wd, cudaStream_t stream,
                float grad_mul) {
  if (n < 0 || step < 1) fail("adamw: bad n={} or step={} (the first update is step 1)", n, step);
  // The bias corrections exactly as the CPU computes them (in double, then float).
  const double t = static_cast<double>(step);
  const float bc1 = static_cast<float>(1.0 - std::pow(static_cast<double>(cfg.beta1), t));
  const float bc2 = static_cast<float>(1.0 - std::pow(static_cast<double>(cfg.beta2), t));
  const float decay_factor = 1.0f - lr * wd;
  kern::adamw_step(params, grads, m, v, decay, n, lr, decay_factor, cfg.beta1, cfg.beta2, cfg.eps, bc1, bc2,
                   grad_mul, stream);
}

float clip_factor(double grad_norm, float clip) {
  return clip > 0 && grad_norm > clip ? static_cast<float>(clip / grad_norm) : 1.0f;
}

double grad_norm(TrainContext& ctx, const float* grads, int64_t n, cudaStream_t stream) {
  if (n < 0) fail("grad_norm: bad n={}", n);
  auto* partial = static_cast<double*>(ctx.scratch(sizeof(double) * (kern::kNormParts + 1)));
  double* sum = partial + kern::kNormParts;
  kern::sum_squares(grads, n, partial, sum, stream);
  double host = 0;
  BN_CUDA(cudaMemcpyAsync(&host, sum, sizeof(host), cudaMemcpyDeviceToHost, stream));
  BN_CUDA(cudaStreamSynchronize(stream));
  return std::sqrt(host);
}

}  // namespace bitnet::cuda
