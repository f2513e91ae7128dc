// The per-row and element-wise training kernels: RMSNorm, RoPE, gated activation, the embedding's
// forward and
// softmax cross-entropy. Float expressions are spelled with __fmul_rn / __fadd_rn where the CPU's
// rounding order matters, so nvcc does not contract them into FMAs the CPU does not use.
#include "cuda/check.h"
#include "cuda/reduce.cuh"
#include "cuda/train_kernels.h"

namespace bitnet::cuda::kern {

namespace {

constexpr int kThreads = 256;

// ---- RMSNorm ----

// rms_norm: ss in double, mean = float(ss / n), r = 1 / sqrt(mean + eps), y = (x * r) * w.
__global__ void rmsnorm_forward_kernel(const float* __restrict__ x, const float* __restrict__ w, int64_t n,
                                       float eps, float* __restrict__ y, float* __restrict__ rstd) {
  const int64_t t = blockIdx.x;
  const float* row = x + t * n;
  double ss = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const double v = row[i];
    ss = __dadd_rn(ss, __dmul_rn(v, v));
  }
  ss = dev::block_reduce(ss, dev::Sum{}, 0.0);
  const float mean = static_cast<float>(ss / static_cast<double>(n));
  const float r = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(mean, eps)));
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) y[t * n + i] = __fmul_rn(__fmul_rn(row[i], r), w[i]);
  if (threadIdx.x == 0) rstd[t] = r;
}

// dx_j += r w_j dy_j - c x_j with c = r^3 / n * sum_i dy_i w_i x_i (the sum in double).
__global__ void rmsnorm_dx_kernel(const float* __restrict__ dy, const float* __restrict__ x,
                                  const float* __restrict__ w, const float* __restrict__ rstd, int64_t n,
                                  float* __restrict__ dx) {
  const int64_t t = blockIdx.x;
  const float* g = dy + t * n;
  const float* xr = x + t * n;
  const float r = rstd[t];
  double sdot = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
    sdot = __dadd_rn(sdot, __dmul_rn(static_cast<double>(__fmul_rn(g[i], w[i])), static_cast<double>(xr[i])));
  sdot = dev::block_reduce(sdot, dev::Sum{}, 0.0);
  const double rd = r;
  const float c = static_cast<float>(
      __ddiv_rn(__dmul_rn(__dmul_rn(__dmul_rn(sdot, rd), rd), rd), static_cast<double>(n)));
  float* d = dx + t * n;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
    d[i] = __fadd_rn(d[i], __fsub_rn(__fmul_rn(__fmul_rn(r, w[i]), g[i]), __fmul_rn(c, xr[i])));
}

// One pass for both gradients (dy and x are read once): block p takes the rows of chunk p in
// order; each thread owns columns tid + k * blockDim.x (k < kPer) and keeps their w and their
// partial dw sums, partial[p][i] = sum over the chunk's rows of (dy * x) * r, in registers. dx
// sums and rounds exactly as rmsnorm_dx_kernel (the same strided order per thread, then the block
// reduction), written (=) or added (+=). dx or partial may be null.
template <int kPer>
__global__ void rmsnorm_backward_fused_kernel(const float* __restrict__ dy, const float* __restrict__ x,
                                              const float* __restrict__ w, const float* __restrict__ rstd,
                                              int64_t T, int64_t n, float* __restrict__ dx, bool accumulate,
                                              float* __restrict__ partial) {
  const int64_t t0 = static_cast<int64_t>(blockIdx.x) * kRmsChunk;
  const int64_t t1 = t0 + kRmsChunk < T ? t0 + kRmsChunk : T;
  float wv[kPer], dwp[kPer];
#pragma unroll
  for (int k = 0; k < kPer; ++k) {
    const int64_t i = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
    wv[k] = i < n ? w[i] : 0.0f;
    dwp[k] = 0.0f;
  }
  for (int64_t t = t0; t < t1; ++t) {
    float g[kPer], xv[kPer];
    double sdot = 0.0;
#pragma unroll
    for (int k = 0; k < kPer; ++k) {
      const int64_t i = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
      g[k] = i < n ? dy[t * n + i] : 0.0f;
      xv[k] = i < n ? x[t * n + i] : 0.0f;
      if (i < n)
        sdot = __dadd_rn(sdot,
                         __dmul_rn(static_cast<double>(__fmul_rn(g[k], wv[k])), static_cast<double>(xv[k])));
    }
    const float r = rstd[t];
    if (partial != nullptr) {
#pragma unroll
      for (int k = 0; k < kPer; ++k) dwp[k] = __fadd_rn(dwp[k], __fmul_rn(__fmul_rn(g[k], xv[k]), r));
    }
    if (dx == nullptr) continue;  // uniform across the block: no thread skips a reduction's barriers
    sdot = dev::block_reduce(sdot, dev::Sum{}, 0.0);
    const double rd = r;
    const float c = static_cast<float>(
        __ddiv_rn(__dmul_rn(__dmul_rn(__dmul_rn(sdot, rd), rd), rd), static_cast<double>(n)));
#pragma unroll
    for (int k = 0; k < kPer; ++k) {
      const int64_t i = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
      if (i >= n) continue;
      const float v = __fsub_rn(__fmul_rn(__fmul_rn(r, wv[k]), g[k]), __fmul_rn(c, xv[k]));
      dx[t * n + i] = accumulate ? __fadd_rn(dx[t * n + i], v) : v;
    }
  }
  if (partial == nullptr) return;
#pragma unroll
  for (int k = 0; k < kPer; ++k) {
    const int64_t i = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
    if (i < n) partial[blockIdx.x * n + i] = dwp[k];
  }
}

// partial[p][i] = sum over the rows of chunk p of (dy * x) * r: one thread per column, so the rows
// of a chunk are added in order.
__global__ void rmsnorm_dw_partial_kernel(const float* __restrict__ dy, const float* __restrict__ x,
                                          const float* __restrict__ rstd, int64_t T, int64_t n,
                                          float* __restrict__ partial) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const int64_t t0 = static_cast<int64_t>(blockIdx.y) * kRmsChunk;
  const int64_t t1 = t0 + kRmsChunk < T ? t0 + kRmsChunk : T;
  float s = 0.0f;
  for (int64_t t = t0; t < t1; ++t)
    s = __fadd_rn(s, __fmul_rn(__fmul_rn(dy[t * n + i], x[t * n + i]), rstd[t]));
  partial[blockIdx.y * n + i] = s;
}

__global__ void rmsnorm_dw_reduce_kernel(const float* __restrict__ partial, int64_t parts, int64_t n,
                                         float* __restrict__ dw) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float s = 0.0f;
  for (int64_t p = 0; p < parts; ++p) s = __fadd_rn(s, partial[p * n + i]);
  dw[i] = __fadd_rn(dw[i], s);
}

// ---- residual ----

__global__ void add_kernel(const float* __restrict__ a, const float* __restrict__ b, int64_t n,
                           float* __restrict__ out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = __fadd_rn(a[i], b[i]);
}

// ---- RoPE ----

// rope_rotate_ref: one thread per (token, head, pair); inverse rotates by minus the angles.
// Block t: token t's (head, pair) elements, 32-bit index arithmetic (a 64-bit division per element
// costs more than the element's memory traffic).
__global__ void rope_kernel(float* __restrict__ qkv, int64_t seq, int heads, int64_t head_dim,
                            int64_t row_stride, int half, bool neox, const float* __restrict__ cs,
                            const float* __restrict__ sn, bool inverse) {
  const int64_t t = blockIdx.x, p = t % seq;
  for (int e = threadIdx.x; e < heads * half; e += blockDim.x) {
    const int h = e / half, i = e - h * half;
    const float c = cs[p * half + i], s = inverse ? -sn[p * half + i] : sn[p * half + i];
    float* v = qkv + t * row_stride + h * head_dim;
    const int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
    const float x0 = v[a], x1 = v[b];
    v[a] = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s));
    v[b] = __fadd_rn(__fmul_rn(x0, s), __fmul_rn(x1, c));
  }
}

// ---- gated activation ----

// Block t: row t (no index division per element).
__global__ void gated_forward_kernel(const float* __restrict__ gu, int64_t ff, bool relu2,
                                     float* __restrict__ out) {
  const int64_t t = blockIdx.x;
  for (int64_t i = threadIdx.x; i < ff; i += blockDim.x) {
    const int64_t e = t * ff + i;
    const float g = gu[t * 2 * ff + i], u = gu[t * 2 * ff + ff + i];
    if (relu2) {
      const float r = g > 0 ? g : 0.0f;
      out[e] = __fmul_rn(__fmul_rn(r, r), u);
    } else {
      out[e] = __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), u);
    }
  }
}

__global__ void gated_backward_kernel(const float* __restrict__ dout, const float* __restrict__ gu,
                                      int64_t ff, bool relu2, bool accumulate, float* __restrict__ dgu) {
  const int64_t t = blockIdx.x;
  for (int64_t i = threadIdx.x; i < ff; i += blockDim.x) {
    const int64_t e = t * ff + i;
    const int64_t gi = t * 2 * ff + i, ui = gi + ff;
    const float g = gu[gi], u = gu[ui], d = dout[e];
    float dg, du;
    if (relu2) {
      const float r = g > 0 ? g : 0.0f;
      dg = __fmul_rn(__fmul_rn(__fmul_rn(2.0f, r), u), d);
      du = __fmul_rn(__fmul_rn(r, r), d);
    } else {
      const float sig = __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-g)));
      dg = __fmul_rn(__fmul_rn(__fmul_rn(sig, __fadd_rn(1.0f, __fmul_rn(g, __fsub_rn(1.0f, sig)))), u), d);
      du = __fmul_rn(__fmul_rn(g, sig), d);
    }
    dgu[gi] = accumulate ? __fadd_rn(dgu[gi], dg) : dg;
    dgu[ui] = accumulate ? __fadd_rn(dgu[ui], du) : du;
  }
}

// ---- embedding ----

__global__ void embedding_forward_kernel(const int32_t* __restrict__ tokens, const float* __restrict__ table,
                                         int64_t vocab, int64_t d, float* __restrict__ x, int32_t* flag) {
  const int64_t t = blockIdx.x;
  const int32_t id = tokens[t];
  if (id < 0 || id >= vocab) {
    if (threadIdx.x == 0) atomicExch(flag, 1);
    return;
  }
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) x[t * d + i] = table[id * d + i];
}

// ---- cross-entropy ----

// One block per row: max, exp(l - max) summed in double, dlogits = (e * inv) * grad_scale minus
// grad_scale at the target, loss = log(sum) - (l[target] - max).
__global__ void cross_entropy_kernel(const float* __restrict__ logits, const int32_t* __restrict__ targets,
                                     int64_t V, float grad_scale, float* __restrict__ dlogits,
                                     double* __restrict__ row_loss, int32_t* flag) {
  const int64_t t = blockIdx.x;
  const int32_t target = targets[t];
  if (target < 0 || target >= V) {
    if (threadIdx.x == 0) {
      atomicExch(flag, 1);
      row_loss[t] = 0.0;
    }
    return;
  }
  const float* l = logits + t * V;
  float mx = -INFINITY;
  for (int64_t v = threadIdx.x; v < V; v += blockDim.x) mx = fmaxf(mx, l[v]);
  mx = dev::block_reduce(mx, dev::Max{}, -INFINITY);
  double sum = 0.0;
  float* d = dlogits != nullptr ? dlogits + t * V : nullptr;
  for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
    const float e = expf(__fsub_rn(l[v], mx));
    if (d != nullptr) d[v] = e;
    sum += e;
  }
  sum = dev::block_reduce(sum, dev::Sum{}, 0.0);
  if (d != nullptr) {
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) d[v] = __fmul_rn(__fmul_rn(d[v], inv), grad_scale);
    __syncthreads();  // the target's element was written by some thread above
    if (threadIdx.x == 0) d[target] = __fsub_rn(d[target], grad_scale);
  }
  if (threadIdx.x == 0) row_loss[t] = log(sum) - (static_cast<double>(l[target]) - static_cast<double>(mx));
}

__global__ void sum_rows_kernel(const double* __restrict__ row_loss, int64_t T, double* __restrict__ loss) {
  double s = 0.0;
  for (int64_t t = threadIdx.x; t < T; t += blockDim.x) s += row_loss[t];
  s = dev::block_reduce(s, dev::Sum{}, 0.0);
  if (threadIdx.x == 0) *loss = s;
}

}  // namespace

void rmsnorm_forward(const float* x, const float* w, int64_t T, int64_t n, float eps, float* y, float* rstd,
                     cudaStream_t s) {
  if (T == 0) return;
  rmsnorm_forward_kernel<<<static_cast<unsigned>(T), kThreads, 0, s>>>(x, w, n, eps, y, rstd);
  BN_CUDA_LAUNCHED();
}

void rmsnorm_backward(const float* dy, const float* x, const float* w, const float* rstd, int64_t T,
                      int64_t n, float* dx, bool accumulate, float* dw, float* partial, cudaStream_t s) {
  if (T == 0) return;
  const int64_t parts = (T + kRmsChunk - 1) / kRmsChunk;
  float* part = dw != nullptr ? partial : nullptr;
  const unsigned grid = static_cast<unsigned>(parts);
  // The fused pass for rows of up to 16 x kThreads columns (the trainer's), the two kernels beyond.
  const int64_t per = (n + kThreads - 1) / kThreads;
  bool fused = true;
  if (per <= 1)
    rmsnorm_backward_fused_kernel<1><<<grid, kThreads, 0, s>>>(dy, x, w, rstd, T, n, dx, accumulate, part);
  else if (per <= 2)
    rmsnorm_backward_fused_kernel<2><<<grid, kThreads, 0, s>>>(dy, x, w, rstd, T, n, dx, accumulate, part);
  else if (per <= 4)
    rmsnorm_backward_fused_kernel<4><<<grid, kThreads, 0, s>>>(dy, x, w, rstd, T, n, dx, accumulate, part);
  else if (per <= 8)
    rmsnorm_backward_fused_kernel<8><<<grid, kThreads, 0, s>>>(dy, x, w, rstd, T, n, dx, accumulate, part);
  else if (per <= 16)
    rmsnorm_backward_fused_kernel<16><<<grid, kThreads, 0, s>>>(dy, x, w, rstd, T, n, dx, accumulate, part);
  else
    fused = false;
  if (fused) {
    BN_CUDA_LAUNCHED();
    if (dw != nullptr) {
      rmsnorm_dw_reduce_kernel<<<dev::blocks_for(n, kThreads), kThreads, 0, s>>>(partial, parts, n, dw);
      BN_CUDA_LAUNCHED();
    }
    return;
  }
  if (dx != nullptr && !accumulate)
    BN_CUDA(cudaMemsetAsync(dx, 0, sizeof(float) * static_cast<size_t>(T * n), s));
  if (dx != nullptr) {
    rmsnorm_dx_kernel<<<static_cast<unsigned>(T), kThreads, 0, s>>>(dy, x, w, rstd, n, dx);
    BN_CUDA_LAUNCHED();
  }
  if (dw != nullptr) {
    const int64_t parts = (T + kRmsChunk - 1) / kRmsChunk;
    const dim3 grid(dev::blocks_for(n, kThreads), static_cast<unsigned>(parts));
    rmsnorm_dw_partial_kernel<<<grid, kThreads, 0, s>>>(dy, x, rstd, T, n, partial);
    BN_CUDA_LAUNCHED();
    rmsnorm_dw_reduce_kernel<<<dev::blocks_for(n, kThreads), kThreads, 0, s>>>(partial, parts, n, dw);
    BN_CUDA_LAUNCHED();
  }
}

void add(const float* a, const float* b, int64_t n, float* out, cudaStream_t s) {
  if (n == 0) return;
  add_kernel<<<dev::blocks_for(n, kThreads), kThreads, 0, s>>>(a, b, n, out);
  BN_CUDA_LAUNCHED();
}

void rope(float* qkv, int64_t T, int64_t seq, int64_t n_rot_heads, int64_t head_dim, int64_t row_stride,
          int64_t rope_dim, bool neox, const float* cs, const float* sn, bool inverse, cudaStream_t s) {
  const int64_t half = rope_dim / 2, total = T * n_rot_heads * half;
  if (total == 0) return;
  rope_kernel<<<static_cast<unsigned>(T), kThreads, 0, s>>>(qkv, seq, static_cast<int>(n_rot_heads), head_dim,
                                                            row_stride, static_cast<int>(half), neox, cs, sn,
                                                            inverse);
  BN_CUDA_LAUNCHED();
}

void gated_forward(const float* gu, int64_t T, int64_t ff, bool relu2, float* out, cudaStream_t s) {
  const int64_t total = T * ff;
  if (total == 0) return;
  gated_forward_kernel<<<static_cast<unsigned>(T), kThreads, 0, s>>>(gu, ff, relu2, out);
  BN_CUDA_LAUNCHED();
}

void gated_backward(const float* dout, const float* gu, int64_t T, int64_t ff, bool relu2, bool accumulate,
                    float* dgu, cudaStream_t s) {
  const int64_t total = T * ff;
  if (total == 0) return;
  gated_backward_kernel<<<static_cast<unsigned>(T), kThreads, 0, s>>>(dout, gu, ff, relu2, accumulate, dgu);
  BN_CUDA_LAUNCHED();
}

void embedding_forward(const int32_t* tokens, int64_t T, const float* table, int64_t vocab, int64_t d,
                       float* x, int32_t* flag, cudaStream_t s) {
  if (T == 0) return;
  embedding_forward_kernel<<<static_cast<unsigned>(T), kThreads, 0, s>>>(tokens, table, vocab, d, x, flag);
  BN_CUDA_LAUNCHED();
}

void cross_entropy(const float* logits, const int32_t* targets, int64_t T, int64_t V, float grad_scale,
                   float* dlogits, double* row_loss, double* loss, int32_t* flag, cudaStream_t s) {
  if (T > 0) {
    cross_entropy_kernel<<<static_cast<unsigned>(T), kThreads, 0, s>>>(logits, targets, V, grad_scale,
                                                                       dlogits, row_loss, flag);
    BN_CUDA_LAUNCHED();
  }
  sum_rows_kernel<<<1, kThreads, 0, s>>>(row_loss, T, loss);
  BN_CUDA_LAUNCHED();
}

}  // namespace bitnet::cuda::kern
