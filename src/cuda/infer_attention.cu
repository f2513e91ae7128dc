// Attention over the half KV cache (infer_kernels.h). A block takes one token, one KV head and
// the G query heads that share it, so each key and value is read once for all G; the query is
// rounded to half like the CPU's. Prompts: one block per (token, KV head) holds its scores in
// shared memory and computes the CPU's softmax there (exp(s - max) / sum, the sum in double,
// probabilities rounded to half, values weighted in key order). Decode: the keys are split into
// ranges over more blocks (below), with the same probabilities.
#include <cfloat>

#include "cuda/check.h"
#include "cuda/infer_kernels.h"
#include "cuda/infer_launch.cuh"

namespace bitnet::cuda::infer {
namespace {

constexpr int kWarps = 4, kThreads = 32 * kWarps;
constexpr int kMaxChunk = 6144;  // keys per block: G * 24 KB of scores or probabilities in shared memory

// D = head_dim / 32 values per lane; G query heads per KV head.
template <int D, int G>
__global__ void __launch_bounds__(kThreads)
    attn_kernel(const float* qkv, const int32_t* pos, const int32_t* slot, int64_t n_head, KvGeom kv,
                int64_t il, float* out) {
  pdl_launch();
  pdl_wait();
  extern __shared__ float sc[];  // [G][n_kv]
  constexpr int hd = 32 * D;
  const int64_t t = blockIdx.x, kvh = blockIdx.y;
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  const int64_t n_kv = pos[t] + 1;
  const int64_t j0 = 0, j1 = n_kv;
  const int64_t qd = n_head * hd, kvd = kv.n_head_kv * hd;
  const float scale = 1.0f / sqrtf(static_cast<float>(hd));
  const int64_t base = kv.at(slot[t], il, kvh, 0);
  const __half* K = kv.k + base;
  const __half* V = kv.v + base;
  const int64_t len = j1 - j0;
  float q[G][D];
#pragma unroll
  for (int g = 0; g < G; ++g)
#pragma unroll
    for (int d = 0; d < D; ++d)
      q[g][d] = __half2float(__float2half_rn(qkv[t * (qd + 2 * kvd) + (kvh * G + g) * hd + lane * D + d]));
  // Keys four at a time per warp, their loads issued together (a warp's key is one 256-byte row).
  auto score = [&](int64_t j, const float(&kf)[D]) {
#pragma unroll
    for (int g = 0; g < G; ++g) {
      float s = 0;
#pragma unroll
      for (int d = 0; d < D; ++d) s = fmaf(q[g][d], kf[d], s);
      for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
      if (lane == 0) sc[g * len + (j - j0)] = s * scale;
    }
  };
  int64_t j = j0 + warp;
  for (; j + 3 * kWarps < j1; j += 4 * kWarps) {
    float kf[4][D];
#pragma unroll
    for (int u = 0; u < 4; ++u)
#pragma unroll
      for (int d = 0; d < D; ++d) kf[u][d] = __half2float(K[(j + u * kWarps) * hd + lane * D + d]);
#pragma unroll
    for (int u = 0; u < 4; ++u) score(j + u * kWarps, kf[u]);
  }
  for (; j < j1; j += kWarps) {
    float kf[D];
#pragma unroll
    for (int d = 0; d < D; ++d) kf[d] = __half2float(K[j * hd + lane * D + d]);
    score(j, kf);
  }
  __syncthreads();
  // Softmax per query head: warp g % kWarps takes head g.
  for (int g = warp; g < G; g += kWarps) {
    float* s = sc + g * len;
    float mx = -FLT_MAX;
    for (int64_t j = lane; j < len; j += 32) mx = fmaxf(mx, s[j]);
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    double sum = 0;
    for (int64_t j = lane; j < len; j += 32) {
      const float e = expf(s[j] - mx);
      s[j] = e;
      sum += e;
    }
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t j = lane; j < len; j += 32) s[j] = __half2float(__float2half_rn(s[j] * inv));
  }
  __syncthreads();
  for (int d = threadIdx.x; d < hd; d += kThreads) {
    float o[G];
#pragma unroll
    for (int g = 0; g < G; ++g) o[g] = 0;
    int64_t j = 0;
    for (; j + 8 <= len; j += 8) {  // eight values' loads in flight, then their products in key order
      float v[8];
#pragma unroll
      for (int u = 0; u < 8; ++u) v[u] = __half2float(V[(j0 + j + u) * hd + d]);
#pragma unroll
      for (int u = 0; u < 8; ++u)
#pragma unroll
        for (int g = 0; g < G; ++g) o[g] = fmaf(sc[g * len + j + u], v[u], o[g]);
    }
    for (; j < len; ++j) {
      const float v = __half2float(V[(j0 + j) * hd + d]);
#pragma unroll
      for (int g = 0; g < G; ++g) o[g] = fmaf(sc[g * len + j], v, o[g]);
    }
#pragma unroll
    for (int g = 0; g < G; ++g) out[t * qd + (kvh * G + g) * hd + d] = o[g];
  }
}

// Decode with several key ranges, in three kernels, so that every probability is the CPU's:
// scores (each range's keys) into global scratch; then each range's block takes the max and the
// exponential sum over all of its query heads' scores (the same values the one-range softmax
// sees; the double sum in another order), its own probabilities rounded to half, and their
// weighted values: a partial output; then the partial outputs are added in range order.
template <int D, int G>
__global__ void __launch_bounds__(kThreads)
    scores_kernel(const float* qkv, const int32_t* pos, const int32_t* slot, int64_t n_head, KvGeom kv,
                  int64_t il, int splits, float* scores) {
  pdl_launch();
  pdl_wait();
  constexpr int hd = 32 * D;
  const int64_t t = blockIdx.x, kvh = blockIdx.y;
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  const int64_t n_kv = pos[t] + 1, chunk = (n_kv + splits - 1) / splits;
  const int64_t j0 = blockIdx.z * chunk, j1 = j0 + chunk < n_kv ? j0 + chunk : n_kv;
  const int64_t qd = n_head * hd, kvd = kv.n_head_kv * hd;
  const float scale = 1.0f / sqrtf(static_cast<float>(hd));
  const __half* K = kv.k + kv.at(slot[t], il, kvh, 0);
  float q[G][D];
#pragma unroll
  for (int g = 0; g < G; ++g)
#pragma unroll
    for (int d = 0; d < D; ++d)
      q[g][d] = __half2float(__float2half_rn(qkv[t * (qd + 2 * kvd) + (kvh * G + g) * hd + lane * D + d]));
  float* out = scores + (t * n_head + kvh * G) * kv.n_ctx;
  for (int64_t j = j0 + warp; j < j1; j += kWarps) {
    float kf[D];
#pragma unroll
    for (int d = 0; d < D; ++d) kf[d] = __half2float(K[j * hd + lane * D + d]);
#pragma unroll
    for (int g = 0; g < G; ++g) {
      float s = 0;
#pragma unroll
      for (int d = 0; d < D; ++d) s = fmaf(q[g][d], kf[d], s);
      for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
      if (lane == 0) out[g * kv.n_ctx + j] = s * scale;
    }
  }
}

template <int D, int G>
__global__ void __launch_bounds__(kThreads)
    pv_kernel(const int32_t* pos, const int32_t* slot, int64_t n_head, KvGeom kv, int64_t il, int splits,
              const float* scores, float* parts) {
  pdl_launch();
  pdl_wait();
  extern __shared__ float p[];  // [G][chunk]
  constexpr int hd = 32 * D;
  const int64_t t = blockIdx.x, kvh = blockIdx.y;
  const int sp = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  const int64_t n_kv = pos[t] + 1, chunk = (n_kv + splits - 1) / splits;
  const int64_t j0 = sp * chunk, j1 = j0 + chunk < n_kv ? j0 + chunk : n_kv;
  const int64_t len = j1 > j0 ? j1 - j0 : 0;
  const __half* V = kv.v + kv.at(slot[t], il, kvh, 0);
  for (int g = warp; g < G; g += kWarps) {
    const float* s = scores + (t * n_head + kvh * G + g) * kv.n_ctx;
    float mx = -FLT_MAX;
    for (int64_t j = lane; j < n_kv; j += 32) mx = fmaxf(mx, s[j]);
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    double sum = 0;
    for (int64_t j = lane; j < n_kv; j += 32) sum += expf(s[j] - mx);
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t j = lane; j < len; j += 32)
      p[g * len + j] = __half2float(__float2half_rn(expf(s[j0 + j] - mx) * inv));
  }
  __syncthreads();
  for (int d = threadIdx.x; d < hd; d += kThreads) {
    float o[G];
#pragma unroll
    for (int g = 0; g < G; ++g) o[g] = 0;
    for (int64_t j = 0; j < len; ++j) {
      const float v = __half2float(V[(j0 + j) * hd + d]);
#pragma unroll
      for (int g = 0; g < G; ++g) o[g] = fmaf(p[g * len + j], v, o[g]);
    }
#pragma unroll
    for (int g = 0; g < G; ++g) parts[((t * n_head + kvh * G + g) * splits + sp) * hd + d] = o[g];
  }
}

__global__ void sum_parts_kernel(const float* parts, int64_t n_head, int hd, int splits, float* out) {
  pdl_launch();
  pdl_wait();
  const int64_t t = blockIdx.x, h = blockIdx.y;
  const float* p = parts + (t * n_head + h) * splits * hd;
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float o = 0;
    for (int s = 0; s < splits; ++s) o += p[s * hd + d];
    out[(t * n_head + h) * hd + d] = o;
  }
}

// Without `out` (splits > 1), the partial outputs stay in scratch: attention_parts.
template <int D, int G>
void launch_attn(const float* qkv, int m, const int32_t* pos, const int32_t* slot, int64_t n_head,
                 const KvGeom& kv, int64_t il, int splits, float* scratch, float* out, cudaStream_t s) {
  static unsigned long long attr_set = 0;  // once per device and instantiation (the opt-in above 48 KB)
  if (first_on_device(attr_set)) {
    for (const void* k :
         {reinterpret_cast<const void*>(attn_kernel<D, G>), reinterpret_cast<const void*>(pv_kernel<D, G>)})
      BN_CUDA(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                   static_cast<int>(sizeof(float) * G * kMaxChunk)));
  }
  const dim3 grid(static_cast<unsigned>(m), static_cast<unsigned>(kv.n_head_kv),
                  static_cast<unsigned>(splits));
  const size_t smem = sizeof(float) * G * ((kv.n_ctx + splits - 1) / splits);
  if (splits == 1) {
    launch(attn_kernel<D, G>, grid, kThreads, smem, s, qkv, pos, slot, n_head, kv, il, out);
    return;
  }
  float* scores = scratch;
  float* parts = scratch + m * n_head * kv.n_ctx;
  launch(scores_kernel<D, G>, grid, kThreads, 0, s, qkv, pos, slot, n_head, kv, il, splits, scores);
  launch(pv_kernel<D, G>, grid, kThreads, smem, s, pos, slot, n_head, kv, il, splits, scores, parts);
  if (out == nullptr) return;
  launch(sum_parts_kernel, dim3(static_cast<unsigned>(m), static_cast<unsigned>(n_head)), 32 * D, 0, s, parts,
         n_head, 32 * D, splits, out);
}

template <int D>
void launch_g(int64_t group, const float* qkv, int m, const int32_t* pos, const int32_t* slot, int64_t n_head,
              const KvGeom& kv, int64_t il, int splits, float* scratch, float* out, cudaStream_t s) {
  switch (group) {
    case 1:
      return launch_attn<D, 1>(qkv, m, pos, slot, n_head, kv, il, splits, scratch, out, s);
    case 2:
      return launch_attn<D, 2>(qkv, m, pos, slot, n_head, kv, il, splits, scratch, out, s);
    case 4:
      return launch_attn<D, 4>(qkv, m, pos, slot, n_head, kv, il, splits, scratch, out, s);
    default:
      return launch_attn<D, 8>(qkv, m, pos, slot, n_head, kv, il, splits, scratch, out, s);
  }
}

}  // namespace

const float* attention_parts(const float* qkv, int m, const int32_t* pos, const int32_t* slot, int64_t n_head,
                             const KvGeom& kv, int64_t il, int splits, float* scratch, cudaStream_t s) {
  // One range writes its output directly (there are no parts to leave in scratch).
  if (splits <= 1) cuda_failed("attention_parts with splits <= 1", __FILE__, __LINE__, cudaErrorInvalidValue);
  attention(qkv, m, pos, slot, n_head, kv, il, splits, scratch, nullptr, s);
  return scratch + m * n_head * kv.n_ctx;
}

int attention_max_chunk() {
  return kMaxChunk;
}

size_t attention_scratch_floats(int64_t m, int64_t n_head, int64_t head_dim, int64_t n_ctx, int splits) {
  return splits == 1 ? 0 : static_cast<size_t>(m * n_head * (n_ctx + splits * head_dim));
}

bool attention_supported(int64_t head_dim, int64_t group) {
  const bool d_ok = head_dim == 32 || head_dim == 64 || head_dim == 128;
  return d_ok && (group == 1 || group == 2 || group == 4 || group == 8);
}

void attention(const float* qkv, int m, const int32_t* pos, const int32_t* slot, int64_t n_head,
               const KvGeom& kv, int64_t il, int splits, float* scratch, float* out, cudaStream_t s) {
  if (m <= 0) return;
  const int64_t group = n_head / kv.n_head_kv;
  switch (kv.head_dim) {
    case 32:
      return launch_g<1>(group, qkv, m, pos, slot, n_head, kv, il, splits, scratch, out, s);
    case 64:
      return launch_g<2>(group, qkv, m, pos, slot, n_head, kv, il, splits, scratch, out, s);
    default:
      return launch_g<4>(group, qkv, m, pos, slot, n_head, kv, il, splits, scratch, out, s);
  }
}

}  // namespace bitnet::cuda::infer
