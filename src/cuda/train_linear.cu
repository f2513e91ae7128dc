// BitLinear's quantization kernels (the CPU's exact float operations, no contraction: every
// multiply and divide spelled __fmul_rn / __fdiv_rn), the dp4a fallback product and the epilogue.
#include <cuda_bf16.h>

#include "cuda/check.h"
#include "cuda/reduce.cuh"
#include "cuda/train_kernels.h"
#include "cuda/train_math.cuh"

namespace bitnet::cuda::kern {

namespace {

constexpr int kThreads = 256;

// quantize_act_row_ref: s = 127 / max(amax, 1e-5), q = clamp(nearbyint(x * s), -128, 127), dq = 1 / s.
__global__ void quantize_rows_kernel(const float* __restrict__ x, int64_t in, int64_t in_pad,
                                     int8_t* __restrict__ xq, float* __restrict__ dq) {
  const int64_t t = blockIdx.x;
  const float* row = x + t * in;
  float amax = 0.0f;
  for (int64_t i = threadIdx.x; i < in; i += blockDim.x) amax = fmaxf(amax, fabsf(row[i]));
  amax = dev::block_reduce(amax, dev::Max{}, 0.0f);
  const float s = __fdiv_rn(127.0f, fmaxf(amax, 1e-5f));
  int8_t* q = xq + t * in_pad;
  for (int64_t i = threadIdx.x; i < in_pad; i += blockDim.x) {
    float r = 0.0f;
    if (i < in) r = fminf(fmaxf(rintf(__fmul_rn(row[i], s)), -128.0f), 127.0f);
    q[i] = static_cast<int8_t>(r);
  }
  if (threadIdx.x == 0) dq[t] = __fdiv_rn(1.0f, s);
}

// What the norm reads, four columns at a time (float4 column c of row t): the rows x themselves ...
struct RowsIn {
  const float* x;
  int64_t n;
  __device__ float4 operator()(int64_t t, int64_t c) const {
    return reinterpret_cast<const float4*>(x + t * n)[c];
  }
};
// ... or the residual sum a + b (add_rows_kernel's), written to sum on the way ...
struct ResidualIn {
  const float* a;
  ProductRows b;
  float* sum;
  int64_t n;
  __device__ float4 operator()(int64_t t, int64_t c) const {
    const float4 x = reinterpret_cast<const float4*>(a + t * n)[c], y = b.at4(t, 4 * c);
    const float4 v =
        make_float4(__fadd_rn(x.x, y.x), __fadd_rn(x.y, y.y), __fadd_rn(x.z, y.z), __fadd_rn(x.w, y.w));
    reinterpret_cast<float4*>(sum + t * n)[c] = v;
    return v;
  }
};
// ... or the gated activation of the gate|up product (gated_forward_kernel's), written to act.
struct GatedIn {
  ProductRows gu;
  int64_t ff;
  bool relu2;
  float* act;
  __device__ float4 operator()(int64_t t, int64_t c) const {
    const float4 g = gu.at4(t, 4 * c), u = gu.at4(t, ff + 4 * c);
    const float4 v = make_float4(dev::gated_value(g.x, u.x, relu2), dev::gated_value(g.y, u.y, relu2),
                                 dev::gated_value(g.z, u.z, relu2), dev::gated_value(g.w, u.w, relu2));
    reinterpret_cast<float4*>(act + t * ff)[c] = v;
    return v;
  }
};

// rms_norm then quantize_act_row, a warp per row (n a multiple of 4, at most 128 kVec; rows 16-byte
// aligned): lane l owns the float4 columns l + 32 k, and the norm's output never leaves its
// registers. The same float operations as rmsnorm_forward_kernel (ss in double, r = 1 / sqrt(
// float(ss / n) + eps), y = (x r) w) and quantize_rows_kernel on y, so the codes are theirs bit for
// bit (ss is summed in another order, which could only matter if float(ss / n) straddled a rounding
// boundary). The norm's input comes from `in` (RowsIn, ResidualIn or GatedIn).
constexpr int kNormQuantWarps = 8;
template <int kVec, class In>
__global__ void __launch_bounds__(kNormQuantWarps * 32)
    rmsnorm_quantize_kernel(const In in, const float* __restrict__ w, int64_t T, int64_t n, int64_t in_pad,
                            float eps, float* __restrict__ rstd, int8_t* __restrict__ xq,
                            float* __restrict__ dq) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * kNormQuantWarps + threadIdx.x / 32;
  if (t >= T) return;
  const int lane = threadIdx.x % 32;
  const int64_t n4 = n / 4;
  const float4* w4 = reinterpret_cast<const float4*>(w);
  float4 v[kVec];
  double ss = 0.0;
#pragma unroll
  for (int k = 0; k < kVec; ++k) {
    const int64_t c = lane + 32 * k;
    v[k] = c < n4 ? in(t, c) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    ss = __dadd_rn(ss, __dmul_rn(static_cast<double>(v[k].x), static_cast<double>(v[k].x)));
    ss = __dadd_rn(ss, __dmul_rn(static_cast<double>(v[k].y), static_cast<double>(v[k].y)));
    ss = __dadd_rn(ss, __dmul_rn(static_cast<double>(v[k].z), static_cast<double>(v[k].z)));
    ss = __dadd_rn(ss, __dmul_rn(static_cast<double>(v[k].w), static_cast<double>(v[k].w)));
  }
  ss = dev::warp_reduce(ss, dev::Sum{});
  const float mean = static_cast<float>(ss / static_cast<double>(n));
  const float r = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(mean, eps)));
  float amax = 0.0f;
#pragma unroll
  for (int k = 0; k < kVec; ++k) {
    const int64_t c = lane + 32 * k;
    if (c >= n4) continue;
    const float4 wv = w4[c];
    v[k].x = __fmul_rn(__fmul_rn(v[k].x, r), wv.x);
    v[k].y = __fmul_rn(__fmul_rn(v[k].y, r), wv.y);
    v[k].z = __fmul_rn(__fmul_rn(v[k].z, r), wv.z);
    v[k].w = __fmul_rn(__fmul_rn(v[k].w, r), wv.w);
    amax = fmaxf(fmaxf(amax, fmaxf(fabsf(v[k].x), fabsf(v[k].y))), fmaxf(fabsf(v[k].z), fabsf(v[k].w)));
  }
  amax = dev::warp_reduce(amax, dev::Max{});
  const float s = __fdiv_rn(127.0f, fmaxf(amax, 1e-5f));
  auto code = [s](float y) {
    return static_cast<signed char>(fminf(fmaxf(rintf(__fmul_rn(y, s)), -128.0f), 127.0f));
  };
  char4* q4 = reinterpret_cast<char4*>(xq + t * in_pad);
#pragma unroll
  for (int k = 0; k < kVec; ++k) {
    const int64_t c = lane + 32 * k;
    if (c < n4) q4[c] = make_char4(code(v[k].x), code(v[k].y), code(v[k].z), code(v[k].w));
  }
  for (int64_t i = n + lane; i < in_pad; i += 32) xq[t * in_pad + i] = 0;
  if (lane == 0) {
    rstd[t] = r;
    dq[t] = __fdiv_rn(1.0f, s);
  }
}

// absmean_scale: sum |w| in double. Each block sums a fixed strided subset, then one block adds the
// partial sums in block order: deterministic, though not the CPU's left-to-right order.
__global__ void absmean_partial_kernel(const float* __restrict__ w, int64_t n, double* __restrict__ partial) {
  double s = 0.0;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    s += fabs(static_cast<double>(w[i]));
  s = dev::block_reduce(s, dev::Sum{}, 0.0);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void absmean_finish_kernel(const double* __restrict__ partial, int parts, int64_t n,
                                      float* __restrict__ row_scale, int64_t rows) {
  double s = 0.0;
  for (int i = threadIdx.x; i < parts; i += blockDim.x) s += partial[i];
  s = dev::block_reduce(s, dev::Sum{}, 0.0);
  const float mean = static_cast<float>(s / static_cast<double>(n));
  const float scale = fmaxf(mean, 1e-5f);
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) row_scale[r] = scale;
}

// ternarize: inv = 1 / scale, q = clamp(nearbyint(w * inv), -1, 1).
__global__ void ternarize_kernel(const float* __restrict__ W, const float* __restrict__ row_scale,
                                 int64_t out, int64_t in, int64_t in_pad, int64_t total,
                                 int8_t* __restrict__ wq) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= total) return;
  const int64_t o = e / in_pad, i = e % in_pad;
  float r = 0.0f;
  if (o < out && i < in) {
    const float inv = __fdiv_rn(1.0f, row_scale[o]);
    r = fminf(fmaxf(rintf(__fmul_rn(W[o * in + i], inv)), -1.0f), 1.0f);
  }
  wq[e] = static_cast<int8_t>(r);
}

// One thread per output element, threads of a block along the tokens of a 16 x 16 tile: simple and
// exact; only used where cuBLASLt has no int8 algorithm.
__global__ void dp4a_kernel(const int* __restrict__ xq, const int* __restrict__ wq, int64_t T,
                            int64_t out_pad, int64_t k4, int32_t* __restrict__ acc) {
  const int64_t o = static_cast<int64_t>(blockIdx.x) * 16 + threadIdx.y;
  const int64_t t = static_cast<int64_t>(blockIdx.y) * 16 + threadIdx.x;
  if (o >= out_pad || t >= T) return;
  const int* a = xq + t * k4;
  const int* b = wq + o * k4;
  int s = 0;
  for (int64_t i = 0; i < k4; ++i) s = __dp4a(a[i], b[i], s);
  acc[t * out_pad + o] = s;
}

// gemm_scale: float(acc) * (row_scale * dq). Block t: row t.
__global__ void epilogue_kernel(const int32_t* __restrict__ acc, int64_t out_pad,
                                const float* __restrict__ row_scale, const float* __restrict__ dq,
                                int64_t out, float* __restrict__ y) {
  const int64_t t = blockIdx.x;
  const float s = dq[t];
  for (int64_t o = threadIdx.x; o < out; o += blockDim.x)
    y[t * out + o] = __fmul_rn(__int2float_rn(acc[t * out_pad + o]), __fmul_rn(row_scale[o], s));
}

__global__ void dequantize_kernel(const int8_t* __restrict__ q, int64_t ldq, const float* __restrict__ scale,
                                  int64_t cols, int64_t total, float* __restrict__ out) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= total) return;
  const int64_t r = e / cols, c = e % cols;
  out[e] = __fmul_rn(static_cast<float>(q[r * ldq + c]), scale[r]);
}

// Four codes per thread (n is a multiple of 4: every padded code buffer is).
__global__ void codes_to_bf16_kernel(const char4* __restrict__ q, int64_t n4,
                                     __nv_bfloat162* __restrict__ out) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= n4) return;
  const char4 c = q[e];
  out[2 * e] = __floats2bfloat162_rn(static_cast<float>(c.x), static_cast<float>(c.y));
  out[2 * e + 1] = __floats2bfloat162_rn(static_cast<float>(c.z), static_cast<float>(c.w));
}

// Block t: row t (no index division per element, which costs more than the memory traffic).
__global__ void scale_grad_bf16_kernel(const float* __restrict__ dy, int64_t out,
                                       const float* __restrict__ row_scale, const float* __restrict__ dq,
                                       __nv_bfloat16* __restrict__ dy_w, __nv_bfloat16* __restrict__ dy_x) {
  const int64_t t = blockIdx.x;
  const float s = dq[t];
  for (int64_t o = threadIdx.x; o < out; o += blockDim.x) {
    const int64_t e = t * out + o;
    const float g = dy[e];
    if (dy_w != nullptr) dy_w[e] = __float2bfloat16(g * row_scale[o]);
    if (dy_x != nullptr) dy_x[e] = __float2bfloat16(g * s);
  }
}

// out[i] = bf16(x[i]), rounded to nearest.
__global__ void to_bf16_kernel(const float* __restrict__ x, int64_t n, __nv_bfloat16* __restrict__ out) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e < n) out[e] = __float2bfloat16(x[e]);
}

}  // namespace

void to_bf16(const float* x, int64_t n, bf16_t* out, cudaStream_t s) {
  if (n == 0) return;
  to_bf16_kernel<<<dev::blocks_for(n, kThreads), kThreads, 0, s>>>(x, n,
                                                                   reinterpret_cast<__nv_bfloat16*>(out));
  BN_CUDA_LAUNCHED();
}

void codes_to_bf16(const int8_t* q, int64_t n, bf16_t* out, cudaStream_t s) {
  const int64_t n4 = n / 4;
  if (n4 == 0) return;
  codes_to_bf16_kernel<<<dev::blocks_for(n4, kThreads), kThreads, 0, s>>>(
      reinterpret_cast<const char4*>(q), n4, reinterpret_cast<__nv_bfloat162*>(out));
  BN_CUDA_LAUNCHED();
}

void scale_grad_bf16(const float* dy, int64_t T, int64_t out, const float* row_scale, const float* dq,
                     bf16_t* dy_w, bf16_t* dy_x, cudaStream_t s) {
  const int64_t total = T * out;
  if (total == 0) return;
  scale_grad_bf16_kernel<<<static_cast<unsigned>(T), kThreads, 0, s>>>(
      dy, out, row_scale, dq, reinterpret_cast<__nv_bfloat16*>(dy_w), reinterpret_cast<__nv_bfloat16*>(dy_x));
  BN_CUDA_LAUNCHED();
}

namespace {

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

// rmsnorm_quantize_kernel over the input `in`, whose pointers the caller checked for alignment.
template <class In>
bool norm_quantize(const In& in, const float* w, int64_t T, int64_t n, int64_t in_pad, float eps, float* rstd,
                   int8_t* xq, float* dq, cudaStream_t s) {
  const int64_t vec = (n / 4 + 31) / 32;
  if (n % 4 != 0 || vec > 16 || !aligned16(w) || in_pad % 4 != 0) return false;
  if (T == 0) return true;
  const unsigned grid = static_cast<unsigned>((T + kNormQuantWarps - 1) / kNormQuantWarps);
  auto launch = [&](auto kernel) {
    kernel<<<grid, kNormQuantWarps * 32, 0, s>>>(in, w, T, n, in_pad, eps, rstd, xq, dq);
    BN_CUDA_LAUNCHED();
  };
  if (vec <= 2)
    launch(rmsnorm_quantize_kernel<2, In>);
  else if (vec <= 4)
    launch(rmsnorm_quantize_kernel<4, In>);
  else if (vec <= 6)
    launch(rmsnorm_quantize_kernel<6, In>);
  else if (vec <= 8)
    launch(rmsnorm_quantize_kernel<8, In>);
  else
    launch(rmsnorm_quantize_kernel<16, In>);
  return true;
}

}  // namespace

bool rmsnorm_quantize(const float* x, const float* w, int64_t T, int64_t n, int64_t in_pad, float eps,
                      float* rstd, int8_t* xq, float* dq, cudaStream_t s) {
  return aligned16(x) && norm_quantize(RowsIn{x, n}, w, T, n, in_pad, eps, rstd, xq, dq, s);
}

bool add_rmsnorm_quantize(const float* a, const ProductRows& b, float* sum, const float* w, int64_t T,
                          int64_t n, int64_t in_pad, float eps, float* rstd, int8_t* xq, float* dq,
                          cudaStream_t s) {
  return aligned16(a) && aligned16(sum) && b.aligned4() &&
         norm_quantize(ResidualIn{a, b, sum, n}, w, T, n, in_pad, eps, rstd, xq, dq, s);
}

bool gated_rmsnorm_quantize(const ProductRows& gu, int64_t ff, bool relu2, float* act, const float* w,
                            int64_t T, int64_t in_pad, float eps, float* rstd, int8_t* xq, float* dq,
                            cudaStream_t s) {
  return ff % 4 == 0 && aligned16(act) && gu.aligned4() &&
         norm_quantize(GatedIn{gu, ff, relu2, act}, w, T, ff, in_pad, eps, rstd, xq, dq, s);
}

void quantize_rows(const float* x, int64_t T, int64_t in, int64_t in_pad, int8_t* xq, float* dq,
                   cudaStream_t s) {
  if (T == 0) return;
  quantize_rows_kernel<<<static_cast<unsigned>(T), kThreads, 0, s>>>(x, in, in_pad, xq, dq);
  BN_CUDA_LAUNCHED();
}

void absmean_scale(const float* w, int64_t n, double* partial, float* row_scale, int64_t rows,
                   cudaStream_t s) {
  // About 8 elements per thread per block pass, at most kAbsmeanParts blocks: fixed for a given n.
  const long long want = (n + kThreads * 8 - 1) / (kThreads * 8);
  const int parts = static_cast<int>(want < 1 ? 1 : (want > kAbsmeanParts ? kAbsmeanParts : want));
  absmean_partial_kernel<<<parts, kThreads, 0, s>>>(w, n, partial);
  BN_CUDA_LAUNCHED();
  absmean_finish_kernel<<<1, kThreads, 0, s>>>(partial, parts, n, row_scale, rows);
  BN_CUDA_LAUNCHED();
}

void ternarize_rows(const float* W, const float* row_scale, int64_t out, int64_t in, int64_t out_pad,
                    int64_t in_pad, int8_t* wq, cudaStream_t s) {
  const int64_t total = out_pad * in_pad;
  ternarize_kernel<<<dev::blocks_for(total, kThreads), kThreads, 0, s>>>(W, row_scale, out, in, in_pad, total,
                                                                         wq);
  BN_CUDA_LAUNCHED();
}

void int8_gemm_dp4a(const int8_t* xq, const int8_t* wq, int64_t T, int64_t out_pad, int64_t in_pad,
                    int32_t* acc, cudaStream_t s) {
  if (T == 0) return;
  const dim3 block(16, 16), grid(dev::blocks_for(out_pad, 16), dev::blocks_for(T, 16));
  dp4a_kernel<<<grid, block, 0, s>>>(reinterpret_cast<const int*>(xq), reinterpret_cast<const int*>(wq), T,
                                     out_pad, in_pad / 4, acc);
  BN_CUDA_LAUNCHED();
}

void int8_epilogue(const int32_t* acc, int64_t out_pad, const float* row_scale, const float* dq, int64_t T,
                   int64_t out, float* y, cudaStream_t s) {
  const int64_t total = T * out;
  if (total == 0) return;
  epilogue_kernel<<<static_cast<unsigned>(T), kThreads, 0, s>>>(acc, out_pad, row_scale, dq, out, y);
  BN_CUDA_LAUNCHED();
}

void dequantize_rows(const int8_t* q, int64_t ldq, const float* scale, int64_t rows, int64_t cols, float* out,
                     cudaStream_t s) {
  const int64_t total = rows * cols;
  if (total == 0) return;
  dequantize_kernel<<<dev::blocks_for(total, kThreads), kThreads, 0, s>>>(q, ldq, scale, cols, total, out);
  BN_CUDA_LAUNCHED();
}

}  // namespace bitnet::cuda::kern
