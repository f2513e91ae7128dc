// Causal attention with grouped KV heads over the fused q|k|v buffer: one block per (batch, head,
// query row) in the forward and the first backward pass, one per (batch, KV head, key row) in the
// second, so every output element is summed by one thread in a fixed order (no atomics).
// Straightforward rather than fast: the probabilities are materialized as the CPU keeps them.
#include "cuda/check.h"
#include "cuda/reduce.cuh"
#include "cuda/train_kernels.h"

namespace bitnet::cuda::kern {

namespace {

constexpr int kThreads = 128;

struct Dims {
  int64_t seq, H, Hkv, hd, group, q_dim, kv_dim, C;
  float scale;
};

Dims dims_of(const AttnDims& d) {
  Dims r;
  r.seq = d.seq;
  r.H = d.n_head;
  r.Hkv = d.n_head_kv;
  r.hd = d.head_dim;
  r.group = d.n_head / d.n_head_kv;
  r.q_dim = d.n_head * d.head_dim;
  r.kv_dim = d.n_head_kv * d.head_dim;
  r.C = r.q_dim + 2 * r.kv_dim;
  r.scale = d.scale;
  return r;
}

__device__ float dot(const float* __restrict__ a, const float* __restrict__ b, int64_t n) {
  float s = 0.0f;
  for (int64_t i = 0; i < n; ++i) s = __fadd_rn(s, __fmul_rn(a[i], b[i]));
  return s;
}

// Block (i, b * H + h): scores of query i against keys 0..i, softmax, the row of att (zeros past the
// diagonal), then out_i = sum_j p_j v_j. Dynamic shared memory: seq floats for the row, padded to a
// multiple of 4 (row_shared_bytes says why).
__global__ void attn_forward_kernel(const float* __restrict__ qkv, Dims D, float* __restrict__ out,
                                    float* __restrict__ att) {
  extern __shared__ float p[];
  const int64_t i = blockIdx.x, bh = blockIdx.y;
  const int64_t b = bh / D.H, h = bh % D.H, kvh = h / D.group;
  const float* base = qkv + b * D.seq * D.C;
  const float* q = base + i * D.C + h * D.hd;
  const int64_t koff = D.q_dim + kvh * D.hd, voff = D.q_dim + D.kv_dim + kvh * D.hd;
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j <= i; j += blockDim.x) {
    const float sc = __fmul_rn(dot(q, base + j * D.C + koff, D.hd), D.scale);
    p[j] = sc;
    mx = fmaxf(mx, sc);
  }
  mx = dev::block_reduce(mx, dev::Max{}, -INFINITY);
  float sum = 0.0f;
  for (int64_t j = threadIdx.x; j <= i; j += blockDim.x) {
    const float e = expf(__fsub_rn(p[j], mx));
    p[j] = e;
    sum += e;
  }
  sum = dev::block_reduce(sum, dev::Sum{}, 0.0f);
  const float inv = __fdiv_rn(1.0f, sum);
  float* arow = att + (bh * D.seq + i) * D.seq;
  for (int64_t j = threadIdx.x; j < D.seq; j += blockDim.x) {
    float pj = 0.0f;
    if (j <= i) {
      pj = __fmul_rn(p[j], inv);
      p[j] = pj;
    }
    arow[j] = pj;
  }
  __syncthreads();
  float* o = out + (b * D.seq + i) * D.q_dim + h * D.hd;
  for (int64_t d = threadIdx.x; d < D.hd; d += blockDim.x) {
    float acc = 0.0f;
    for (int64_t j = 0; j <= i; ++j) acc = __fadd_rn(acc, __fmul_rn(p[j], base[j * D.C + voff + d]));
    o[d] = acc;
  }
}

// Block (i, b * H + h): dp_j = dout_i . v_j, ds_j = p_j (dp_j - sum_j p_j dp_j) scale, stored for the
// key pass; dq_i += sum_j ds_j k_j. Dynamic shared memory: seq floats, padded as in the forward.
__global__ void attn_backward_q_kernel(const float* __restrict__ dout, const float* __restrict__ qkv,
                                       const float* __restrict__ att, Dims D, float* __restrict__ ds,
                                       float* __restrict__ dqkv) {
  extern __shared__ float sh[];
  const int64_t i = blockIdx.x, bh = blockIdx.y;
  const int64_t b = bh / D.H, h = bh % D.H, kvh = h / D.group;
  const float* base = qkv + b * D.seq * D.C;
  const int64_t koff = D.q_dim + kvh * D.hd, voff = D.q_dim + D.kv_dim + kvh * D.hd;
  const float* p = att + (bh * D.seq + i) * D.seq;
  const float* go = dout + (b * D.seq + i) * D.q_dim + h * D.hd;
  float pdp = 0.0f;
  for (int64_t j = threadIdx.x; j <= i; j += blockDim.x) {
    const float dp = dot(go, base + j * D.C + voff, D.hd);
    sh[j] = dp;
    pdp = __fadd_rn(pdp, __fmul_rn(p[j], dp));
  }
  pdp = dev::block_reduce(pdp, dev::Sum{}, 0.0f);
  float* dsrow = ds + (bh * D.seq + i) * D.seq;
  for (int64_t j = threadIdx.x; j <= i; j += blockDim.x) {
    const float v = __fmul_rn(__fmul_rn(p[j], __fsub_rn(sh[j], pdp)), D.scale);
    sh[j] = v;
    dsrow[j] = v;
  }
  __syncthreads();
  float* dq = dqkv + (b * D.seq + i) * D.C + h * D.hd;
  for (int64_t d = threadIdx.x; d < D.hd; d += blockDim.x) {
    float acc = 0.0f;
    for (int64_t j = 0; j <= i; ++j) acc = __fadd_rn(acc, __fmul_rn(sh[j], base[j * D.C + koff + d]));
    dq[d] = __fadd_rn(dq[d], acc);
  }
}

// Block (j, b * Hkv + kvh): dk_j += sum over the group's heads h and rows i >= j of ds_ij q_i,
// dv_j += the same of p_ij dout_i; a thread per dimension.
__global__ void attn_backward_kv_kernel(const float* __restrict__ dout, const float* __restrict__ qkv,
                                        const float* __restrict__ att, const float* __restrict__ ds, Dims D,
                                        float* __restrict__ dqkv) {
  const int64_t j = blockIdx.x, bk = blockIdx.y;
  const int64_t b = bk / D.Hkv, kvh = bk % D.Hkv;
  const float* base = qkv + b * D.seq * D.C;
  float* drow = dqkv + (b * D.seq + j) * D.C;
  const int64_t koff = D.q_dim + kvh * D.hd, voff = D.q_dim + D.kv_dim + kvh * D.hd;
  for (int64_t d = threadIdx.x; d < D.hd; d += blockDim.x) {
    float dk = 0.0f, dv = 0.0f;
    for (int64_t h = kvh * D.group; h < (kvh + 1) * D.group; ++h) {
      const int64_t bh = b * D.H + h;
      for (int64_t i = j; i < D.seq; ++i) {
        const int64_t e = (bh * D.seq + i) * D.seq + j;
        dk = __fadd_rn(dk, __fmul_rn(ds[e], base[i * D.C + h * D.hd + d]));
        dv = __fadd_rn(dv, __fmul_rn(att[e], dout[(b * D.seq + i) * D.q_dim + h * D.hd + d]));
      }
    }
    drow[koff + d] = __fadd_rn(drow[koff + d], dk);
    drow[voff + d] = __fadd_rn(drow[voff + d], dv);
  }
}

// Dynamic shared bytes for a row of seq floats, rounded up to whole 16-byte groups (4 floats).
// The output loops `for (j = 0; j <= i; ++j) ... p[j] ...` of both kernels (sh[] in the backward)
// are unrolled by 4: an ld.shared.v4 per step, then in the PTX up to 3 guarded scalar tail loads
// p[4k], p[4k+1], p[4k+2], which the sm_90 code reads as one 12-byte load whatever the tail's
// length. For the last row (i = seq - 1, seq % 4 == 1 or 2) that reads up to 2 floats past
// p[seq - 1]: compute-sanitizer's "Invalid __shared__ read of size 12 bytes" at seq = 17. The
// extra values are never used (results are unchanged), but the read must stay inside the
// allocation. The row's base is 16-byte aligned and every load is at most 16 bytes wide and
// aligned to its size, so any load touching p[j], j < seq, ends before p[round_up(seq, 4)]: no
// shape reads past the allocation.
size_t row_shared_bytes(int64_t seq) {
  return sizeof(float) * static_cast<size_t>((seq + 3) / 4 * 4);
}

void set_shared(const void* kernel, size_t bytes) {
  // Above 48 KiB a kernel must opt in to its dynamic shared memory (seq > 12288).
  if (bytes > 48 * 1024)
    BN_CUDA(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

}  // namespace

void attention_forward(const float* qkv, const AttnDims& d, float* out, float* att, cudaStream_t s) {
  const Dims D = dims_of(d);
  const size_t shared = row_shared_bytes(D.seq);
  set_shared(reinterpret_cast<const void*>(attn_forward_kernel), shared);
  const dim3 grid(static_cast<unsigned>(D.seq), static_cast<unsigned>(d.batch * D.H));
  attn_forward_kernel<<<grid, kThreads, shared, s>>>(qkv, D, out, att);
  BN_CUDA_LAUNCHED();
}

void attention_backward(const float* dout, const float* qkv, const float* att, const AttnDims& d, float* ds,
                        float* dqkv, cudaStream_t s) {
  const Dims D = dims_of(d);
  const size_t shared = row_shared_bytes(D.seq);
  set_shared(reinterpret_cast<const void*>(attn_backward_q_kernel), shared);
  const dim3 grid_q(static_cast<unsigned>(D.seq), static_cast<unsigned>(d.batch * D.H));
  attn_backward_q_kernel<<<grid_q, kThreads, shared, s>>>(dout, qkv, att, D, ds, dqkv);
  BN_CUDA_LAUNCHED();
  const dim3 grid_kv(static_cast<unsigned>(D.seq), static_cast<unsigned>(d.batch * D.Hkv));
  const int threads = D.hd >= 128 ? 128 : static_cast<int>((D.hd + 31) / 32 * 32);
  attn_backward_kv_kernel<<<grid_kv, threads, 0, s>>>(dout, qkv, att, ds, D, dqkv);
  BN_CUDA_LAUNCHED();
}

}  // namespace bitnet::cuda::kern
