#pragma once
// The trainer's operations, llm.c style: one plain fp32 forward and one backward per op, each
// backward checked against finite differences (tests/training/test_ops.cpp). Layouts are
// row-major; T = batch x sequence tokens, token t of a batch row sits at position t % seq.
//
// Convention: forward functions write (=) their outputs; backward functions ACCUMULATE (+=) into
// every gradient they produce (dx, dW, ...), so a residual stream's gradient and a parameter's
// gradient over several micro-batches need no extra pass. Callers zero gradients first.
//
// Quantization follows the engine exactly (DEVELOPERS.md "numerics"): weights absmean-ternarized
// per logical matrix (quant/ternary.h), activations per-token absmax int8 (quant/act_quant.h), the
// product in exact integers and the engine's epilogue float(acc) * (scale * (1/s)). The backward
// is the straight-through estimator: gradients pass through round and clamp unchanged, and the
// scales are not differentiated (the b1.58 recipe: x + (q(x) - x).detach()).
#include <cstdint>
#include <span>
#include <vector>

#include "ops/layer_ops.h"

namespace bitnet {
class ThreadPool;
}

namespace bitnet::train {

// ---- BitLinear: y[T][out] = x[T][in] . W[out][in]^T -----------------------------------------
// W's rows are split into logical matrices (groups: row counts adding up to out, e.g. q|k|v), each
// with its own absmean scale. quantize = false is the same layer in plain fp32 (`--float`).
struct BitLinearCache {
  bool quantized = false;
  std::vector<int8_t> xq;        // [T][in]: the quantized input
  std::vector<float> dq;         // [T]: 1/s per token
  std::vector<int8_t> wq;        // [out][in]: ternary codes
  std::vector<float> row_scale;  // [out]: the scale of the row's group
};
void bitlinear_forward(ThreadPool* pool, const float* x, int64_t T, int64_t in, const float* W, int64_t out,
                       std::span<const int64_t> groups, bool quantize, float* y, BitLinearCache& cache);
// dx (may be null: not needed) += dy . Wdeq;  dW += dy^T . xdeq  (xdeq = xq * dq, Wdeq = wq * scale;
// x and W themselves in fp32 mode).
void bitlinear_backward(ThreadPool* pool, const float* dy, const float* x, int64_t T, int64_t in,
                        const float* W, int64_t out, const BitLinearCache& cache, float* dx, float* dW);

// ---- plain fp32 matmul (the output head): y[T][out] = x[T][in] . W[out][in]^T -------------------
void matmul_forward(ThreadPool* pool, const float* x, int64_t T, int64_t in, const float* W, int64_t out,
                    float* y);
void matmul_backward(ThreadPool* pool, const float* dy, const float* x, int64_t T, int64_t in, const float* W,
                     int64_t out, float* dx, float* dW);

// ---- RMSNorm: y = x * r * w, r = 1 / sqrt(mean(x^2) + eps) (sum of squares in double) ------------
void rmsnorm_forward(const float* x, const float* w, int64_t T, int64_t n, float eps, float* y, float* rstd);
void rmsnorm_backward(const float* dy, const float* x, const float* w, const float* rstd, int64_t T,
                      int64_t n, float* dx, float* dw);

// ---- RoPE on q and k inside a fused q|k|v buffer [T][q_dim + 2 kv_dim], in place ----------------
// The engine's angles (ops/layer_ops.h rope_angles) at position t % seq; neox or interleaved pairs.
struct RopeShape {
  int64_t seq = 0, n_head = 0, n_head_kv = 0, head_dim = 0, rope_dim = 0;
  float theta = 10000.0f;
  RopeStyle style = RopeStyle::kNeox;
};
void rope_forward(float* qkv, int64_t T, const RopeShape& s);
// The transpose (inverse) rotation of the gradient, in place on dqkv's q and k parts.
void rope_backward(float* dqkv, int64_t T, const RopeShape& s);

// ---- causal attention with grouped KV heads over a fused q|k|v buffer --------------------------
// out[T][n_head * hd]; att[B][n_head][seq][seq] keeps the softmax probabilities (row i, columns
// <= i used) for the backward. Scores are q.k / sqrt(hd).
struct AttnShape {
  int64_t batch = 0, seq = 0, n_head = 0, n_head_kv = 0, head_dim = 0;
};
void attention_forward(ThreadPool* pool, const float* qkv, const AttnShape& s, float* out, float* att);
void attention_backward(ThreadPool* pool, const float* dout, const float* qkv, const float* att,
                        const AttnShape& s, float* dqkv);

// ---- gated activation: gu[T][2 ff] (gate columns first, then up) -> out[T][ff] -----------------
// relu2: max(g, 0)^2 * u;  silu: g / (1 + exp(-g)) * u.
void gated_forward(const float* gu, int64_t T, int64_t ff, FfnAct act, float* out);
void gated_backward(const float* dout, const float* gu, int64_t T, int64_t ff, FfnAct act, float* dgu);

// ---- token embedding ---------------------------------------------------------------------------
// table[vocab][d]; a token id outside [0, vocab) fails (bitnet::Error).
void embedding_forward(const int32_t* tokens, int64_t T, const float* table, int64_t vocab, int64_t d,
                       float* x);
void embedding_backward(const int32_t* tokens, int64_t T, const float* dx, int64_t vocab, int64_t d,
                        float* dtable);

// ---- softmax cross-entropy over the vocabulary -------------------------------------------------
// Returns the summed loss (natural log) over the T rows; writes (=) dlogits = (softmax - onehot) * grad_scale
// when dlogits is not null (grad_scale = 1 / tokens in the batch for a mean loss).
double cross_entropy(const float* logits, const int32_t* targets, int64_t T, int64_t V, float grad_scale,
                     float* dlogits);

}  // namespace bitnet::train
