#pragma once
// The trainer's ops (training/ops.h) on the GPU: the same shapes, layouts, checks and numerics,
// with device pointers and a stream. Forward functions write (=) their outputs; backward
// functions ACCUMULATE (+=) into every gradient, as on the CPU.
//
// Exactness against the CPU (tests/cuda/test_train_ops.cpp):
//  - BitLinear quantized forward: int8 codes, scales, int32 products and y are bit for bit the CPU's
//    (the weights' absmean is summed in double by a tree reduction instead of left to right: the
//    float mean can only differ if the two double sums straddle a float rounding boundary).
//  - embedding backward adds in token order, so it is exact too.
//  - everything else agrees to fp32 rounding (sums in another order; the GPU's expf).
// Every op is deterministic: no float atomics; repeated runs give the same bits.
//
// One TrainContext per stream: its scratch memory is reused by every op called with it.
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "cuda/buffer.h"
#include "cuda/train_kernels.h"
#include "training/adamw.h"
#include "training/ops.h"

namespace bitnet::cuda {

class LtPlans;

// The cuBLASLt handle, its workspace, scratch for the ops' temporaries and a device flag the
// kernels raise on an out-of-range token id. Create it after choosing the device.
class OpProfile;

class TrainContext {
 public:
  TrainContext();
  ~TrainContext();
  TrainContext(const TrainContext&) = delete;
  TrainContext& operator=(const TrainContext&) = delete;

  cublasLtHandle_t lt() const { return lt_; }
  // cuBLASLt plans by shape (lt_plans.h), built on first use.
  LtPlans& plans() { return *plans_; }
  void* workspace() { return workspace_.data(); }
  size_t workspace_bytes() const { return workspace_.bytes(); }
  // At least `bytes` of device memory, valid until the next scratch() call. Growing it frees the
  // old block (cudaFree waits for the device), so queued work that still reads it is safe.
  void* scratch(size_t bytes);
  int32_t* bad_id_flag() { return flag_.data(); }
  // Waits for `stream`; fails naming `op` when a kernel saw a token id outside [0, limit), and
  // clears the flag.
  void check_ids(const char* op, int64_t limit, cudaStream_t stream);

  // Tests: run the int8 product with the dp4a kernel even where cuBLASLt has an algorithm.
  bool force_dp4a = false;
  // Set while the trainer profiles (BITNET_CUDA_PROFILE): BitLinear then marks its own parts
  // (weights' ternarization, the int8 product, the epilogue, the backward's products) per shape.
  OpProfile* prof = nullptr;

 private:
  cublasLtHandle_t lt_ = nullptr;
  std::unique_ptr<LtPlans> plans_;
  Buffer<unsigned char> workspace_, scratch_;
  Buffer<int32_t> flag_;
};

// ---- BitLinear -----------------------------------------------------------------------------------
// The quantized operands are kept padded for cuBLASLt's int8 kernels ("TN", k and m multiples of 4):
// xq is [T][in_pad], wq [out_pad][in_pad] (in_pad = in rounded up to 16, out_pad = out rounded up
// to 4), the padding zero, so the integer products equal the unpadded ones.
struct BitLinearCache {
  bool quantized = false;
  int64_t T = 0, in = 0, out = 0, in_pad = 0, out_pad = 0;
  Buffer<int8_t> xq;           // [T][in_pad]
  Buffer<float> dq;            // [T]: 1/s per token
  Buffer<int8_t> wq;           // [out_pad][in_pad]: ternary codes
  Buffer<float> row_scale;     // [out]: the scale of the row's group
  Buffer<int32_t> acc;         // [T][out_pad]: the exact integer products (kept for tests)
  bool used_cublaslt = false;  // false: cuBLASLt had no int8 algorithm (or force_dp4a): dp4a kernel
};
// groups: host row counts of the logical matrices (adding up to out), as on the CPU.
void bitlinear_forward(TrainContext& ctx, const float* x, int64_t T, int64_t in, const float* W, int64_t out,
                       std::span<const int64_t> groups, bool quantize, float* y, BitLinearCache& cache,
                       cudaStream_t stream);
// Quantized training's norm before a BitLinear in one pass: RMSNorm's rstd, and the cache's
// activation codes (xq, dq) for a product with in = n, bit for bit what rmsnorm_forward then
// bitlinear_forward's quantization make; the norm's fp32 output is never written (only the codes
// are read after it, forward and backward). bitlinear_forward_codes then runs the product.
void rmsnorm_quantize(TrainContext& ctx, const float* x, const float* w, int64_t T, int64_t n, float eps,
                      float* rstd, BitLinearCache& cache, cudaStream_t stream);
// bitlinear_forward with quantize on, its activations already quantized into `cache`.
void bitlinear_forward_codes(TrainContext& ctx, int64_t T, int64_t in, const float* W, int64_t out,
                             std::span<const int64_t> groups, float* y, BitLinearCache& cache,
                             cudaStream_t stream);
// Quantized, y may be null (bitlinear_forward and bitlinear_forward_codes): the epilogue is not run
// and the product stays in cache.acc, for an op that reads it as product_rows(cache) (the float
// output is then never written: one pass over [T][out] each way less).
kern::ProductRows product_rows(const BitLinearCache& cache);
// The same after checking that the cache holds a quantized product of T tokens and `out` rows
// (a clear error naming op otherwise).
kern::ProductRows product_rows(const BitLinearCache& cache, const char* op, int64_t T, int64_t out);
// add_product (sum = a + the product, written) then rmsnorm_quantize of sum into `cache`, in one
// pass: bit for bit the two. `product` and `cache` are distinct.
void add_rmsnorm_quantize(TrainContext& ctx, const float* a, const BitLinearCache& product, int64_t T,
                          int64_t n, float* sum, const float* w, float eps, float* rstd,
                          BitLinearCache& cache, cudaStream_t stream);
// gated_forward from the gate|up product (act, written) then rmsnorm_quantize of act (n = ff) into
// `cache`, in one pass: bit for bit the two. `gu` and `cache` are distinct.
void gated_rmsnorm_quantize(TrainContext& ctx, const BitLinearCache& gu, int64_t T, int64_t ff, FfnAct act,
                            float* out, const float* w, float eps, float* rstd, BitLinearCache& cache,
                            cudaStream_t stream);
// dx (may be null) += dy . Wdeq;  dW (may be null) += dy^T . xdeq;  x and W themselves in fp32 mode.
// accumulate_dx false: dx = dy . Wdeq instead (the trainer's buffer needs no zeroing first).
void bitlinear_backward(TrainContext& ctx, const float* dy, const float* x, int64_t T, int64_t in,
                        const float* W, int64_t out, const BitLinearCache& cache, float* dx, float* dW,
                        cudaStream_t stream, bool accumulate_dx = true);
// The quantized backward from its bf16 operands as their producer wrote them (gated_backward_scaled):
// dy_w = bf16(dy * row_scale[o]) (for dx) and dy_x = bf16(dy * dq[t]) (for dW), [T][out] each.
void bitlinear_backward_scaled(TrainContext& ctx, const kern::bf16_t* dy_w, const kern::bf16_t* dy_x,
                               int64_t T, int64_t in, int64_t out, const BitLinearCache& cache, float* dx,
                               float* dW, cudaStream_t stream, bool accumulate_dx = true);

// ---- fp32 matmul (the head): y[T][out] = x[T][in] . W[out][in]^T (cuBLASLt, fp32, no TF32) ------
void matmul_forward(TrainContext& ctx, const float* x, int64_t T, int64_t in, const float* W, int64_t out,
                    float* y, cudaStream_t stream);
void matmul_backward(TrainContext& ctx, const float* dy, const float* x, int64_t T, int64_t in,
                     const float* W, int64_t out, float* dx, float* dW, cudaStream_t stream);

// ---- bf16 matmul (the head of quantized training): the operands rounded to bf16, fp32 accumulation
// rounded to bf16 outputs (cuBLASLt), as a bf16-autocast trainer's head: the logits agree with
// matmul_forward to about 1e-2 relative. The cache keeps the forward's bf16 x and W for the backward.
struct MatmulBf16Cache {
  int64_t T = 0, in = 0, out = 0;
  Buffer<kern::bf16_t> x, W;  // [T][in], [out][in]
};
void matmul_bf16_forward(TrainContext& ctx, const float* x, int64_t T, int64_t in, const float* W,
                         int64_t out, kern::bf16_t* y, MatmulBf16Cache& cache, cudaStream_t stream);
// dy [T][out] in bf16 (cross_entropy's dlogits_bf16): dx (may be null) = dy . W, written;
// dW (may be null) += dy^T . x.
void matmul_bf16_backward(TrainContext& ctx, const kern::bf16_t* dy, int64_t T, int64_t in, int64_t out,
                          const MatmulBf16Cache& cache, float* dx, float* dW, cudaStream_t stream);

// ---- RMSNorm -------------------------------------------------------------------------------------
void rmsnorm_forward(const float* x, const float* w, int64_t T, int64_t n, float eps, float* y, float* rstd,
                     cudaStream_t stream);
// One pass over dy and x for both gradients (a warp per row). dw (may be null) is summed over rows
// deterministically: partial sums per 64-row chunk, then a fixed-order reduction (scratch from ctx).
// accumulate_dx false: dx is written instead of added to.
void rmsnorm_backward(TrainContext& ctx, const float* dy, const float* x, const float* w, const float* rstd,
                      int64_t T, int64_t n, float* dx, float* dw, cudaStream_t stream,
                      bool accumulate_dx = true);
// rmsnorm_backward (dx not null) and the scaling bitlinear_backward applies to dx as the output
// gradient of the product in `next` (out = n): its bf16 operands dy_w and dy_x ([T][n]) for
// bitlinear_backward_scaled, in one pass: bit for bit the two.
void rmsnorm_backward_scaled(TrainContext& ctx, const float* dy, const float* x, const float* w,
                             const float* rstd, int64_t T, int64_t n, float* dx, float* dw,
                             const BitLinearCache& next, kern::bf16_t* dy_w, kern::bf16_t* dy_x,
                             cudaStream_t stream, bool accumulate_dx = true);

// ---- RoPE ----------------------------------------------------------------------------------------
// The angles of positions 0..seq-1 (rope_angles on the host, as the CPU), uploaded once.
struct RopeTable {
  int64_t seq = 0, rope_dim = 0;
  float theta = 0;
  Buffer<float> cs, sn;  // [seq][rope_dim / 2]
};
void make_rope_table(const train::RopeShape& s, RopeTable& table);
void rope_forward(float* qkv, int64_t T, const train::RopeShape& s, const RopeTable& table,
                  cudaStream_t stream);
void rope_backward(float* dqkv, int64_t T, const train::RopeShape& s, const RopeTable& table,
                   cudaStream_t stream);

// rope_backward then bitlinear_backward's scaling of dqkv (the qkv product's output gradient), dqkv
// left as it is: the bf16 operands of bitlinear_backward_scaled ([T][qkv columns] each), bit for bit.
void rope_backward_scaled(const float* dqkv, int64_t T, const train::RopeShape& s, const RopeTable& table,
                          const BitLinearCache& cache, kern::bf16_t* dy_w, kern::bf16_t* dy_x,
                          cudaStream_t stream);

// ---- causal GQA attention ------------------------------------------------------------------------
// FlashAttention-2 on the tensor cores (train_attention.cu): the products take bf16 operands with
// fp32 accumulation, so results agree with the CPU op to about 1e-3 relative rather than to fp32
// rounding. Instead of the CPU's probabilities it keeps lse[B][n_head][seq], the log-sum-exp of
// each row's scaled scores; head_dim at most 128.
void attention_forward(TrainContext& ctx, const float* qkv, const train::AttnShape& s, float* out, float* lse,
                       cudaStream_t stream);
// Recomputes the probabilities from qkv and lse; out is the forward's output. dq per query tile,
// dk and dv per key tile summing over its query heads and rows in a fixed order (no atomics).
// accumulate false: dqkv is written instead of added to. Both take scratch from ctx (bf16 copies of the
// operands with each head padded to 16, 32, 64 or 128 columns).
void attention_backward(TrainContext& ctx, const float* dout, const float* qkv, const float* out,
                        const float* lse, const train::AttnShape& s, float* dqkv, cudaStream_t stream,
                        bool accumulate = true);

// The attention's bf16 operands, made once in the forward and read again by the backward (instead of
// converting qkv twice): q|k|v with RoPE applied, each head padded ([T][n_head + 2 n_head_kv][16, 32,
// 64 or 128]).
struct AttnOperands {
  int64_t batch = 0, seq = 0, n_head = 0, n_head_kv = 0, head_dim = 0;
  Buffer<kern::bf16_t> qh;
};
// rope_forward on a copy of qkv, then the attention's operands from it, in one pass: bit for bit the
// operands attention_forward makes after rope_forward; qkv is not modified.
void rope_attention_operands(const float* qkv, int64_t T, const train::RopeShape& rs, const RopeTable& table,
                             const train::AttnShape& s, AttnOperands& ops, cudaStream_t stream);
// The same from the qkv product held in its cache (bitlinear_forward_codes with y null).
void rope_attention_operands(const BitLinearCache& qkv, int64_t T, const train::RopeShape& rs,
                             const RopeTable& table, const train::AttnShape& s, AttnOperands& ops,
                             cudaStream_t stream);
// attention_forward and attention_backward on those operands (the same results as on the rotated qkv).
void attention_forward(TrainContext& ctx, const AttnOperands& ops, const train::AttnShape& s, float* out,
                       float* lse, cudaStream_t stream);
void attention_backward(TrainContext& ctx, const float* dout, const AttnOperands& ops, const float* out,
                        const float* lse, const train::AttnShape& s, float* dqkv, cudaStream_t stream,
                        bool accumulate = true);

// ---- gated activation ----------------------------------------------------------------------------
void gated_forward(const float* gu, int64_t T, int64_t ff, FfnAct act, float* out, cudaStream_t stream);
// The same from the gate|up product held in its cache (bitlinear_forward_codes with y null).
void gated_forward(const BitLinearCache& gu, int64_t T, int64_t ff, FfnAct act, float* out,
                   cudaStream_t stream);
// accumulate false: dgu is overwritten instead (the trainer's buffer needs no zeroing first).
void gated_backward(const float* dout, const float* gu, int64_t T, int64_t ff, FfnAct act, float* dgu,
                    cudaStream_t stream, bool accumulate = true);

// gated_backward followed by the scaling of bitlinear_backward (the gate|up product's output
// gradient): instead of dgu, its bf16 operands dy_w and dy_x for bitlinear_backward_scaled, bit for
// bit what bitlinear_backward makes from dgu. `cache`: the gate|up BitLinear's (out = 2 ff); gu null:
// the forward's gate|up values are read from the cache's product (product_rows).
void gated_backward_scaled(const float* dout, const float* gu, int64_t T, int64_t ff, FfnAct act,
                           const BitLinearCache& cache, kern::bf16_t* dy_w, kern::bf16_t* dy_x,
                           cudaStream_t stream);

// ---- residual ------------------------------------------------------------------------------------
// out[T][n] = a[T][n] + the product held in `cache` (out = n; bitlinear_forward with y null).
void add_product(const float* a, const BitLinearCache& cache, int64_t T, int64_t n, float* out,
                 cudaStream_t stream);

// ---- token embedding (tokens on the device) ------------------------------------------------------
// Both wait for the stream to check the ids (a bad id fails, as on the CPU).
void embedding_forward(TrainContext& ctx, const int32_t* tokens, int64_t T, const float* table, int64_t vocab,
                       int64_t d, float* x, cudaStream_t stream);
// Deterministic and exact: the tokens are sorted by id (a stable radix sort, so each id's positions
// stay in token order), then one block per id adds its rows in that order, as the CPU.
void embedding_backward(TrainContext& ctx, const int32_t* tokens, int64_t T, const float* dx, int64_t vocab,
                        int64_t d, float* dtable, cudaStream_t stream);

// ---- softmax cross-entropy -----------------------------------------------------------------------
// Writes dlogits (if not null) and returns the summed loss (per-row losses in double, summed in row
// order on the device); waits for the stream.
double cross_entropy(TrainContext& ctx, const float* logits, const int32_t* targets, int64_t T, int64_t V,
                     float grad_scale, float* dlogits, cudaStream_t stream);
// The same from bf16 logits (matmul_bf16_forward's) with the gradient rounded to bf16 (for
// matmul_bf16_backward); dlogits may be logits itself, written over, and the row is read once
// where V is a multiple of 8 whose bf16 row fits a block's shared memory (up to ~116,000 on H100).
double cross_entropy(TrainContext& ctx, const kern::bf16_t* logits, const int32_t* targets, int64_t T,
                     int64_t V, float grad_scale, kern::bf16_t* dlogits, cudaStream_t stream);

// ---- optimizer -----------------------------------------------------------------------------------
// 1 where ParamTensor::decay, per element of the flat parameter buffer (upload it once).
std::vector<uint8_t> decay_mask(const train::TrainModel& model);
// The CPU's adamw_step on the flat buffers: `step` is the update's number (1 for the first, the
// CPU's st.step after its increment); decay (may be null: none) is decay_mask's. grad_mul: the
// gradients are used times it (the CPU's clipping, which scales them first), grads left unchanged.
void adamw_step(float* params, const float* grads, float* m, float* v, const uint8_t* decay, int64_t n,
                int64_t step, const train::AdamWConfig& cfg, float lr, float wd, cudaStream_t stream,
                float grad_mul = 1.0f);
// The factor clipping to global norm `clip` applies (the CPU's): clip / norm where clip > 0 and
// the norm is above it, else 1.
float clip_factor(double grad_norm, float clip);
// sqrt(sum g^2), summed in double by a fixed two-pass reduction; waits for the stream.
double grad_norm(TrainContext& ctx, const float* grads, int64_t n, cudaStream_t stream);

}  // namespace bitnet::cuda
