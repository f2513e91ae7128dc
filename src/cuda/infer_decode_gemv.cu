// Decode products that bring their neighbours in (infer_kernels.h decode_gemv): a decode step of
// the per-op path is a chain of small dependent kernels, each costing a launch and its own
// latency, so the norm + quantization before each product and the op after it (RoPE and the KV
// store, the gated activation, the residual add) run inside the product's kernel. Every block
// normalizes and quantizes the whole input row(s) into shared memory (a few KB read from L2
// while its first weights are already in flight), then multiplies its 16 rows as the plain GEMV
// does (infer_ternary.cu: dp4a on the codes, exact int32), then applies the epilogue. Compiled
// with -fmad=false like the other inference kernels: the float operations are the CPU's.
#include <cfloat>

#include "cuda/check.h"
#include "cuda/infer_device.cuh"
#include "cuda/infer_kernels.h"
#include "cuda/infer_launch.cuh"

namespace bitnet::cuda::infer {
namespace {

constexpr int kWarps = 8, kThreads = 32 * kWarps;
constexpr int kRowsPerWarp = 2, kBlockRows = kWarps * kRowsPerWarp;
// The sum of squares is kept in kVirtual partials (partial v takes the values i = v mod
// kVirtual, in order), whatever the number of threads a token gets, so a token's scale is the
// same bits alone or in a batch.
constexpr int kVirtual = 256;

// 64 columns of codes against 64 activations in shared memory (the word order rotated by lane
// so that a phase of 8 lanes reads 8 different banks; the int32 sum does not depend on order).
__device__ __forceinline__ void dot64(const uint4 w, const int4* x, int rot, int& acc) {
#pragma unroll
  for (int jj = 0; jj < 4; ++jj) {
    const int j = (jj + rot) & 3;
    // Selects, not an array indexed at run time (that would put the words in local memory).
    const uint32_t wj = j == 0 ? w.x : j == 1 ? w.y : j == 2 ? w.z : w.w;
    const int4 xv = x[j];
    acc = __dp4a(codes(wj, 0), xv.x, acc);
    acc = __dp4a(codes(wj, 1), xv.y, acc);
    acc = __dp4a(codes(wj, 2), xv.z, acc);
    acc = __dp4a(codes(wj, 3), xv.w, acc);
  }
}

// Input value i of token t: the float row, or the sum of the attention's partial outputs in
// range order (attention_parts), as attention()'s own last kernel adds them.
__device__ __forceinline__ float input_at(const DecodeGemvIn& in, int t, int64_t i) {
  if (in.splits <= 1) return in.x[t * in.ld + i];
  const int64_t h = i / in.head_dim, d = i % in.head_dim;
  const float* p = in.x + (t * in.n_head + h) * in.splits * in.head_dim + d;
  float o = 0;
  for (int s = 0; s < in.splits; ++s) o += p[s * in.head_dim];
  return o;
}

// Row of linear index l (the block's rows in order). RoPE pairs and gate/up pairs are made
// neighbours (l, l + 1 with l even), so one block holds both rows of each pair.
__device__ __forceinline__ int64_t row_of(int64_t l, const DecodeGemvOut& e) {
  if (e.kind == DecodeEpilogue::kGated) return (l & 1) ? e.ff + l / 2 : l / 2;
  if (e.kind != DecodeEpilogue::kRopeKv) return l;
  const int64_t hd = e.kv.head_dim, rot = e.n_head * hd + e.kv.n_head_kv * hd;  // q and k rows rotate
  if (l >= rot) return l;
  const int64_t base = l - l % hd, i = l % hd;
  if (i >= e.rope_dim) return l;
  const int64_t pair = i / 2, which = i & 1;
  return base + (e.neox ? pair + which * (e.rope_dim / 2) : 2 * pair + which);
}

struct Smem {
  double part[kDecodeGemvMaxTokens][kVirtual];
  float scale[kDecodeGemvMaxTokens], inv_s[kDecodeGemvMaxTokens], dq[kDecodeGemvMaxTokens];
  int32_t xsum[kDecodeGemvMaxTokens];
  float red[kWarps];
  int32_t ired[kWarps];
  float pair[kRowsPerWarp][kWarps][kDecodeGemvMaxTokens];
};

// Every thread: the codes of tokens 0..m-1 into q (k_pad bytes a token), their 1/s into sm.dq
// and the codes' sums into sm.xsum. Tokens are worked on at once, kThreads / P threads each
// (P: m rounded up to a power of two).
template <int MT>
__device__ void norm_quant_rows(const DecodeGemvIn& in, int m, int64_t k, int64_t k_pad, int8_t* q,
                                Smem& sm) {
  constexpr int P = MT;  // MT is a power of two >= m
  constexpr int TP = kThreads / P, WP = TP / 32;
  const int t = threadIdx.x / TP, u = threadIdx.x % TP, warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  const bool live = t < m;
  // Pass 1: the sum of squares, in the fixed partials.
  if (in.norm) {
    if (live)
      for (int v = u; v < kVirtual; v += TP) {
        double p = 0;
        for (int64_t i = v; i < k; i += kVirtual) {
          const float x = input_at(in, t, i);
          p += static_cast<double>(x) * x;
        }
        sm.part[t][v] = p;
      }
    __syncthreads();
    if (warp < m) {  // warp w adds token w's partials: 8 per lane in order, then the butterfly
      double s = 0;
#pragma unroll
      for (int j = 0; j < kVirtual / 32; ++j) s += sm.part[warp][lane * (kVirtual / 32) + j];
      for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
      if (lane == 0) {
        const float mean = static_cast<float>(s / static_cast<double>(k));
        sm.scale[warp] = 1.0f / sqrtf(mean + in.eps);
      }
    }
    __syncthreads();
  }
  // Pass 2: the largest |value| of the normalized row.
  float amax = 0;
  if (live) {
    const float sc = in.norm ? sm.scale[t] : 1.0f;
    for (int64_t i = u; i < k; i += TP) {
      const float x = input_at(in, t, i);
      const float v = in.norm ? x * sc * in.norm[i] : x;
      amax = fmaxf(amax, fabsf(v));
    }
  }
  for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
  if (lane == 0) sm.red[warp] = amax;
  __syncthreads();
  if (live && u == 0) {
    float a = 0;
    for (int w = 0; w < WP; ++w) a = fmaxf(a, sm.red[t * WP + w]);
    const float s = 127.0f / fmaxf(a, 1e-5f);
    sm.inv_s[t] = s;
    sm.dq[t] = 1.0f / s;
  }
  __syncthreads();
  // Pass 3: the codes (round half to even) and their sum.
  int sum = 0;
  if (live) {
    const float sc = in.norm ? sm.scale[t] : 1.0f, s = sm.inv_s[t];
    int8_t* qr = q + t * k_pad;
    for (int64_t i = u; i < k_pad; i += TP) {
      int c = 0;
      if (i < k) {
        const float x = input_at(in, t, i);
        const float v = in.norm ? x * sc * in.norm[i] : x;
        c = static_cast<int>(fminf(fmaxf(rintf(v * s), -128.0f), 127.0f));
      }
      qr[i] = static_cast<int8_t>(c);
      sum += c;
    }
  }
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  if (lane == 0) sm.ired[warp] = sum;
  __syncthreads();
  if (live && u == 0) {
    int a = 0;
    for (int w = 0; w < WP; ++w) a += sm.ired[t * WP + w];
    sm.xsum[t] = a;
  }
  __syncthreads();
}

template <int MT>
__global__ void __launch_bounds__(kThreads)
    decode_gemv_kernel(DevTernary w, DecodeGemvIn in, int m, DecodeGemvOut e) {
  pdl_launch();
  extern __shared__ __align__(16) unsigned char smem_raw[];
  Smem& sm = *reinterpret_cast<Smem*>(smem_raw);
  int8_t* q = reinterpret_cast<int8_t*>(smem_raw + (sizeof(Smem) + 15) / 16 * 16);
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  const int64_t steps = w.k_pad / 64;
  // This warp's rows and up to four 16-byte loads of each, issued before waiting for the kernel
  // that writes the input (the weights are nobody's output).
  int64_t rows[kRowsPerWarp];
  uint4 pre[kRowsPerWarp][4];
#pragma unroll
  for (int j = 0; j < kRowsPerWarp; ++j) {
    const int64_t l = static_cast<int64_t>(blockIdx.x) * kBlockRows + j * kWarps + warp;
    rows[j] = l < w.n ? row_of(l, e) : -1;
    if (rows[j] >= 0) {
      const uint4* wr = reinterpret_cast<const uint4*>(w.w + rows[j] * (w.k_pad / 16));
#pragma unroll
      for (int s = 0; s < 4; ++s)
        if (lane + 32 * s < steps) pre[j][s] = ld_stream(wr + lane + 32 * s);
    }
  }
  pdl_wait();
  norm_quant_rows<MT>(in, m, w.k, w.k_pad, q, sm);
  const int rot = (lane >> 1) & 3;
#pragma unroll
  for (int j = 0; j < kRowsPerWarp; ++j) {
    int acc[MT];
#pragma unroll
    for (int t = 0; t < MT; ++t) acc[t] = 0;
    if (rows[j] >= 0) {
      const uint4* wr = reinterpret_cast<const uint4*>(w.w + rows[j] * (w.k_pad / 16));
#pragma unroll
      for (int s = 0; s < 4; ++s)
        if (lane + 32 * s < steps)
#pragma unroll
          for (int t = 0; t < MT; ++t)
            if (t < m)
              dot64(pre[j][s], reinterpret_cast<const int4*>(q + t * w.k_pad) + (lane + 32 * s) * 4, rot,
                    acc[t]);
      for (int64_t c = lane + 128; c < steps; c += 32) {
        const uint4 wv = ld_stream(wr + c);
#pragma unroll
        for (int t = 0; t < MT; ++t)
          if (t < m) dot64(wv, reinterpret_cast<const int4*>(q + t * w.k_pad) + c * 4, rot, acc[t]);
      }
    }
    // Lane t < m ends with token t's exact sum: sum code * x - sum x = sum w * x.
    int mine = 0;
#pragma unroll
    for (int t = 0; t < MT; ++t) {
      int v = acc[t];
      for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
      if (lane == t) mine = v;
    }
    const int64_t row = rows[j];
    const bool out = row >= 0 && lane < m;
    float v = 0;
    if (out) v = static_cast<float>(mine - sm.xsum[lane]) * (w.row_scale[row] * sm.dq[lane]);
    if (e.kind == DecodeEpilogue::kAdd) {
      if (out) e.y[lane * e.ldy + row] += v;
      continue;
    }
    if (e.kind == DecodeEpilogue::kStore) {
      if (out) e.y[lane * e.ldy + row] = v;
      continue;
    }
    // The pair epilogues: each warp's value beside its neighbour's.
    if (lane < MT) sm.pair[j][warp][lane] = v;
    __syncthreads();
    if (!out) continue;
    const float other = sm.pair[j][warp ^ 1][lane];
    const int64_t l = static_cast<int64_t>(blockIdx.x) * kBlockRows + j * kWarps + warp;
    if (e.kind == DecodeEpilogue::kGated) {
      if ((l & 1) == 0) e.y[lane * e.ldy + row] = gated(v, other, e.act);  // row = l / 2 (the gate)
      continue;
    }
    // RoPE as rope_kv_store: a = the pair's first row, b = its second; then the KV store.
    const int64_t hd = e.kv.head_dim, qd = e.n_head * hd, kvd = e.kv.n_head_kv * hd;
    float r = v;
    if (row < qd + kvd && l % hd < e.rope_dim) {
      const int64_t pos = e.pos[lane], pair = (l % hd) / 2;
      const double angle = static_cast<double>(pos) * e.inv_freq[pair];
      double sn, cn;
      sincos(angle, &sn, &cn);
      const float c = static_cast<float>(cn), s = static_cast<float>(sn);
      const float a = (l & 1) ? other : v, b = (l & 1) ? v : other;
      r = (l & 1) ? a * s + b * c : a * c - b * s;
    }
    e.y[lane * e.ldy + row] = r;
    if (row >= qd) {
      const int64_t p = e.pos[lane], jkv = row >= qd + kvd ? row - qd - kvd : row - qd;
      const int64_t at = e.kv.at(e.slot[lane], e.il, jkv / hd, p) + jkv % hd;
      if (row >= qd + kvd)
        e.kv.v[at] = __float2half_rn(r);
      else
        e.kv.k[at] = __float2half_rn(r);
    }
  }
}

size_t smem_bytes(int m, int64_t k_pad) {
  return (sizeof(Smem) + 15) / 16 * 16 + static_cast<size_t>(m) * static_cast<size_t>(k_pad);
}

int smem_optin() {
  int dev = 0, optin = 0;
  BN_CUDA(cudaGetDevice(&dev));
  BN_CUDA(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  return optin;
}

int tokens_rounded(int m) {
  return m <= 1 ? 1 : m <= 2 ? 2 : m <= 4 ? 4 : 8;
}

template <int MT>
void launch_mt(const DevTernary& w, const DecodeGemvIn& in, int m, const DecodeGemvOut& e, cudaStream_t s) {
  static unsigned long long attr_set = 0;  // once per device: the opt-in above 48 KB
  if (first_on_device(attr_set))
    BN_CUDA(cudaFuncSetAttribute(decode_gemv_kernel<MT>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 smem_optin()));
  const unsigned blocks = static_cast<unsigned>((w.n + kBlockRows - 1) / kBlockRows);
  launch(decode_gemv_kernel<MT>, blocks, kThreads, smem_bytes(MT, w.k_pad), s, w, in, m, e);
}

}  // namespace

bool decode_gemv_supported(int m, int64_t k) {
  if (m < 1 || m > kDecodeGemvMaxTokens || k < 1) return false;
  return smem_bytes(tokens_rounded(m), (k + 63) / 64 * 64) <= static_cast<size_t>(smem_optin());
}

void decode_gemv(const DevTernary& w, const DecodeGemvIn& in, int m, const DecodeGemvOut& e, cudaStream_t s) {
  if (m <= 1)
    launch_mt<1>(w, in, m, e, s);
  else if (m <= 2)
    launch_mt<2>(w, in, m, e, s);
  else if (m <= 4)
    launch_mt<4>(w, in, m, e, s);
  else
    launch_mt<8>(w, in, m, e, s);
  BN_CUDA_LAUNCHED();
}

}  // namespace bitnet::cuda::infer
