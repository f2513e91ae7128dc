// The per-row and element-wise training kernels: RMSNorm, RoPE, gated activation, the embedding's
// forward and
// softmax cross-entropy. Float expressions are spelled with __fmul_rn / __fadd_rn where the CPU's
// rounding order matters, so nvcc does not contract them into FMAs the CPU does not use.
#include <cuda_bf16.h>

#include "cuda/check.h"
#include "cuda/reduce.cuh"
#include "cuda/train_kernels.h"
#include "cuda/train_math.cuh"

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

// One pass for both gradients, a warp per row (no block-wide barrier per row): lane l owns the
// float4 columns l + 32 k (k < kVec) and holds the row's dy and x in registers between the dot
// product and dx. Block p takes the kRmsChunk rows of chunk p, its warps rows w, w + kRmsWarps, ...;
// each warp adds (dy * x) * r of its rows, in order, to its own shared-memory row of dw sums, and
// at the end partial[p] = the warps' rows summed in warp order: deterministic, no atomics. dx sums
// and rounds as rmsnorm_dx_kernel (double dot product, the same expression) and is written (=) or
// added (+=) by DxOut (DxScaledOut: and scaled into the next product's operands); partial may be null. n: a
// multiple of 4, at most 128 kVec.
struct DxOut {
  float* dx;  // null: no dx
  int64_t n;
  bool accumulate;
  __device__ bool on() const { return dx != nullptr; }
  __device__ float4 operator()(int64_t t, int64_t c, float4 v) const {
    float4* d4 = reinterpret_cast<float4*>(dx + t * n);
    if (accumulate) {
      const float4 o = d4[c];
      v.x = __fadd_rn(o.x, v.x);
      v.y = __fadd_rn(o.y, v.y);
      v.z = __fadd_rn(o.z, v.z);
      v.w = __fadd_rn(o.w, v.w);
    }
    d4[c] = v;
    return v;
  }
};
// DxOut, then the dx it leaves scaled into the next product's bf16 operands, as
// scale_grad_bf16_kernel writes them: dy_w = bf16(dx * row_scale[o]), dy_x = bf16(dx * dq[t]).
struct DxScaledOut {
  DxOut dx;
  const float* row_scale;
  const float* dq;
  __nv_bfloat16* dy_w;
  __nv_bfloat16* dy_x;
  __device__ bool on() const { return true; }
  __device__ void operator()(int64_t t, int64_t c, float4 v) const {
    const float4 d = dx(t, c, v);
    const int64_t e = t * dx.n + 4 * c;
    const float4 s = *reinterpret_cast<const float4*>(row_scale + 4 * c);
    const float st = dq[t];
    dev::store_bf16x4(dy_w + e, make_float4(__fmul_rn(d.x, s.x), __fmul_rn(d.y, s.y), __fmul_rn(d.z, s.z),
                                            __fmul_rn(d.w, s.w)));
    dev::store_bf16x4(dy_x + e, make_float4(__fmul_rn(d.x, st), __fmul_rn(d.y, st), __fmul_rn(d.z, st),
                                            __fmul_rn(d.w, st)));
  }
};
constexpr int kRmsWarps = 8;
template <int kVec, class Out>
__global__ void __launch_bounds__(kRmsWarps * 32)
    rmsnorm_backward_warp_kernel(const float* __restrict__ dy, const float* __restrict__ x,
                                 const float* __restrict__ w, const float* __restrict__ rstd, int64_t T,
                                 int64_t n, const Out out, float* __restrict__ partial) {
  extern __shared__ float4 dw_s[];  // [kRmsWarps][n / 4] when partial is not null
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t n4 = n / 4;
  const int64_t t0 = static_cast<int64_t>(blockIdx.x) * kRmsChunk;
  const int64_t t1 = t0 + kRmsChunk < T ? t0 + kRmsChunk : T;
  float4* dws = dw_s + warp * n4;
  if (partial != nullptr)
    for (int64_t c = lane; c < n4; c += 32) dws[c] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  const float4* w4 = reinterpret_cast<const float4*>(w);
  for (int64_t t = t0 + warp; t < t1; t += kRmsWarps) {
    const float4* g4 = reinterpret_cast<const float4*>(dy + t * n);
    const float4* x4 = reinterpret_cast<const float4*>(x + t * n);
    float4 g[kVec], xv[kVec];
#pragma unroll
    for (int k = 0; k < kVec; ++k) {
      const int64_t c = lane + 32 * k;
      g[k] = c < n4 ? g4[c] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      xv[k] = c < n4 ? x4[c] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
    const float r = rstd[t];
    double sdot = 0.0;
#pragma unroll
    for (int k = 0; k < kVec; ++k) {
      const int64_t c = lane + 32 * k;
      if (c >= n4) continue;
      const float4 wv = w4[c];
      sdot = __dadd_rn(sdot,
                       __dmul_rn(static_cast<double>(__fmul_rn(g[k].x, wv.x)), static_cast<double>(xv[k].x)));
      sdot = __dadd_rn(sdot,
                       __dmul_rn(static_cast<double>(__fmul_rn(g[k].y, wv.y)), static_cast<double>(xv[k].y)));
      sdot = __dadd_rn(sdot,
                       __dmul_rn(static_cast<double>(__fmul_rn(g[k].z, wv.z)), static_cast<double>(xv[k].z)));
      sdot = __dadd_rn(sdot,
                       __dmul_rn(static_cast<double>(__fmul_rn(g[k].w, wv.w)), static_cast<double>(xv[k].w)));
      if (partial != nullptr) {
        float4 a = dws[c];
        a.x = __fadd_rn(a.x, __fmul_rn(__fmul_rn(g[k].x, xv[k].x), r));
        a.y = __fadd_rn(a.y, __fmul_rn(__fmul_rn(g[k].y, xv[k].y), r));
        a.z = __fadd_rn(a.z, __fmul_rn(__fmul_rn(g[k].z, xv[k].z), r));
        a.w = __fadd_rn(a.w, __fmul_rn(__fmul_rn(g[k].w, xv[k].w), r));
        dws[c] = a;
      }
    }
    if (!out.on()) continue;
    sdot = dev::warp_reduce(sdot, dev::Sum{});
    const double rd = r;
    const float cc = static_cast<float>(
        __ddiv_rn(__dmul_rn(__dmul_rn(__dmul_rn(sdot, rd), rd), rd), static_cast<double>(n)));
#pragma unroll
    for (int k = 0; k < kVec; ++k) {
      const int64_t c = lane + 32 * k;
      if (c >= n4) continue;
      const float4 wv = w4[c];
      float4 v;
      v.x = __fsub_rn(__fmul_rn(__fmul_rn(r, wv.x), g[k].x), __fmul_rn(cc, xv[k].x));
      v.y = __fsub_rn(__fmul_rn(__fmul_rn(r, wv.y), g[k].y), __fmul_rn(cc, xv[k].y));
      v.z = __fsub_rn(__fmul_rn(__fmul_rn(r, wv.z), g[k].z), __fmul_rn(cc, xv[k].z));
      v.w = __fsub_rn(__fmul_rn(__fmul_rn(r, wv.w), g[k].w), __fmul_rn(cc, xv[k].w));
      out(t, c, v);
    }
  }
  if (partial == nullptr) return;
  __syncthreads();
  const float* all = reinterpret_cast<const float*>(dw_s);
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    float s = all[i];
    for (int v = 1; v < kRmsWarps; ++v) s = __fadd_rn(s, all[v * n + i]);
    partial[blockIdx.x * n + i] = s;
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

// dw[i] += the sum over p of partial[p][i] in a fixed order: a block per 32 columns, warp v adds
// the parts [v * per, (v + 1) * per) in order, then the kReduceSplit warp sums are added in warp
// order (the parts are many: one thread per column would run them serially).
constexpr int kReduceSplit = 8;
__global__ void rmsnorm_dw_reduce_kernel(const float* __restrict__ partial, int64_t parts, int64_t n,
                                         float* __restrict__ dw) {
  __shared__ float sums[kReduceSplit][32];
  const int lane = threadIdx.x % 32, v = threadIdx.x / 32;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * 32 + lane;
  const int64_t per = (parts + kReduceSplit - 1) / kReduceSplit, p0 = v * per,
                p1 = p0 + per < parts ? p0 + per : parts;
  float s = 0.0f;
  if (i < n)
    for (int64_t p = p0; p < p1; ++p) s = __fadd_rn(s, partial[p * n + i]);
  sums[v][lane] = s;
  __syncthreads();
  if (v != 0 || i >= n) return;
  float total = sums[0][lane];
  for (int k = 1; k < kReduceSplit; ++k) total = __fadd_rn(total, sums[k][lane]);
  dw[i] = __fadd_rn(dw[i], total);
}

// ---- residual ----

__global__ void add_kernel(const float* __restrict__ a, const float* __restrict__ b, int64_t n,
                           float* __restrict__ out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = __fadd_rn(a[i], b[i]);
}

// Block t: row t.
__global__ void add_rows_kernel(const float* __restrict__ a, const ProductRows b, int64_t n,
                                float* __restrict__ out) {
  const int64_t t = blockIdx.x;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) out[t * n + i] = __fadd_rn(a[t * n + i], b.at(t, i));
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

// rope_kernel's inverse rotation of the q and k heads, then scale_grad_bf16_kernel's two operands of
// every element (the qkv product's output gradient), dqkv itself left as it is: dy_w = bf16(g *
// row_scale[o]), dy_x = bf16(g * dq[t]) with g the rotated element, each written by the expression
// rope_kernel writes it with. Block t: row t (32-bit index arithmetic).
__global__ void rope_backward_scaled_kernel(const float* __restrict__ dqkv, int C, int64_t seq, int rot_heads,
                                            int head_dim, int half, bool neox, const float* __restrict__ cs,
                                            const float* __restrict__ sn, const float* __restrict__ row_scale,
                                            const float* __restrict__ dq, __nv_bfloat16* __restrict__ dy_w,
                                            __nv_bfloat16* __restrict__ dy_x) {
  const int64_t t = blockIdx.x, p = t % seq;
  const float* row = dqkv + t * C;
  const float st = dq[t];
  for (int o = threadIdx.x; o < C; o += blockDim.x) {
    const int j = o / head_dim, c = o - j * head_dim;
    float g = row[o];
    if (j < rot_heads && c < 2 * half) {
      const float* x = row + j * head_dim;
      const int i = neox ? (c < half ? c : c - half) : c / 2;
      const int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
      const float co = cs[p * half + i], si = -sn[p * half + i], x0 = x[a], x1 = x[b];
      g = c == a ? __fsub_rn(__fmul_rn(x0, co), __fmul_rn(x1, si))
                 : __fadd_rn(__fmul_rn(x0, si), __fmul_rn(x1, co));
    }
    dy_w[t * C + o] = __float2bfloat16(__fmul_rn(g, row_scale[o]));
    dy_x[t * C + o] = __float2bfloat16(__fmul_rn(g, st));
  }
}

// rope_backward_scaled_kernel four columns at a time (head_dim and half multiples of 4, the rows
// and row_scale 16-byte aligned): the same expressions per element (dev::rope4), so the same bits.
__global__ void rope_backward_scaled4_kernel(const float* __restrict__ dqkv, int C, int64_t seq,
                                             int rot_heads, int head_dim, int half, bool neox,
                                             const float* __restrict__ cs, const float* __restrict__ sn,
                                             const float* __restrict__ row_scale,
                                             const float* __restrict__ dq, __nv_bfloat16* __restrict__ dy_w,
                                             __nv_bfloat16* __restrict__ dy_x) {
  const int64_t t = blockIdx.x, p = t % seq;
  const float* row = dqkv + t * C;
  const float st = dq[t];
  for (int o = 4 * threadIdx.x; o < C; o += 4 * blockDim.x) {
    const int j = o / head_dim, c = o - j * head_dim;
    const float* x = row + j * head_dim;
    const auto at4 = [x](int k) { return *reinterpret_cast<const float4*>(x + k); };
    const float4 g = j < rot_heads && c < 2 * half
                         ? dev::rope4(at4, c, half, neox, cs + p * half, sn + p * half, /*inverse=*/true)
                         : at4(c);
    const float4 s = *reinterpret_cast<const float4*>(row_scale + o);
    dev::store_bf16x4(dy_w + t * C + o, make_float4(__fmul_rn(g.x, s.x), __fmul_rn(g.y, s.y),
                                                    __fmul_rn(g.z, s.z), __fmul_rn(g.w, s.w)));
    dev::store_bf16x4(dy_x + t * C + o, make_float4(__fmul_rn(g.x, st), __fmul_rn(g.y, st),
                                                    __fmul_rn(g.z, st), __fmul_rn(g.w, st)));
  }
}

// ---- gated activation ----

// Block t: row t (no index division per element).
__global__ void gated_forward_kernel(const ProductRows gu, int64_t ff, bool relu2, float* __restrict__ out) {
  const int64_t t = blockIdx.x;
  for (int64_t i = threadIdx.x; i < ff; i += blockDim.x) {
    const int64_t e = t * ff + i;
    out[e] = dev::gated_value(gu.at(t, i), gu.at(t, ff + i), relu2);
  }
}

__global__ void gated_backward_kernel(const float* __restrict__ dout, const float* __restrict__ gu,
                                      int64_t ff, bool relu2, bool accumulate, float* __restrict__ dgu) {
  const int64_t t = blockIdx.x;
  for (int64_t i = threadIdx.x; i < ff; i += blockDim.x) {
    const int64_t e = t * ff + i;
    const int64_t gi = t * 2 * ff + i, ui = gi + ff;
    float dg, du;
    dev::gated_grads(gu[gi], gu[ui], dout[e], relu2, dg, du);
    dgu[gi] = accumulate ? __fadd_rn(dgu[gi], dg) : dg;
    dgu[ui] = accumulate ? __fadd_rn(dgu[ui], du) : du;
  }
}

// gated_backward_kernel's dg and du (the same expressions), written as scale_grad_bf16_kernel
// writes dgu's operands: bf16(g * row_scale[o]) and bf16(g * dq[t]).
__global__ void gated_backward_scaled_kernel(const float* __restrict__ dout, const ProductRows gu, int64_t ff,
                                             bool relu2, const float* __restrict__ row_scale,
                                             const float* __restrict__ dq, __nv_bfloat16* __restrict__ dy_w,
                                             __nv_bfloat16* __restrict__ dy_x) {
  const int64_t t = blockIdx.x;
  const float st = dq[t];
  for (int64_t i = threadIdx.x; i < ff; i += blockDim.x) {
    const int64_t gi = t * 2 * ff + i, ui = gi + ff;
    float dg, du;
    dev::gated_grads(gu.at(t, i), gu.at(t, ff + i), dout[t * ff + i], relu2, dg, du);
    dy_w[gi] = __float2bfloat16(__fmul_rn(dg, row_scale[i]));
    dy_w[ui] = __float2bfloat16(__fmul_rn(du, row_scale[ff + i]));
    dy_x[gi] = __float2bfloat16(__fmul_rn(dg, st));
    dy_x[ui] = __float2bfloat16(__fmul_rn(du, st));
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
// A target outside [0, V) raises *flag and zeroes its row's loss; the caller's block returns.
__device__ bool bad_target(int32_t target, int64_t V, int64_t t, double* row_loss, int32_t* flag) {
  if (target >= 0 && target < V) return false;
  if (threadIdx.x == 0) {
    atomicExch(flag, 1);
    row_loss[t] = 0.0;
  }
  return true;
}

__global__ void cross_entropy_kernel(const float* __restrict__ logits, const int32_t* __restrict__ targets,
                                     int64_t V, float grad_scale, float* __restrict__ dlogits,
                                     double* __restrict__ row_loss, int32_t* flag) {
  const int64_t t = blockIdx.x;
  const int32_t target = targets[t];
  if (bad_target(target, V, t, row_loss, flag)) return;
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

// The loss from bf16 logits (the bf16 head's output, as under bf16 autocast) with the gradient in
// bf16 written over them: dlogits may be logits itself (every element is read before it is
// overwritten, by the thread that writes it) or null. The target's logit is read first.

// The cross-entropy's work on one 16-byte piece of a bf16 row (eight logits, elements 8 i .. 8 i + 7),
// shared by the register and shared-memory kernels so that both give the same bits: the running
// max, the sum of exp(l - mx) in element order, and the gradient piece (e * inv) * grad_scale, minus
// grad_scale at the target.
__device__ float ce_max8(const uint4& r, float m) {
  const __nv_bfloat16* e = reinterpret_cast<const __nv_bfloat16*>(&r);
#pragma unroll
  for (int j = 0; j < 8; ++j) m = fmaxf(m, __bfloat162float(e[j]));
  return m;
}
__device__ float ce_sum_exp8(const uint4& r, float mx) {
  const __nv_bfloat16* e = reinterpret_cast<const __nv_bfloat16*>(&r);
  float s8 = 0.0f;
#pragma unroll
  for (int j = 0; j < 8; ++j) s8 = __fadd_rn(s8, expf(__fsub_rn(__bfloat162float(e[j]), mx)));
  return s8;
}
__device__ uint4 ce_grad8(const uint4& r, float mx, float inv, float grad_scale, int64_t i, int32_t target) {
  const __nv_bfloat16* e = reinterpret_cast<const __nv_bfloat16*>(&r);
  uint4 o;
  __nv_bfloat16* g = reinterpret_cast<__nv_bfloat16*>(&o);
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    float v = __fmul_rn(__fmul_rn(expf(__fsub_rn(__bfloat162float(e[j]), mx)), inv), grad_scale);
    if (i * 8 + j == target) v = __fsub_rn(v, grad_scale);
    g[j] = __float2bfloat16(v);
  }
  return o;
}

// kVec > 0: a row of V = 8 n bf16 (16-byte loads) held in registers, kVec loads per thread of
// kCeThreads, so the row is read once: the max and the sum of exp(l - max) come from the registers.
// kVec = 0: any V, the row read twice, an element at a time; each thread keeps a running max and its
// sum of exp(l - max) rescaled when the max grows (online softmax), and the block combines them.
constexpr int kCeThreads = 1024;
template <int kVec>
__global__ void __launch_bounds__(kCeThreads)
    cross_entropy_bf16_kernel(const __nv_bfloat16* logits, const int32_t* __restrict__ targets, int64_t V,
                              float grad_scale, __nv_bfloat16* dlogits, double* __restrict__ row_loss,
                              int32_t* flag) {
  const int64_t t = blockIdx.x;
  const int32_t target = targets[t];
  if (bad_target(target, V, t, row_loss, flag)) return;
  const __nv_bfloat16* l = logits + t * V;
  const float lt = __bfloat162float(l[target]);
  float mx;
  double sum;
  if constexpr (kVec > 0) {
    const int64_t n = V / 8;
    const uint4* lv = reinterpret_cast<const uint4*>(l);
    uint4 r[kVec];
    float m = -INFINITY;
#pragma unroll
    for (int k = 0; k < kVec; ++k) {
      const int64_t i = threadIdx.x + static_cast<int64_t>(k) * kCeThreads;
      if (i < n) {
        r[k] = lv[i];
        m = ce_max8(r[k], m);
      }
    }
    mx = dev::block_reduce(m, dev::Max{}, -INFINITY);
    double part = 0.0;
#pragma unroll
    for (int k = 0; k < kVec; ++k) {
      const int64_t i = threadIdx.x + static_cast<int64_t>(k) * kCeThreads;
      if (i < n) part += static_cast<double>(ce_sum_exp8(r[k], mx));
    }
    sum = dev::block_reduce(part, dev::Sum{}, 0.0);
    if (dlogits != nullptr) {
      const float inv = static_cast<float>(1.0 / sum);
      uint4* dv = reinterpret_cast<uint4*>(dlogits + t * V);
#pragma unroll
      for (int k = 0; k < kVec; ++k) {
        const int64_t i = threadIdx.x + static_cast<int64_t>(k) * kCeThreads;
        if (i < n) dv[i] = ce_grad8(r[k], mx, inv, grad_scale, i, target);
      }
    }
  } else {
    float m = -INFINITY;
    double part = 0.0;
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
      const float x = __bfloat162float(l[v]);
      if (x == -INFINITY) continue;  // adds exp(-inf) = 0 (and -inf - -inf would be NaN)
      if (x > m) {
        part *= static_cast<double>(expf(__fsub_rn(m, x)));  // 0 while m is -inf
        m = x;
      }
      part += static_cast<double>(expf(__fsub_rn(x, m)));
    }
    mx = dev::block_reduce(m, dev::Max{}, -INFINITY);
    // A thread that read nothing (V < blockDim.x) has m = -inf and part 0: it adds 0.
    const double mine = m == -INFINITY ? 0.0 : part * static_cast<double>(expf(__fsub_rn(m, mx)));
    sum = dev::block_reduce(mine, dev::Sum{}, 0.0);
    if (dlogits != nullptr) {
      const float inv = static_cast<float>(1.0 / sum);
      __nv_bfloat16* d = dlogits + t * V;
      for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
        float g = __fmul_rn(__fmul_rn(expf(__fsub_rn(__bfloat162float(l[v]), mx)), inv), grad_scale);
        if (v == target) g = __fsub_rn(g, grad_scale);
        d[v] = __float2bfloat16(g);
      }
    }
  }
  if (threadIdx.x == 0) row_loss[t] = log(sum) - (static_cast<double>(lt) - static_cast<double>(mx));
}

// cross_entropy_bf16_kernel<kVec > 0>'s row staged in shared memory (2 V bytes) instead of
// registers: at 32 registers a thread, two blocks share a multiprocessor, so one row's reductions
// and writes overlap the other's loads (the register kernel holds one row per multiprocessor). Each
// thread reads back only the pieces it stored (no barrier needed), and sums them in the register
// kernel's order: the same bits.
__global__ void __launch_bounds__(kCeThreads, 2)
    cross_entropy_bf16_smem_kernel(const __nv_bfloat16* logits, const int32_t* __restrict__ targets,
                                   int64_t V, float grad_scale, __nv_bfloat16* dlogits,
                                   double* __restrict__ row_loss, int32_t* flag) {
  extern __shared__ uint4 row_s[];
  const int64_t t = blockIdx.x;
  const int32_t target = targets[t];
  if (bad_target(target, V, t, row_loss, flag)) return;
  const __nv_bfloat16* l = logits + t * V;
  const float lt = __bfloat162float(l[target]);
  const int64_t n = V / 8;
  const uint4* lv = reinterpret_cast<const uint4*>(l);
  float m = -INFINITY;
  for (int64_t i = threadIdx.x; i < n; i += kCeThreads) {
    const uint4 r = lv[i];
    row_s[i] = r;
    m = ce_max8(r, m);
  }
  const float mx = dev::block_reduce(m, dev::Max{}, -INFINITY);
  double part = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += kCeThreads) {
    const uint4 r = row_s[i];  // one 16-byte load
    part += static_cast<double>(ce_sum_exp8(r, mx));
  }
  const double sum = dev::block_reduce(part, dev::Sum{}, 0.0);
  if (dlogits != nullptr) {
    const float inv = static_cast<float>(1.0 / sum);
    uint4* dv = reinterpret_cast<uint4*>(dlogits + t * V);
    for (int64_t i = threadIdx.x; i < n; i += kCeThreads) {
      const uint4 r = row_s[i];
      dv[i] = ce_grad8(r, mx, inv, grad_scale, i, target);
    }
  }
  if (threadIdx.x == 0) row_loss[t] = log(sum) - (static_cast<double>(lt) - static_cast<double>(mx));
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

namespace {

bool aligned16(const void* p) {
  return p == nullptr || reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

// The warp-per-row pass where a row is whole 16-byte aligned float4s and fits a warp's registers
// (the trainer's rows: 768 and 2048 columns): false (nothing launched) otherwise.
template <class Out>
bool rmsnorm_backward_warp(const float* dy, const float* x, const float* w, const float* rstd, int64_t T,
                           int64_t n, const Out& out, float* part, cudaStream_t s) {
  const int64_t vec = (n / 4 + 31) / 32;
  if (n % 4 != 0 || vec > 16 || !aligned16(dy) || !aligned16(x) || !aligned16(w)) return false;
  const unsigned grid = static_cast<unsigned>((T + kRmsChunk - 1) / kRmsChunk);
  const size_t shared = part != nullptr ? sizeof(float) * kRmsWarps * static_cast<size_t>(n) : 0;
  auto launch = [&](auto kernel) {
    if (shared > 48 * 1024)
      BN_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                   static_cast<int>(shared)));
    kernel<<<grid, kRmsWarps * 32, shared, s>>>(dy, x, w, rstd, T, n, out, part);
  };
  if (vec <= 1)
    launch(rmsnorm_backward_warp_kernel<1, Out>);
  else if (vec <= 2)
    launch(rmsnorm_backward_warp_kernel<2, Out>);
  else if (vec <= 4)
    launch(rmsnorm_backward_warp_kernel<4, Out>);
  else if (vec <= 6)
    launch(rmsnorm_backward_warp_kernel<6, Out>);
  else if (vec <= 8)
    launch(rmsnorm_backward_warp_kernel<8, Out>);
  else
    launch(rmsnorm_backward_warp_kernel<16, Out>);
  BN_CUDA_LAUNCHED();
  return true;
}

void rmsnorm_dw_reduce(const float* partial, int64_t T, int64_t n, float* dw, cudaStream_t s) {
  const int64_t parts = (T + kRmsChunk - 1) / kRmsChunk;
  rmsnorm_dw_reduce_kernel<<<dev::blocks_for(n, 32), 32 * kReduceSplit, 0, s>>>(partial, parts, n, dw);
  BN_CUDA_LAUNCHED();
}

}  // namespace

bool rmsnorm_backward_scaled(const float* dy, const float* x, const float* w, const float* rstd, int64_t T,
                             int64_t n, float* dx, bool accumulate, float* dw, float* partial,
                             const float* row_scale, const float* dq, bf16_t* dy_w, bf16_t* dy_x,
                             cudaStream_t s) {
  auto aligned8 = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 8 == 0; };
  if (dx == nullptr || !aligned16(dx) || !aligned16(row_scale) || !aligned8(dy_w) || !aligned8(dy_x))
    return false;
  if (T == 0) return true;
  const DxScaledOut out{DxOut{dx, n, accumulate}, row_scale, dq, reinterpret_cast<__nv_bfloat16*>(dy_w),
                        reinterpret_cast<__nv_bfloat16*>(dy_x)};
  if (!rmsnorm_backward_warp(dy, x, w, rstd, T, n, out, dw != nullptr ? partial : nullptr, s)) return false;
  if (dw != nullptr) rmsnorm_dw_reduce(partial, T, n, dw, s);
  return true;
}

void rmsnorm_backward(const float* dy, const float* x, const float* w, const float* rstd, int64_t T,
                      int64_t n, float* dx, bool accumulate, float* dw, float* partial, cudaStream_t s) {
  if (T == 0) return;
  const int64_t parts = (T + kRmsChunk - 1) / kRmsChunk;
  const unsigned grid = static_cast<unsigned>(parts);
  const bool one_pass = aligned16(dx) && rmsnorm_backward_warp(dy, x, w, rstd, T, n, DxOut{dx, n, accumulate},
                                                               dw != nullptr ? partial : nullptr, s);
  if (!one_pass) {  // the two kernels
    if (dx != nullptr && !accumulate)
      BN_CUDA(cudaMemsetAsync(dx, 0, sizeof(float) * static_cast<size_t>(T * n), s));
    if (dx != nullptr) {
      rmsnorm_dx_kernel<<<static_cast<unsigned>(T), kThreads, 0, s>>>(dy, x, w, rstd, n, dx);
      BN_CUDA_LAUNCHED();
    }
    if (dw != nullptr) {
      const dim3 pgrid(dev::blocks_for(n, kThreads), grid);
      rmsnorm_dw_partial_kernel<<<pgrid, kThreads, 0, s>>>(dy, x, rstd, T, n, partial);
      BN_CUDA_LAUNCHED();
    }
  }
  if (dw != nullptr) rmsnorm_dw_reduce(partial, T, n, dw, s);
}

void add(const float* a, const float* b, int64_t n, float* out, cudaStream_t s) {
  if (n == 0) return;
  add_kernel<<<dev::blocks_for(n, kThreads), kThreads, 0, s>>>(a, b, n, out);
  BN_CUDA_LAUNCHED();
}

void add_rows(const float* a, const ProductRows& b, int64_t T, int64_t n, float* out, cudaStream_t s) {
  if (T * n == 0) return;
  add_rows_kernel<<<static_cast<unsigned>(T), kThreads, 0, s>>>(a, b, n, out);
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

void rope_backward_scaled(const float* dqkv, int64_t T, int64_t seq, int64_t n_rot_heads, int64_t head_dim,
                          int64_t row_stride, int64_t rope_dim, bool neox, const float* cs, const float* sn,
                          const float* row_scale, const float* dq, bf16_t* dy_w, bf16_t* dy_x,
                          cudaStream_t s) {
  if (T * row_stride == 0) return;
  const int64_t half = rope_dim / 2;
  auto aligned = [](const void* p, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; };
  if (head_dim % 4 == 0 && half % 4 == 0 && row_stride % 4 == 0 && aligned(dqkv, 16) &&
      aligned(row_scale, 16) && aligned(dy_w, 8) && aligned(dy_x, 8)) {
    rope_backward_scaled4_kernel<<<static_cast<unsigned>(T), kThreads, 0, s>>>(
        dqkv, static_cast<int>(row_stride), seq, rope_dim > 0 ? static_cast<int>(n_rot_heads) : 0,
        static_cast<int>(head_dim), static_cast<int>(half), neox, cs, sn, row_scale, dq,
        reinterpret_cast<__nv_bfloat16*>(dy_w), reinterpret_cast<__nv_bfloat16*>(dy_x));
    BN_CUDA_LAUNCHED();
    return;
  }
  rope_backward_scaled_kernel<<<static_cast<unsigned>(T), kThreads, 0, s>>>(
      dqkv, static_cast<int>(row_stride), seq, rope_dim > 0 ? static_cast<int>(n_rot_heads) : 0,
      static_cast<int>(head_dim), static_cast<int>(rope_dim / 2), neox, cs, sn, row_scale, dq,
      reinterpret_cast<__nv_bfloat16*>(dy_w), reinterpret_cast<__nv_bfloat16*>(dy_x));
  BN_CUDA_LAUNCHED();
}

void gated_forward(const ProductRows& gu, int64_t T, int64_t ff, bool relu2, float* out, cudaStream_t s) {
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

void gated_backward_scaled(const float* dout, const ProductRows& gu, int64_t T, int64_t ff, bool relu2,
                           const float* row_scale, const float* dq, bf16_t* dy_w, bf16_t* dy_x,
                           cudaStream_t s) {
  if (T * ff == 0) return;
  gated_backward_scaled_kernel<<<static_cast<unsigned>(T), kThreads, 0, s>>>(
      dout, gu, ff, relu2, row_scale, dq, reinterpret_cast<__nv_bfloat16*>(dy_w),
      reinterpret_cast<__nv_bfloat16*>(dy_x));
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

namespace {
// The current device's opt-in shared memory per block.
size_t max_dynamic_shared() {
  int dev = 0, bytes = 0;
  BN_CUDA(cudaGetDevice(&dev));
  BN_CUDA(cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  return static_cast<size_t>(bytes);
}
}  // namespace

void cross_entropy_bf16(const bf16_t* logits, const int32_t* targets, int64_t T, int64_t V, float grad_scale,
                        bf16_t* dlogits, double* row_loss, double* loss, int32_t* flag, cudaStream_t s) {
  if (T > 0) {
    const auto* l = reinterpret_cast<const __nv_bfloat16*>(logits);
    auto* d = reinterpret_cast<__nv_bfloat16*>(dlogits);
    const auto grid = static_cast<unsigned>(T);
    // Rows of whole 16-byte loads (the buffers are cudaMalloc'd, so rows of 8 n bf16 are aligned)
    // that fit kCeThreads threads' registers; other widths read the row twice.
    const bool aligned = V % 8 == 0 && reinterpret_cast<uintptr_t>(logits) % 16 == 0 &&
                         reinterpret_cast<uintptr_t>(dlogits) % 16 == 0;
    // Up to two loads a thread the row fits the registers of two blocks a multiprocessor; longer
    // rows go through shared memory where it holds them.
    const int64_t per_thread = (V / 8 + kCeThreads - 1) / kCeThreads;
    const size_t row_bytes = sizeof(__nv_bfloat16) * static_cast<size_t>(V);
    // The row beside the kernel's static shared memory (its reductions') within the opt-in limit.
    cudaFuncAttributes fa{};
    BN_CUDA(cudaFuncGetAttributes(&fa, cross_entropy_bf16_smem_kernel));
    if (aligned && per_thread > 2 && row_bytes + fa.sharedSizeBytes <= max_dynamic_shared()) {
      auto* kernel = cross_entropy_bf16_smem_kernel;
      BN_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                   static_cast<int>(row_bytes)));
      kernel<<<grid, kCeThreads, row_bytes, s>>>(l, targets, V, grad_scale, d, row_loss, flag);
    } else {
      const int vec = !aligned ? 0 : per_thread <= 1 ? 1 : per_thread <= 2 ? 2 : 0;
      auto* kernel = vec == 1   ? cross_entropy_bf16_kernel<1>
                     : vec == 2 ? cross_entropy_bf16_kernel<2>
                                : cross_entropy_bf16_kernel<0>;
      const unsigned threads = vec > 0 ? kCeThreads : kThreads;
      kernel<<<grid, threads, 0, s>>>(l, targets, V, grad_scale, d, row_loss, flag);
    }
    BN_CUDA_LAUNCHED();
  }
  sum_rows_kernel<<<1, kThreads, 0, s>>>(row_loss, T, loss);
  BN_CUDA_LAUNCHED();
}

}  // namespace bitnet::cuda::kern
