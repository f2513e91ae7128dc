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
  // Values i .. i + V - 1 of row t (one 16-byte load of each source for V = 4). dq_t: dq[t], read
  // once by the kernel before anything is written (dq may be the output's).
  template <int V>
  __device__ __forceinline__ void load(int64_t t, int64_t ld, int64_t i, float dq_t, float (&o)[V]) const {
    if constexpr (V == 1) {
      if constexpr (S == RowSrc::kFloats) {
        o[0] = __ldg(f + t * ld + i);
      } else {
        o[0] = static_cast<float>(__ldg(acc + t * ld + i)) * (__ldg(row_scale + i) * dq_t);
        if constexpr (S == RowSrc::kSumsPlusResidual)
          o[0] = x[t * ld + i] + o[0];  // plain: the kernel writes x
      }
    } else {
      static_assert(V == 4);
      if constexpr (S == RowSrc::kFloats) {
        const float4 a = __ldg(reinterpret_cast<const float4*>(f + t * ld + i));
        o[0] = a.x, o[1] = a.y, o[2] = a.z, o[3] = a.w;
      } else {
        // The row scales one at a time: a matrix's may start at any float in the session's buffer,
        // and the choice of V must not depend on it (both routes of a product take the same V).
        const int4 a = __ldg(reinterpret_cast<const int4*>(acc + t * ld + i));
        o[0] = static_cast<float>(a.x) * (__ldg(row_scale + i) * dq_t);
        o[1] = static_cast<float>(a.y) * (__ldg(row_scale + i + 1) * dq_t);
        o[2] = static_cast<float>(a.z) * (__ldg(row_scale + i + 2) * dq_t);
        o[3] = static_cast<float>(a.w) * (__ldg(row_scale + i + 3) * dq_t);
        if constexpr (S == RowSrc::kSumsPlusResidual) {
          const float4 b = *reinterpret_cast<const float4*>(x + t * ld + i);
          o[0] = b.x + o[0], o[1] = b.y + o[1], o[2] = b.z + o[2], o[3] = b.w + o[3];
        }
      }
    }
  }
  template <int V>
  __device__ __forceinline__ void store_x(int64_t t, int64_t ld, int64_t i, const float (&v)[V]) const {
    if constexpr (V == 1)
      x[t * ld + i] = v[0];
    else
      *reinterpret_cast<float4*>(x + t * ld + i) = make_float4(v[0], v[1], v[2], v[3]);
  }
};

// Dynamic shared memory: the row as floats (k of them). V = 4: the row read and the codes written
// in 16-byte and 4-byte pieces (k, the rows' strides and the pointers in those steps: rows_v4);
// a thread's values are then its pieces' in index order, so its share of the sum of squares is
// another one than with V = 1 (the sum is double, rounded to float once: see NormQuantMatchesCpu).
template <RowSrc S, int V>
__global__ void __launch_bounds__(kWideThreads)
    norm_quant_kernel(RowIn<S> in, int64_t ld_in, const float* norm, float eps, bool is_gated, int act,
                      DevActs q) {
  pdl_launch();
  pdl_wait();
  extern __shared__ float h[];
  const int64_t t = blockIdx.x, k = q.k, pieces = k / V;
  const float dq_t = S != RowSrc::kFloats ? in.dq[t] : 0.0f;
  // Pass 1 takes kLoads of a thread's pieces (p = threadIdx.x + j * blockDim.x) at a time: all
  // their loads are issued before any store to h, which the compiler could not move a load of the
  // generic input pointer past, so the loads' latencies overlap instead of adding up. The sum of
  // squares runs over a thread's values in index order, as one at a time would.
  constexpr int kLoads = V == 1 ? 8 : 4;
  double ss = 0;
  for (int64_t p0 = threadIdx.x; p0 < pieces; p0 += kLoads * static_cast<int64_t>(blockDim.x)) {
    float a[kLoads][V], b[kLoads][V];
#pragma unroll
    for (int j = 0; j < kLoads; ++j) {
      const int64_t p = p0 + j * static_cast<int64_t>(blockDim.x);
#pragma unroll
      for (int e = 0; e < V; ++e) a[j][e] = b[j][e] = 0.0f;
      if (p < pieces) {
        in.template load<V>(t, ld_in, p * V, dq_t, a[j]);
        if (is_gated) in.template load<V>(t, ld_in, k + p * V, dq_t, b[j]);
      }
    }
#pragma unroll
    for (int j = 0; j < kLoads; ++j) {
      const int64_t p = p0 + j * static_cast<int64_t>(blockDim.x);
      if (p >= pieces) break;
      float v[V];
#pragma unroll
      for (int e = 0; e < V; ++e) {
        v[e] = is_gated ? gated(a[j][e], b[j][e], act) : a[j][e];
        h[p * V + e] = v[e];
        ss += static_cast<double>(v[e]) * v[e];
      }
      if constexpr (S == RowSrc::kSumsPlusResidual) in.template store_x<V>(t, ld_in, p * V, v);
    }
  }
  // Passes 2 and 3 take each thread's own pieces of pass 1, so that without a norm (no barrier
  // before pass 2) a thread reads only what it wrote.
  float amax = 0;
  float scale = 1.0f;
  if (norm) {
    ss = dev::block_reduce(ss, dev::Sum{}, 0.0);
    const float mean = static_cast<float>(ss / static_cast<double>(k));
    scale = 1.0f / sqrtf(mean + eps);
  }
  for (int64_t p = threadIdx.x; p < pieces; p += blockDim.x)
#pragma unroll
    for (int e = 0; e < V; ++e) {
      const int64_t i = p * V + e;
      float v = h[i];
      if (norm) {
        v = v * scale * norm[i];
        h[i] = v;
      }
      amax = fmaxf(amax, fabsf(v));
    }
  amax = dev::block_reduce(amax, dev::Max{}, 0.0f);
  const float s = 127.0f / fmaxf(amax, 1e-5f);
  int8_t* qr = q.q + t * q.k_pad;
  auto code = [&](int64_t i) -> int8_t {
    return i < k ? static_cast<int8_t>(fminf(fmaxf(rintf(h[i] * s), -128.0f), 127.0f)) : 0;
  };
  if constexpr (V == 1) {
    for (int64_t i = threadIdx.x; i < q.k_pad; i += blockDim.x) qr[i] = code(i);
  } else {
    for (int64_t i = V * threadIdx.x; i < q.k_pad; i += V * static_cast<int64_t>(blockDim.x))
      *reinterpret_cast<char4*>(qr + i) = make_char4(code(i), code(i + 1), code(i + 2), code(i + 3));
  }
  if (threadIdx.x == 0) q.dq[t] = 1.0f / s;
}

// Whether norm_quant_kernel<S, 4> may read these rows: k, the strides and the pointers in steps of
// 4 values (16 bytes of floats or sums, 4 bytes of codes).
bool rows_v4(const void* in, int64_t ld_in, const float* x, const DevActs& q) {
  auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return q.k % 4 == 0 && ld_in % 4 == 0 && q.k_pad % 4 == 0 && aligned(in) && aligned(x) &&
         reinterpret_cast<uintptr_t>(q.q) % 4 == 0;
}

template <RowSrc S>
void launch_norm_quant(RowIn<S> in, const void* in_ptr, int64_t ld_in, int m, const float* norm, float eps,
                       bool is_gated, int act, const DevActs& q, cudaStream_t s) {
  if (m <= 0) return;
  const bool v4 = rows_v4(in_ptr, ld_in, in.x, q);
  const auto kernel = v4 ? norm_quant_kernel<S, 4> : norm_quant_kernel<S, 1>;
  const size_t smem = static_cast<size_t>(q.k) * sizeof(float);
  // Once per device and variant, whatever this call's size: the default limit of 48 KB counts the
  // kernel's static shared memory too, so rows just under 48 KB need the opt-in as well.
  static unsigned long long attr_set[2] = {0, 0};
  if (first_on_device(attr_set[v4])) allow_smem_optin(kernel);
  launch(kernel, m, m <= kWideTokens ? kWideThreads : kRowThreads, smem, s, in, ld_in, norm, eps, is_gated,
         act, q);
  BN_CUDA_LAUNCHED();
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
// FromSums: the row comes from the qkv product's int32 sums (acc, ld = the row's width) with its
// row scales and the token's 1/s, as acc_epilogue would store it; it is rotated in shared memory
// and only the queries are written to qkv (the keys and values go to the cache alone).
template <bool FromSums>
__global__ void __launch_bounds__(kRowThreads)
    rope_kv_kernel(float* qkv, const int32_t* acc, const float* row_scale, const float* acc_dq,
                   const int32_t* pos, const int32_t* slot, int64_t n_head, int64_t rope_dim,
                   const double* inv_freq, bool neox, KvGeom kv, int64_t il) {
  pdl_launch();
  pdl_wait();
  extern __shared__ float cs[];  // cos [rope_dim / 2], then sin; FromSums: then the row
  const int64_t t = blockIdx.x, hd = kv.head_dim, half = rope_dim / 2;
  const int64_t qd = n_head * hd, kvd = kv.n_head_kv * hd, width = qd + 2 * kvd;
  float* row = FromSums ? cs + rope_dim : qkv + t * width;
  if constexpr (FromSums) {
    const float dq_t = acc_dq[t];
    for (int64_t i = threadIdx.x; i < width; i += kRowThreads)
      row[i] = static_cast<float>(__ldg(acc + t * width + i)) * (__ldg(row_scale + i) * dq_t);
  }
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
  if constexpr (FromSums)
    for (int64_t i = threadIdx.x; i < qd; i += kRowThreads) qkv[t * width + i] = row[i];
  for (int64_t j = threadIdx.x; j < kvd; j += kRowThreads) {
    const int64_t at = kv.at(slot[t], il, j / hd, p) + j % hd;
    kv.k[at] = __float2half_rn(row[qd + j]);
    kv.v[at] = __float2half_rn(row[qd + kvd + j]);
  }
}

}  // namespace

void norm_quant(const float* in, int64_t ld_in, int m, const float* norm, float eps, bool is_gated, int act,
                DevActs q, cudaStream_t s) {
  launch_norm_quant(RowIn<RowSrc::kFloats>{in, nullptr, nullptr, nullptr, nullptr}, in, ld_in, m, norm, eps,
                    is_gated, act, q, s);
}

void norm_quant_gated_acc(const int32_t* acc, const float* row_scale, const float* acc_dq, int64_t ld_acc,
                          int m, const float* norm, float eps, int act, DevActs q, cudaStream_t s) {
  launch_norm_quant(RowIn<RowSrc::kSums>{nullptr, acc, row_scale, acc_dq, nullptr}, acc, ld_acc, m, norm, eps,
                    true, act, q, s);
}

void norm_quant_residual_acc(const int32_t* acc, const float* row_scale, const float* acc_dq, float* x, int m,
                             const float* norm, float eps, DevActs q, cudaStream_t s) {
  launch_norm_quant(RowIn<RowSrc::kSumsPlusResidual>{nullptr, acc, row_scale, acc_dq, x}, acc, q.k, m, norm,
                    eps, false, 0, q, s);
}

int64_t row_kernels_max_floats() {
  cudaFuncAttributes fa{};  // less the norm kernel's static shared memory (its reductions'; RoPE has none)
  BN_CUDA(cudaFuncGetAttributes(&fa, norm_quant_kernel<RowSrc::kSumsPlusResidual, 1>));
  return (smem_optin() - static_cast<int64_t>(fa.sharedSizeBytes)) / static_cast<int64_t>(sizeof(float));
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
  launch(rope_kv_kernel<false>, m, kRowThreads, rope_dim * sizeof(float), s, qkv, nullptr, nullptr, nullptr,
         pos, slot, n_head, rope_dim, inv_freq, neox, kv, il);
  BN_CUDA_LAUNCHED();
}

void rope_kv_store_acc(const int32_t* acc, const float* row_scale, const float* acc_dq, float* qkv, int m,
                       const int32_t* pos, const int32_t* slot, int64_t n_head, int64_t rope_dim,
                       const double* inv_freq, bool neox, const KvGeom& kv, int64_t il, cudaStream_t s) {
  if (m <= 0) return;
  const size_t smem =
      static_cast<size_t>(rope_dim + n_head * kv.head_dim + 2 * kv.n_head_kv * kv.head_dim) * sizeof(float);
  static unsigned long long attr_set = 0;  // once per device (as launch_norm_quant)
  if (first_on_device(attr_set)) allow_smem_optin(rope_kv_kernel<true>);
  launch(rope_kv_kernel<true>, m, kRowThreads, smem, s, qkv, acc, row_scale, acc_dq, pos, slot, n_head,
         rope_dim, inv_freq, neox, kv, il);
  BN_CUDA_LAUNCHED();
}

}  // namespace bitnet::cuda::infer
