// Per-token inference kernels: RMSNorm + int8 quantization (fused, also after the gated
// activation), the head's RMSNorm, the embedding lookup and RoPE + KV store. One block per token;
// the float operations are the CPU's (ops/layer_ops.cpp, quant/act_quant.cpp) in the same order
// where an order exists (compiled with -fmad=false: no contraction into fma). The RMS sum of
// squares is in double like the CPU's, summed in another order.
#include <cuda_bf16.h>

#include "cuda/check.h"
#include "cuda/infer_device.cuh"
#include "cuda/infer_kernels.h"
#include "cuda/infer_launch.cuh"
#include "cuda/reduce.cuh"

namespace bitnet::cuda::infer {
namespace {

constexpr int kRowThreads = 256;
// Decode's few tokens get wide blocks: one block a token is the whole kernel, and its three
// passes over the row are latency, not bandwidth.
constexpr int kWideThreads = 1024;
constexpr int kWideTokens = 128;  // up to here a grid of m blocks leaves most SMs one block or none

// Where norm_quant_kernel's input comes from: floats; a product's int32 sums with its row scales
// and the tokens' 1/s, turned into the floats the product's epilogue would have stored
// (acc_epilogue: float(acc) * (row_scale * dq), the same operations); or those added to a
// residual row, as the epilogue's add would (x + that), which the kernel also stores back to x.
enum class RowSrc { kFloats, kSums, kSumsPlusResidual };

template <RowSrc S>
struct RowIn {
  const float* f;
  const int32_t* acc;
  const float* row_scale;
  const float* dq;
  float* x;  // kSumsPlusResidual: the residual rows (ld as the sums')
  // dq_t: dq[t], read once by the kernel before anything is written (dq may be the output's).
  __device__ __forceinline__ float at(int64_t t, int64_t ld, int64_t i, float dq_t) const {
    if constexpr (S == RowSrc::kFloats) {
      return __ldg(f + t * ld + i);
    } else {
      const float v = static_cast<float>(__ldg(acc + t * ld + i)) * (__ldg(row_scale + i) * dq_t);
      if constexpr (S == RowSrc::kSumsPlusResidual)
        return x[t * ld + i] + v;  // a plain load: the kernel writes x
      else
        return v;
    }
  }
};

// Dynamic shared memory: the row as floats (k of them).
template <RowSrc S>
__global__ void __launch_bounds__(kWideThreads)
    norm_quant_kernel(RowIn<S> in, int64_t ld_in, const float* norm, float eps, bool is_gated, int act,
                      DevActs q) {
  pdl_launch();
  pdl_wait();
  extern __shared__ float h[];
  const int64_t t = blockIdx.x, k = q.k;
  const float dq_t = S != RowSrc::kFloats ? in.dq[t] : 0.0f;
  // Pass 1 takes kLoads of a thread's values (i = threadIdx.x + j * blockDim.x) at a time: all
  // their loads are issued before any store to h, which the compiler could not move a load of the
  // generic input pointer past, so the loads' latencies overlap instead of adding up. The sum of
  // squares runs over a thread's values in index order, as one at a time would.
  constexpr int kLoads = 8;
  double ss = 0;
  for (int64_t i0 = threadIdx.x; i0 < k; i0 += kLoads * static_cast<int64_t>(blockDim.x)) {
    float a[kLoads], b[kLoads];
#pragma unroll
    for (int j = 0; j < kLoads; ++j) {
      const int64_t i = i0 + j * static_cast<int64_t>(blockDim.x);
      a[j] = i < k ? in.at(t, ld_in, i, dq_t) : 0.0f;
      b[j] = is_gated && i < k ? in.at(t, ld_in, k + i, dq_t) : 0.0f;
    }
#pragma unroll
    for (int j = 0; j < kLoads; ++j) {
      const int64_t i = i0 + j * static_cast<int64_t>(blockDim.x);
      if (i >= k) break;
      const float v = is_gated ? gated(a[j], b[j], act) : a[j];
      if constexpr (S == RowSrc::kSumsPlusResidual) in.x[t * ld_in + i] = v;
      h[i] = v;
      ss += static_cast<double>(v) * v;
    }
  }
  float amax = 0;
  if (norm) {
    ss = dev::block_reduce(ss, dev::Sum{}, 0.0);
    const float mean = static_cast<float>(ss / static_cast<double>(k));
    const float scale = 1.0f / sqrtf(mean + eps);
    for (int64_t i = threadIdx.x; i < k; i += blockDim.x) {
      const float v = h[i] * scale * norm[i];
      h[i] = v;
      amax = fmaxf(amax, fabsf(v));
    }
  } else {
    for (int64_t i = threadIdx.x; i < k; i += blockDim.x) amax = fmaxf(amax, fabsf(h[i]));
  }
  amax = dev::block_reduce(amax, dev::Max{}, 0.0f);
  const float s = 127.0f / fmaxf(amax, 1e-5f);
  int8_t* qr = q.q + t * q.k_pad;
  for (int64_t i = threadIdx.x; i < q.k_pad; i += blockDim.x)
    qr[i] = i < k ? static_cast<int8_t>(fminf(fmaxf(rintf(h[i] * s), -128.0f), 127.0f)) : 0;
  if (threadIdx.x == 0) q.dq[t] = 1.0f / s;
}

__global__ void __launch_bounds__(kRowThreads)
    rms_norm_kernel(const float* in, int64_t d, const float* norm, float eps, float* out) {
  pdl_launch();
  pdl_wait();
  const int64_t t = blockIdx.x;
  const float* row = in + t * d;
  double ss = 0;
  for (int64_t i = threadIdx.x; i < d; i += kRowThreads) ss += static_cast<double>(row[i]) * row[i];
  ss = dev::block_reduce(ss, dev::Sum{}, 0.0);
  const float mean = static_cast<float>(ss / static_cast<double>(d));
  const float scale = 1.0f / sqrtf(mean + eps);
  for (int64_t i = threadIdx.x; i < d; i += kRowThreads) out[t * d + i] = row[i] * scale * norm[i];
}

// Element i of row `row` of a table of type `type` (d values a row).
__device__ float table_value(const void* table, const void* scales, int type, int64_t d, int64_t row,
                             int64_t i) {
  switch (type) {
    case kHeadF32:
      return static_cast<const float*>(table)[row * d + i];
    case kHeadF16:
      return __half2float(static_cast<const __half*>(table)[row * d + i]);
    case kHeadBF16:
      return __bfloat162float(static_cast<const __nv_bfloat16*>(table)[row * d + i]);
    case kHeadQ8: {
      const float sc = __half2float(static_cast<const __half*>(scales)[row * (d / 32) + i / 32]);
      return sc * static_cast<float>(static_cast<const int8_t*>(table)[row * d + i]);
    }
    default: {  // Q6_K: ggml's 210-byte blocks of 256
      const uint8_t* blk = static_cast<const uint8_t*>(table) + (row * (d / 256) + i / 256) * 210;
      const int r = static_cast<int>(i % 256), h = r / 128, l = r % 32, quarter = r % 128 / 32;
      const uint8_t ql = blk[64 * h + l + (quarter & 1) * 32];
      const int lo = quarter >= 2 ? ql >> 4 : ql & 15;
      const int hi = (blk[128 + 32 * h + l] >> (2 * quarter)) & 3;
      const int8_t sc = static_cast<const int8_t*>(static_cast<const void*>(blk + 192))[8 * h + r % 128 / 16];
      const float dw = __half2float(*reinterpret_cast<const __half*>(blk + 208));
      return dw * static_cast<float>(sc) * static_cast<float>((lo | (hi << 4)) - 32);
    }
  }
}

__global__ void __launch_bounds__(kRowThreads)
    embed_kernel(const void* table, const void* scales, int type, int64_t d, const int32_t* tok, float* out) {
  pdl_launch();
  pdl_wait();
  const int64_t t = blockIdx.x;
  for (int64_t i = threadIdx.x; i < d; i += kRowThreads)
    out[t * d + i] = table_value(table, scales, type, d, tok[t], i);
}

// Angles as the CPU's rope_angles (double, then rounded to float); rotation as rope_rotate.
__global__ void __launch_bounds__(kRowThreads)
    rope_kv_kernel(float* qkv, const int32_t* pos, const int32_t* slot, int64_t n_head, int64_t rope_dim,
                   const double* inv_freq, bool neox, KvGeom kv, int64_t il) {
  pdl_launch();
  pdl_wait();
  extern __shared__ float cs[];  // cos [rope_dim / 2], then sin
  const int64_t t = blockIdx.x, hd = kv.head_dim, half = rope_dim / 2;
  const int64_t qd = n_head * hd, kvd = kv.n_head_kv * hd;
  float* row = qkv + t * (qd + 2 * kvd);
  const int64_t p = pos[t];
  for (int64_t i = threadIdx.x; i < half; i += kRowThreads) {
    const double angle = static_cast<double>(p) * inv_freq[i];
    double sn, cn;
    sincos(angle, &sn, &cn);
    cs[i] = static_cast<float>(cn);
    cs[half + i] = static_cast<float>(sn);
  }
  __syncthreads();
  for (int64_t j = threadIdx.x; j < (n_head + kv.n_head_kv) * half; j += kRowThreads) {
    const int64_t h = j / half, i = j % half;
    float* x = row + h * hd;  // the key heads follow the query heads
    const int64_t ia = neox ? i : 2 * i, ib = neox ? i + half : 2 * i + 1;
    const float a = x[ia], b = x[ib], c = cs[i], s = cs[half + i];
    x[ia] = a * c - b * s;
    x[ib] = a * s + b * c;
  }
  __syncthreads();
  for (int64_t j = threadIdx.x; j < kvd; j += kRowThreads) {
    const int64_t at = kv.at(slot[t], il, j / hd, p) + j % hd;
    kv.k[at] = __float2half_rn(row[qd + j]);
    kv.v[at] = __float2half_rn(row[qd + kvd + j]);
  }
}

}  // namespace

void norm_quant(const float* in, int64_t ld_in, int m, const float* norm, float eps, bool is_gated, int act,
                DevActs q, cudaStream_t s) {
  if (m <= 0) return;
  launch(norm_quant_kernel<RowSrc::kFloats>, m, m <= kWideTokens ? kWideThreads : kRowThreads,
         q.k * sizeof(float), s, RowIn<RowSrc::kFloats>{in, nullptr, nullptr, nullptr, nullptr}, ld_in, norm,
         eps, is_gated, act, q);
  BN_CUDA_LAUNCHED();
}

void norm_quant_gated_acc(const int32_t* acc, const float* row_scale, const float* acc_dq, int64_t ld_acc,
                          int m, const float* norm, float eps, int act, DevActs q, cudaStream_t s) {
  if (m <= 0) return;
  launch(norm_quant_kernel<RowSrc::kSums>, m, m <= kWideTokens ? kWideThreads : kRowThreads,
         q.k * sizeof(float), s, RowIn<RowSrc::kSums>{nullptr, acc, row_scale, acc_dq, nullptr}, ld_acc, norm,
         eps, true, act, q);
  BN_CUDA_LAUNCHED();
}

void norm_quant_residual_acc(const int32_t* acc, const float* row_scale, const float* acc_dq, float* x, int m,
                             const float* norm, float eps, DevActs q, cudaStream_t s) {
  if (m <= 0) return;
  launch(norm_quant_kernel<RowSrc::kSumsPlusResidual>, m, m <= kWideTokens ? kWideThreads : kRowThreads,
         q.k * sizeof(float), s, RowIn<RowSrc::kSumsPlusResidual>{nullptr, acc, row_scale, acc_dq, x}, q.k,
         norm, eps, false, 0, q);
  BN_CUDA_LAUNCHED();
}

void rms_norm_rows(const float* in, int m, int64_t d, const float* norm, float eps, float* out,
                   cudaStream_t s) {
  if (m <= 0) return;
  launch(rms_norm_kernel, m, kRowThreads, 0, s, in, d, norm, eps, out);
  BN_CUDA_LAUNCHED();
}

void embed_rows(const void* table, const void* scales, int type, int64_t d, const int32_t* tok, int m,
                float* out, cudaStream_t s) {
  if (m <= 0) return;
  launch(embed_kernel, m, kRowThreads, 0, s, table, scales, type, d, tok, out);
  BN_CUDA_LAUNCHED();
}

void rope_kv_store(float* qkv, int m, const int32_t* pos, const int32_t* slot, int64_t n_head,
                   int64_t rope_dim, const double* inv_freq, bool neox, const KvGeom& kv, int64_t il,
                   cudaStream_t s) {
  if (m <= 0) return;
  launch(rope_kv_kernel, m, kRowThreads, rope_dim * sizeof(float), s, qkv, pos, slot, n_head, rope_dim,
         inv_freq, neox, kv, il);
  BN_CUDA_LAUNCHED();
}

}  // namespace bitnet::cuda::infer
