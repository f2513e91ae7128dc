// BitLinear and the fp32 matmul on the GPU: shape checks, the weights' and activations'
// quantization kernels, the int8 product in cuBLASLt (the dp4a kernel where it has no algorithm)
// and the fp32 GEMMs of the backward.
#include <fmt/format.h>

#include <algorithm>
#include <mutex>
#include <set>
#include <string>

#include "core/error.h"
#include "cuda/lt_plans.h"
#include "cuda/train_kernels.h"
#include "cuda/train_ops.h"
#include "cuda/train_profile.h"
#include "training/op_checks.h"

namespace bitnet::cuda {

namespace {

int64_t round_up(int64_t v, int64_t m) {
  return (v + m - 1) / m * m;
}

// Column-major C[m][n] = alpha op(A) op(B) + beta C, op(A) m x k, op(B) k x n (cuBLAS convention),
// with the shape's cached plan. Returns false when cuBLASLt has no algorithm for it (the caller
// decides whether that is fatal).
bool lt_matmul(TrainContext& ctx, cudaDataType_t ab, cudaDataType_t cd, cublasComputeType_t compute,
               cudaDataType_t scale, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const void* A,
               int64_t lda, const void* B, int64_t ldb, void* C, int64_t ldc, const void* alpha,
               const void* beta, cudaStream_t stream) {
  const LtPlan& p = ctx.plans().get(ctx.lt(), LtShape{ab, cd, compute, scale, ta, tb, m, n, k, lda, ldb, ldc},
                                    ctx.workspace_bytes());
  if (!p.found) return false;
  BN_CUBLAS(cublasLtMatmul(ctx.lt(), p.op, alpha, A, p.a, B, p.b, beta, C, p.c, C, p.c, &p.algo,
                           ctx.workspace(), ctx.workspace_bytes(), stream));
  return true;
}

// fp32 GEMM (CUBLAS_COMPUTE_32F: true fp32, no TF32); no algorithm is an error.
void sgemm(TrainContext& ctx, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* A, int64_t lda,
           const float* B, int64_t ldb, float* C, int64_t ldc, float beta, cudaStream_t stream) {
  const float alpha = 1.0f;
  if (!lt_matmul(ctx, CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F, CUDA_R_32F, ta, tb, m, n, k, A, lda, B, ldb,
                 C, ldc, &alpha, &beta, stream))
    fail("cuBLASLt has no fp32 algorithm for m={} n={} k={}", m, n, k);
}

// bf16 operands, fp32 C (beta 1: accumulated into, 0: overwritten), fp32 compute; no algorithm is
// an error.
void bf16_gemm(TrainContext& ctx, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const kern::bf16_t* A,
               int64_t lda, const kern::bf16_t* B, int64_t ldb, float* C, int64_t ldc, float beta,
               cudaStream_t stream) {
  const float alpha = 1.0f;
  if (!lt_matmul(ctx, CUDA_R_16BF, CUDA_R_32F, CUBLAS_COMPUTE_32F, CUDA_R_32F, ta, tb, m, n, k, A, lda, B,
                 ldb, C, ldc, &alpha, &beta, stream))
    fail("cuBLASLt has no bf16 algorithm for m={} n={} k={}", m, n, k);
}

// The same with a bf16 C, overwritten (the head's logits under bf16 autocast): fp32 sums rounded.
void bf16_gemm_bf16_out(TrainContext& ctx, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                        const kern::bf16_t* A, int64_t lda, const kern::bf16_t* B, int64_t ldb,
                        kern::bf16_t* C, int64_t ldc, cudaStream_t stream) {
  const float alpha = 1.0f, beta = 0.0f;
  if (!lt_matmul(ctx, CUDA_R_16BF, CUDA_R_16BF, CUBLAS_COMPUTE_32F, CUDA_R_32F, ta, tb, m, n, k, A, lda, B,
                 ldb, C, ldc, &alpha, &beta, stream))
    fail("cuBLASLt has no bf16-output algorithm for m={} n={} k={}", m, n, k);
}

// Row-major y[T][out] = x[T][in] . W[out][in]^T is column-major y^T = W . x^T: A = W read
// transposed (lda = in), B = x^T as stored (ldb = in).
void float_forward(TrainContext& ctx, const float* x, int64_t T, int64_t in, const float* W, int64_t out,
                   float* y, cudaStream_t stream) {
  if (T == 0) return;
  sgemm(ctx, true, false, out, T, in, W, in, x, in, y, out, 0.0f, stream);
}

// dx[T][in] += dy[T][out] . W[out][in]: column-major dx^T (in x T) += W^T (as stored) . dy^T (as stored).
// dW[out][in] += dy^T . x: column-major dW^T (in x out) += x^T (as stored) . dy (dy^T read transposed).
void float_backward(TrainContext& ctx, const float* dy, const float* x, int64_t T, int64_t in, const float* W,
                    int64_t out, float* dx, float* dW, cudaStream_t stream, bool accumulate_dx = true) {
  if (T == 0) return;
  if (dx != nullptr)
    sgemm(ctx, false, false, in, T, out, W, in, dy, out, dx, in, accumulate_dx ? 1.0f : 0.0f, stream);
  if (dW != nullptr) sgemm(ctx, false, true, in, out, T, x, in, dy, out, dW, in, 1.0f, stream);
}

}  // namespace

namespace {

// Under BITNET_CUDA_PROFILE, a profile section for one part of a BitLinear of shape out x in
// ("bitlinear 4096x768: int8 product"); the names are interned, as OpProfile keeps the pointers.
void sub_mark(TrainContext& ctx, const char* part, int64_t out, int64_t in, cudaStream_t stream) {
  if (ctx.prof == nullptr) return;
  static std::mutex mu;
  static std::set<std::string> names;
  const std::lock_guard<std::mutex> lock(mu);
  const auto it = names.insert(fmt::format("bitlinear {}x{}: {}", out, in, part)).first;
  ctx.prof->mark(it->c_str(), stream);
}

// The quantized activations' buffers for T x in (cuBLASLt's int8 kernels want k a multiple of 4 and
// 4-byte aligned rows; 16 keeps every row 16-byte aligned, the faster kernels; zero padding leaves
// the products exact).
void size_activations(BitLinearCache& cache, int64_t T, int64_t in) {
  cache.quantized = true;
  cache.T = T;
  cache.in = in;
  cache.in_pad = round_up(in, 16);
  cache.xq.resize(static_cast<size_t>(T * cache.in_pad));
  cache.dq.resize(static_cast<size_t>(T));
}

// The weights' codes, the exact integer product of the cache's activation codes and the engine's
// epilogue.
void quantized_product(TrainContext& ctx, int64_t T, int64_t in, const float* W, int64_t out,
                       std::span<const int64_t> groups, float* y, BitLinearCache& cache,
                       cudaStream_t stream) {
  const int64_t in_pad = cache.in_pad, out_pad = round_up(out, 4);
  cache.out = out;
  cache.out_pad = out_pad;
  cache.wq.resize(static_cast<size_t>(out_pad * in_pad));
  cache.row_scale.resize(static_cast<size_t>(out));
  cache.acc.resize(static_cast<size_t>(T * out_pad));

  // Weights: one absmean scale per group of rows, then the codes with each row's scale.
  sub_mark(ctx, "weights' ternarization", out, in, stream);
  auto* partial = static_cast<double*>(ctx.scratch(sizeof(double) * kern::kAbsmeanParts));
  int64_t r0 = 0;
  for (const int64_t g : groups) {
    // The groups run one after another on the stream, so they can share the partial sums.
    kern::absmean_scale(W + r0 * in, g * in, partial, cache.row_scale.data() + r0, g, stream);
    r0 += g;
  }
  kern::ternarize_rows(W, cache.row_scale.data(), out, in, out_pad, in_pad, cache.wq.data(), stream);
  if (T == 0) return;
  // Row-major acc[T][out_pad] is column-major acc^T = wq . xq^T: the "TN" form, both operands with
  // the reduction dimension contiguous.
  const int32_t one = 1, zero = 0;
  sub_mark(ctx, "int8 product", out, in, stream);
  cache.used_cublaslt =
      !ctx.force_dp4a && lt_matmul(ctx, CUDA_R_8I, CUDA_R_32I, CUBLAS_COMPUTE_32I, CUDA_R_32I, true, false,
                                   out_pad, T, in_pad, cache.wq.data(), in_pad, cache.xq.data(), in_pad,
                                   cache.acc.data(), out_pad, &one, &zero, stream);
  if (!cache.used_cublaslt)
    kern::int8_gemm_dp4a(cache.xq.data(), cache.wq.data(), T, out_pad, in_pad, cache.acc.data(), stream);
  if (y == nullptr) return;  // the op after reads the product from the cache (product_rows)
  sub_mark(ctx, "epilogue", out, in, stream);
  kern::int8_epilogue(cache.acc.data(), out_pad, cache.row_scale.data(), cache.dq.data(), T, out, y, stream);
}

}  // namespace

kern::ProductRows product_rows(const BitLinearCache& cache) {
  if (!cache.quantized) fail("product_rows: the cache holds no quantized product");
  return kern::ProductRows{.acc = cache.acc.data(),
                           .ld = cache.out_pad,
                           .row_scale = cache.row_scale.data(),
                           .dq = cache.dq.data()};
}

void bitlinear_forward(TrainContext& ctx, const float* x, int64_t T, int64_t in, const float* W, int64_t out,
                       std::span<const int64_t> groups, bool quantize, float* y, BitLinearCache& cache,
                       cudaStream_t stream) {
  if (y == nullptr && !quantize) fail("bitlinear_forward: an fp32 product needs its output buffer");
  train::check_linear_sizes("bitlinear_forward", T, in, out);
  train::check_linear_groups("bitlinear_forward", groups, out);
  if (!quantize) {
    cache.quantized = false;
    cache.T = T;
    cache.in = in;
    cache.out = out;
    cache.in_pad = cache.out_pad = 0;
    cache.used_cublaslt = false;
    float_forward(ctx, x, T, in, W, out, y, stream);
    return;
  }
  train::check_int32_accumulator("bitlinear_forward", in);
  size_activations(cache, T, in);
  kern::quantize_rows(x, T, in, cache.in_pad, cache.xq.data(), cache.dq.data(), stream);
  quantized_product(ctx, T, in, W, out, groups, y, cache, stream);
}

kern::ProductRows product_rows(const BitLinearCache& cache, const char* op, int64_t T, int64_t out) {
  if (!cache.quantized || cache.T != T || cache.out != out)
    fail("{}: the cache (quantized={} T={} out={}) holds no quantized product of T={} out={}", op,
         cache.quantized, cache.T, cache.out, T, out);
  return product_rows(cache);
}

void add_rmsnorm_quantize(TrainContext& ctx, const float* a, const BitLinearCache& product, int64_t T,
                          int64_t n, float* sum, const float* w, float eps, float* rstd,
                          BitLinearCache& cache, cudaStream_t stream) {
  const kern::ProductRows b = product_rows(product, "add_rmsnorm_quantize", T, n);
  if (&product == &cache) fail("add_rmsnorm_quantize: the product's cache cannot also take the norm's codes");
  train::check_rmsnorm_sizes("add_rmsnorm_quantize", T, n);
  train::check_int32_accumulator("add_rmsnorm_quantize", n);
  size_activations(cache, T, n);
  if (kern::add_rmsnorm_quantize(a, b, sum, w, T, n, cache.in_pad, eps, rstd, cache.xq.data(),
                                 cache.dq.data(), stream))
    return;
  kern::add_rows(a, b, T, n, sum, stream);
  rmsnorm_quantize(ctx, sum, w, T, n, eps, rstd, cache, stream);
}

void gated_rmsnorm_quantize(TrainContext& ctx, const BitLinearCache& gu, int64_t T, int64_t ff, FfnAct act,
                            float* out, const float* w, float eps, float* rstd, BitLinearCache& cache,
                            cudaStream_t stream) {
  const kern::ProductRows rows = product_rows(gu, "gated_rmsnorm_quantize", T, 2 * ff);
  if (&gu == &cache) fail("gated_rmsnorm_quantize: the product's cache cannot also take the norm's codes");
  train::check_gated_sizes("gated_rmsnorm_quantize", T, ff);
  train::check_int32_accumulator("gated_rmsnorm_quantize", ff);
  size_activations(cache, T, ff);
  const bool relu2 = act == FfnAct::kRelu2;
  if (kern::gated_rmsnorm_quantize(rows, ff, relu2, out, w, T, cache.in_pad, eps, rstd, cache.xq.data(),
                                   cache.dq.data(), stream))
    return;
  kern::gated_forward(rows, T, ff, relu2, out, stream);
  rmsnorm_quantize(ctx, out, w, T, ff, eps, rstd, cache, stream);
}

void rmsnorm_quantize(TrainContext& ctx, const float* x, const float* w, int64_t T, int64_t n, float eps,
                      float* rstd, BitLinearCache& cache, cudaStream_t stream) {
  train::check_rmsnorm_sizes("rmsnorm_quantize", T, n);
  train::check_int32_accumulator("rmsnorm_quantize", n);
  size_activations(cache, T, n);
  if (kern::rmsnorm_quantize(x, w, T, n, cache.in_pad, eps, rstd, cache.xq.data(), cache.dq.data(), stream))
    return;
  // Rows the one-pass kernel does not take: the norm's output through scratch, then its codes.
  auto* y = static_cast<float*>(ctx.scratch(sizeof(float) * static_cast<size_t>(T * n)));
  kern::rmsnorm_forward(x, w, T, n, eps, y, rstd, stream);
  kern::quantize_rows(y, T, n, cache.in_pad, cache.xq.data(), cache.dq.data(), stream);
}

void bitlinear_forward_codes(TrainContext& ctx, int64_t T, int64_t in, const float* W, int64_t out,
                             std::span<const int64_t> groups, float* y, BitLinearCache& cache,
                             cudaStream_t stream) {
  train::check_linear_sizes("bitlinear_forward_codes", T, in, out);
  train::check_linear_groups("bitlinear_forward_codes", groups, out);
  if (!cache.quantized || cache.T != T || cache.in != in)
    fail("bitlinear_forward_codes: the cache holds no activation codes for T={} in={}", T, in);
  quantized_product(ctx, T, in, W, out, groups, y, cache, stream);
}

namespace {

// The STE's products from the bf16 operands: dx^T (in x T) (+)= codes^T (wq as stored, [out][in_pad],
// converted into wc) . dy_w^T; dW^T (in x out) += xcodes^T (xq as stored, [T][in_pad], converted
// into xc) . dy_x (read transposed).
void backward_products(TrainContext& ctx, const kern::bf16_t* dy_w, const kern::bf16_t* dy_x, int64_t T,
                       int64_t in, int64_t out, const BitLinearCache& cache, kern::bf16_t* wc,
                       kern::bf16_t* xc, float* dx, float* dW, cudaStream_t stream, bool accumulate_dx) {
  if (dx != nullptr) {
    sub_mark(ctx, "backward: weight codes to bf16", out, in, stream);
    kern::codes_to_bf16(cache.wq.data(), out * cache.in_pad, wc, stream);
    sub_mark(ctx, "backward: dx product", out, in, stream);
    bf16_gemm(ctx, false, false, in, T, out, wc, cache.in_pad, dy_w, out, dx, in, accumulate_dx ? 1.0f : 0.0f,
              stream);
  }
  if (dW != nullptr) {
    sub_mark(ctx, "backward: activation codes to bf16", out, in, stream);
    kern::codes_to_bf16(cache.xq.data(), T * cache.in_pad, xc, stream);
    sub_mark(ctx, "backward: dW product", out, in, stream);
    bf16_gemm(ctx, false, true, in, out, T, xc, cache.in_pad, dy_x, out, dW, in, 1.0f, stream);
  }
}

// Element counts rounded up so that each operand in one scratch block starts 256-byte aligned
// (cuBLASLt's fastest kernels want 16 bytes at least).
size_t padded(int64_t n) {
  return static_cast<size_t>((n + 127) / 128 * 128);
}

}  // namespace

void bitlinear_backward(TrainContext& ctx, const float* dy, const float* x, int64_t T, int64_t in,
                        const float* W, int64_t out, const BitLinearCache& cache, float* dx, float* dW,
                        cudaStream_t stream, bool accumulate_dx) {
  train::check_linear_sizes("bitlinear_backward", T, in, out);
  if (cache.T != T || cache.in != in || cache.out != out)
    fail("bitlinear_backward: the cache (T={} in={} out={}) does not match T={} in={} out={}", cache.T,
         cache.in, cache.out, T, in, out);
  if (!cache.quantized) return float_backward(ctx, dy, x, T, in, W, out, dx, dW, stream, accumulate_dx);
  if (T == 0 || (dx == nullptr && dW == nullptr)) return;
  // The STE's operands on the tensor cores, in bf16 with fp32 accumulation. The ternary codes and the
  // int8 activation codes are exact in bf16 (integers below 256); the scales are folded into dy
  // instead (dx needs dy[t][o] * row_scale[o], dW needs dy[t][o] * (1/s_t)), so the only rounding
  // is of those products to bf16 (relative 2^-9), as in a bf16-autocast trainer.
  const size_t n_w = dx != nullptr ? padded(out * cache.in_pad) : 0,
               n_x = dW != nullptr ? padded(T * cache.in_pad) : 0;
  const size_t n_dw = dx != nullptr ? padded(T * out) : 0, n_dx = dW != nullptr ? padded(T * out) : 0;
  auto* wc = static_cast<kern::bf16_t*>(ctx.scratch(sizeof(kern::bf16_t) * (n_w + n_x + n_dw + n_dx)));
  kern::bf16_t* xc = wc + n_w;
  kern::bf16_t* dy_w = dx != nullptr ? xc + n_x : nullptr;
  kern::bf16_t* dy_x = dW != nullptr ? xc + n_x + n_dw : nullptr;
  kern::scale_grad_bf16(dy, T, out, cache.row_scale.data(), cache.dq.data(), dy_w, dy_x, stream);
  backward_products(ctx, dy_w, dy_x, T, in, out, cache, wc, xc, dx, dW, stream, accumulate_dx);
}

void bitlinear_backward_scaled(TrainContext& ctx, const kern::bf16_t* dy_w, const kern::bf16_t* dy_x,
                               int64_t T, int64_t in, int64_t out, const BitLinearCache& cache, float* dx,
                               float* dW, cudaStream_t stream, bool accumulate_dx) {
  train::check_linear_sizes("bitlinear_backward_scaled", T, in, out);
  if (!cache.quantized || cache.T != T || cache.in != in || cache.out != out)
    fail(
        "bitlinear_backward_scaled: the cache (quantized={} T={} in={} out={}) does not match a quantized "
        "T={} in={} out={}",
        cache.quantized, cache.T, cache.in, cache.out, T, in, out);
  if (T == 0 || (dx == nullptr && dW == nullptr)) return;
  const size_t n_w = dx != nullptr ? padded(out * cache.in_pad) : 0,
               n_x = dW != nullptr ? padded(T * cache.in_pad) : 0;
  auto* wc = static_cast<kern::bf16_t*>(ctx.scratch(sizeof(kern::bf16_t) * (n_w + n_x)));
  backward_products(ctx, dy_w, dy_x, T, in, out, cache, wc, wc + n_w, dx, dW, stream, accumulate_dx);
}

void matmul_forward(TrainContext& ctx, const float* x, int64_t T, int64_t in, const float* W, int64_t out,
                    float* y, cudaStream_t stream) {
  train::check_linear_sizes("matmul_forward", T, in, out);
  float_forward(ctx, x, T, in, W, out, y, stream);
}

void matmul_backward(TrainContext& ctx, const float* dy, const float* x, int64_t T, int64_t in,
                     const float* W, int64_t out, float* dx, float* dW, cudaStream_t stream) {
  train::check_linear_sizes("matmul_backward", T, in, out);
  float_backward(ctx, dy, x, T, in, W, out, dx, dW, stream);
}

void matmul_bf16_forward(TrainContext& ctx, const float* x, int64_t T, int64_t in, const float* W,
                         int64_t out, kern::bf16_t* y, MatmulBf16Cache& cache, cudaStream_t stream) {
  train::check_linear_sizes("matmul_bf16_forward", T, in, out);
  cache.T = T;
  cache.in = in;
  cache.out = out;
  cache.x.resize(static_cast<size_t>(T * in));
  cache.W.resize(static_cast<size_t>(out * in));
  kern::to_bf16(x, T * in, cache.x.data(), stream);
  kern::to_bf16(W, out * in, cache.W.data(), stream);
  if (T == 0) return;
  // As float_forward: column-major y^T = W . x^T.
  bf16_gemm_bf16_out(ctx, true, false, out, T, in, cache.W.data(), in, cache.x.data(), in, y, out, stream);
}

void matmul_bf16_backward(TrainContext& ctx, const kern::bf16_t* dy, int64_t T, int64_t in, int64_t out,
                          const MatmulBf16Cache& cache, float* dx, float* dW, cudaStream_t stream) {
  train::check_linear_sizes("matmul_bf16_backward", T, in, out);
  if (cache.T != T || cache.in != in || cache.out != out)
    fail("matmul_bf16_backward: the cache (T={} in={} out={}) does not match T={} in={} out={}", cache.T,
         cache.in, cache.out, T, in, out);
  if (T == 0) return;
  // As float_backward, dx written (beta 0) and dW added to.
  if (dx != nullptr)
    bf16_gemm(ctx, false, false, in, T, out, cache.W.data(), in, dy, out, dx, in, 0.0f, stream);
  if (dW != nullptr)
    bf16_gemm(ctx, false, true, in, out, T, cache.x.data(), in, dy, out, dW, in, 1.0f, stream);
}

}  // namespace bitnet::cuda
