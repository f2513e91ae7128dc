#pragma once
// Launchers of the training kernels (train_*.cu), called by the host wrappers (train_*.cpp) after
// their shape checks; each checks its own launch. No fmt here: nvcc compiles this header.
#include <cuda_runtime.h>

#include <cstdint>

namespace bitnet::cuda::kern {

// ---- BitLinear (train_linear.cu) ----
// Per token: xq[t][0, in) = the CPU's absmax int8 codes, xq[t][in, in_pad) = 0, dq[t] = 1/s.
void quantize_rows(const float* x, int64_t T, int64_t in, int64_t in_pad, int8_t* xq, float* dq,
                   cudaStream_t s);
// rmsnorm_forward then quantize_rows in one pass (the norm's output stays in registers): rstd[t],
// xq and dq as those two make them. False (nothing launched) where the row is not whole 16-byte
// aligned float4s of at most 2048 columns: the caller runs the two instead.
bool rmsnorm_quantize(const float* x, const float* w, int64_t T, int64_t n, int64_t in_pad, float eps,
                      float* rstd, int8_t* xq, float* dq, cudaStream_t s);
struct ProductRows;
// add_rows (sum = a + b, written) then rmsnorm_quantize of the sum, in one pass: the same bits as
// the two. False (nothing launched) where rmsnorm_quantize would be, or b is not aligned4.
bool add_rmsnorm_quantize(const float* a, const ProductRows& b, float* sum, const float* w, int64_t T,
                          int64_t n, int64_t in_pad, float eps, float* rstd, int8_t* xq, float* dq,
                          cudaStream_t s);
// gated_forward (act, written) then rmsnorm_quantize of act (n = ff), in one pass: the same bits as
// the two. False (nothing launched) where rmsnorm_quantize would be, or gu is not aligned4.
bool gated_rmsnorm_quantize(const ProductRows& gu, int64_t ff, bool relu2, float* act, const float* w,
                            int64_t T, int64_t in_pad, float eps, float* rstd, int8_t* xq, float* dq,
                            cudaStream_t s);
// Partial sums of the absmean: at most this many doubles of scratch per group.
constexpr int kAbsmeanParts = 256;
// The absmean scale of w[0, n) written to row_scale[0, rows).
void absmean_scale(const float* w, int64_t n, double* partial, float* row_scale, int64_t rows,
                   cudaStream_t s);
// wq[out_pad][in_pad]: the ternary codes of W with its row's scale, zero in the padding.
void ternarize_rows(const float* W, const float* row_scale, int64_t out, int64_t in, int64_t out_pad,
                    int64_t in_pad, int8_t* wq, cudaStream_t s);
// acc[t][o] = xq[t] . wq[o] over in_pad (a multiple of 4) with dp4a; o < out_pad.
void int8_gemm_dp4a(const int8_t* xq, const int8_t* wq, int64_t T, int64_t out_pad, int64_t in_pad,
                    int32_t* acc, cudaStream_t s);
// A product's output as the op after it reads it: the float values y[t][o] (row stride ld), or,
// where acc is set, the int32 sums acc[t][o] (row stride ld) with int8_epilogue's operations applied
// on read (float(acc) * (row_scale[o] * dq[t])), so that the float rows are never written and read
// back: the same values, bit for bit, one pass over [T][out] less.
struct ProductRows {
  const float* y = nullptr;
  const int32_t* acc = nullptr;
  int64_t ld = 0;
  const float* row_scale = nullptr;  // with acc
  const float* dq = nullptr;
#ifdef __CUDACC__
  __device__ float at(int64_t t, int64_t o) const {
    if (acc == nullptr) return y[t * ld + o];
    return __fmul_rn(__int2float_rn(acc[t * ld + o]), __fmul_rn(row_scale[o], dq[t]));
  }
  // at(t, o) to at(t, o + 3) in one 16-byte load (o and ld multiples of 4, y or acc and row_scale
  // 16-byte aligned: aligned4 says so).
  __device__ float4 at4(int64_t t, int64_t o) const {
    if (acc == nullptr) return *reinterpret_cast<const float4*>(y + t * ld + o);
    const int4 a = *reinterpret_cast<const int4*>(acc + t * ld + o);
    const float4 s = *reinterpret_cast<const float4*>(row_scale + o);
    const float d = dq[t];
    return make_float4(
        __fmul_rn(__int2float_rn(a.x), __fmul_rn(s.x, d)), __fmul_rn(__int2float_rn(a.y), __fmul_rn(s.y, d)),
        __fmul_rn(__int2float_rn(a.z), __fmul_rn(s.z, d)), __fmul_rn(__int2float_rn(a.w), __fmul_rn(s.w, d)));
  }
#endif
  bool aligned4() const {
    auto al = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
    return ld % 4 == 0 && (acc == nullptr ? al(y) : al(acc) && al(row_scale));
  }
};
// y[t][o] = float(acc[t][o]) * (row_scale[o] * dq[t]).
void int8_epilogue(const int32_t* acc, int64_t out_pad, const float* row_scale, const float* dq, int64_t T,
                   int64_t out, float* y, cudaStream_t s);
// out[r][c] = float(q[r][c]) * scale[r], q with row stride ldq, out dense [rows][cols].
void dequantize_rows(const int8_t* q, int64_t ldq, const float* scale, int64_t rows, int64_t cols, float* out,
                     cudaStream_t s);

// The backward's bf16 operands. bf16_t is __nv_bfloat16's storage (cuda_bf16.h stays out of host
// code): the bits of a bf16.
using bf16_t = unsigned short;
// out[i] = bf16(x[i]) (rounded to nearest) for i < n.
void to_bf16(const float* x, int64_t n, bf16_t* out, cudaStream_t s);
// out[i] = bf16(q[i]) for i < n: the codes are exact in bf16.
void codes_to_bf16(const int8_t* q, int64_t n, bf16_t* out, cudaStream_t s);
// dy_w[t][o] = bf16(dy[t][o] * row_scale[o]) and dy_x[t][o] = bf16(dy[t][o] * dq[t]); either may be
// null (not written).
void scale_grad_bf16(const float* dy, int64_t T, int64_t out, const float* row_scale, const float* dq,
                     bf16_t* dy_w, bf16_t* dy_x, cudaStream_t s);

// ---- per-row and element-wise ops (train_elementwise.cu) ----
void rmsnorm_forward(const float* x, const float* w, int64_t T, int64_t n, float eps, float* y, float* rstd,
                     cudaStream_t s);
// Rows per partial sum of dw: T / kRmsChunk blocks fill the GPU (256 for 16 x 1024 tokens), and the
// partials are a small fraction of the rows read.
constexpr int64_t kRmsChunk = 64;
// dx (may be null) per row, added to (accumulate) or written; partial (ceil(T / kRmsChunk) x n
// floats) then dw (may be null).
void rmsnorm_backward(const float* dy, const float* x, const float* w, const float* rstd, int64_t T,
                      int64_t n, float* dx, bool accumulate, float* dw, float* partial, cudaStream_t s);
// rmsnorm_backward (dx not null) then scale_grad_bf16 on the dx it leaves (dy_w, dy_x: [T][n], the
// operands of the product whose output gradient dx is, with that product's row_scale and dq), in
// one pass: the same bits as the two. False (nothing launched) where the warp-per-row pass does not
// take the rows: the caller runs the two instead.
bool rmsnorm_backward_scaled(const float* dy, const float* x, const float* w, const float* rstd, int64_t T,
                             int64_t n, float* dx, bool accumulate, float* dw, float* partial,
                             const float* row_scale, const float* dq, bf16_t* dy_w, bf16_t* dy_x,
                             cudaStream_t s);
void rope(float* qkv, int64_t T, int64_t seq, int64_t n_rot_heads, int64_t head_dim, int64_t row_stride,
          int64_t rope_dim, bool neox, const float* cs, const float* sn, bool inverse, cudaStream_t s);
// rope(inverse) then scale_grad_bf16 on the rows of dqkv, which stays as it is: the qkv product's
// bf16 backward operands dy_w and dy_x ([T][row_stride]).
void rope_backward_scaled(const float* dqkv, int64_t T, int64_t seq, int64_t n_rot_heads, int64_t head_dim,
                          int64_t row_stride, int64_t rope_dim, bool neox, const float* cs, const float* sn,
                          const float* row_scale, const float* dq, bf16_t* dy_w, bf16_t* dy_x,
                          cudaStream_t s);
void gated_forward(const ProductRows& gu, int64_t T, int64_t ff, bool relu2, float* out, cudaStream_t s);
// accumulate false: dgu is written (=), not added to.
void gated_backward(const float* dout, const float* gu, int64_t T, int64_t ff, bool relu2, bool accumulate,
                    float* dgu, cudaStream_t s);
// gated_backward's dg and du scaled as scale_grad_bf16 scales dgu: dy_w[t][o] = bf16(dgu[t][o] *
// row_scale[o]), dy_x[t][o] = bf16(dgu[t][o] * dq[t]), o < 2 ff.
void gated_backward_scaled(const float* dout, const ProductRows& gu, int64_t T, int64_t ff, bool relu2,
                           const float* row_scale, const float* dq, bf16_t* dy_w, bf16_t* dy_x,
                           cudaStream_t s);
// out = a + b element-wise (the residual stream).
void add(const float* a, const float* b, int64_t n, float* out, cudaStream_t s);
// out[t][i] = a[t][i] + b.at(t, i) for i < n (the residual add of a product's output).
void add_rows(const float* a, const ProductRows& b, int64_t T, int64_t n, float* out, cudaStream_t s);
// Bad ids raise *flag (and are skipped).
void embedding_forward(const int32_t* tokens, int64_t T, const float* table, int64_t vocab, int64_t d,
                       float* x, int32_t* flag, cudaStream_t s);
// train_embedding.cu: scratch bytes for T tokens, then dtable[id] += the rows dx[t] of the id's
// tokens in token order (a stable sort by id, then one block per id).
size_t embedding_backward_scratch(int64_t T);
void embedding_backward(const int32_t* tokens, int64_t T, const float* dx, int64_t vocab, int64_t d,
                        float* dtable, int32_t* flag, void* scratch, size_t scratch_bytes, cudaStream_t s);
// row_loss[T] doubles, then *loss = their sum in row order. The gradient goes to dlogits, or
// nowhere (null).
void cross_entropy(const float* logits, const int32_t* targets, int64_t T, int64_t V, float grad_scale,
                   float* dlogits, double* row_loss, double* loss, int32_t* flag, cudaStream_t s);
// The same from bf16 logits with the gradient in bf16; dlogits may be logits (written over) or null.
void cross_entropy_bf16(const bf16_t* logits, const int32_t* targets, int64_t T, int64_t V, float grad_scale,
                        bf16_t* dlogits, double* row_loss, double* loss, int32_t* flag, cudaStream_t s);

// ---- attention (train_attention.cu) ----
struct AttnDims {
  int64_t batch, seq, n_head, n_head_kv, head_dim;
  float scale;  // 1 / sqrt(head_dim)
};
// Flash attention (bf16 tensor-core products, fp32 softmax): out and lse[batch][n_head][seq], the
// log-sum-exp of each row's scaled scores. Scratch: attention_scratch bytes (bf16 copies of the
// operands, and the backward's dout . out per row).
size_t attention_scratch(const AttnDims& d, bool backward);
// The bf16 operands the kernels read: [batch * seq][n_head + 2 n_head_kv][head_dim padded to 16, 32,
// 64 or 128], the padding zero. attention_operands makes them from q|k|v, with RoPE applied on the
// way where rope is not null (bit for bit rope then the copy, the fp32 qkv left as it is); the
// *_from entry points run on them, so a forward's operands can serve its backward.
struct RopeArgs {
  int64_t seq, rot_heads, rope_dim;  // rot_heads: the rotated heads (n_head + n_head_kv)
  bool neox;
  const float* cs;  // [seq][rope_dim / 2]
  const float* sn;
};
size_t attention_operands_bytes(const AttnDims& d);
void attention_operands(const float* qkv, const AttnDims& d, const RopeArgs* rope, bf16_t* qh,
                        cudaStream_t s);
// The same from a product's rows (qkv = the qkv product held in its cache, row stride its out_pad).
void attention_operands(const ProductRows& qkv, const AttnDims& d, const RopeArgs* rope, bf16_t* qh,
                        cudaStream_t s);
void attention_forward_from(const bf16_t* qh, const AttnDims& d, float* out, float* lse, cudaStream_t s);
// Scratch: attention_backward_scratch bytes (dout's bf16 copy and dout . out per row).
size_t attention_backward_scratch(const AttnDims& d);
void attention_backward_from(const float* dout, const bf16_t* qh, const float* out, const float* lse,
                             const AttnDims& d, void* scratch, float* dqkv, bool accumulate, cudaStream_t s);
void attention_forward(const float* qkv, const AttnDims& d, float* out, float* lse, void* scratch,
                       cudaStream_t s);
// accumulate false: dqkv is written (every element), not added to.
void attention_backward(const float* dout, const float* qkv, const float* out, const float* lse,
                        const AttnDims& d, void* scratch, float* dqkv, bool accumulate, cudaStream_t s);

// ---- optimizer (train_optim.cu) ----
// g is read times grad_mul (the clip factor, 1 for none) and left as it is.
void adamw_step(float* p, const float* g, float* m, float* v, const uint8_t* decay, int64_t n, float lr,
                float decay_factor, float b1, float b2, float eps, float bc1, float bc2, float grad_mul,
                cudaStream_t s);
constexpr int kNormParts = 512;
// *out = sum g^2 in double; partial: kNormParts doubles.
void sum_squares(const float* g, int64_t n, double* partial, double* out, cudaStream_t s);

}  // namespace bitnet::cuda::kern
