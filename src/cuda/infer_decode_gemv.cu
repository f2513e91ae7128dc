// Decode products that bring their neighbours in (infer_kernels.h decode_gemv): a decode step of
// the per-op path is a chain of small dependent kernels, each costing a launch and its own
// latency, so the norm + quantization before each product and the op after it (RoPE and the KV
// store, the gated activation, the residual add) run inside the product's kernel. Every block
// normalizes and quantizes the whole input row(s) into shared memory once (a few KB read from L2
// while its first weights are already in flight), then takes groups of rows, one row a warp, as
// the plain GEMV does (infer_ternary.cu: dp4a on the codes, exact int32), applying the epilogue
// to each. Compiled with -fmad=false like the other inference kernels: the float operations are
// the CPU's. The lab in tests/cuda/test_decode_gemv.cpp times each product and its phases.
#include <algorithm>
#include <cfloat>
#include <cstdlib>

#include "cuda/check.h"
#include "cuda/infer_device.cuh"
#include "cuda/infer_kernels.h"
#include "cuda/infer_launch.cuh"

namespace bitnet::cuda::infer {
namespace {

constexpr int kWarps = 12, kThreads = 32 * kWarps;
// The sum of squares is kept in kVirtual partials (partial v takes the values i = v mod
// kVirtual, in order), whatever the number of threads a token gets, so a token's scale is the
// same bits alone or in a batch.
constexpr int kVirtual = 256;
// A lane holds S 16-byte loads (64 columns each) of each of the R rows its warp takes in a group:
// S = 2 covers rows of up to 4,096 columns, S = 4 up to 8,192 (wider rows load the rest as they
// go). kRows = 1: on the 2B4T shapes (weights read from HBM, H100) one row a warp was as fast as
// 2, 4 or 8 for every product, and faster for most (tests/cuda/test_decode_gemv.cpp's lab).
constexpr int kRows = 1;
// Tokens whose input values the block keeps in shared memory between the norm's passes (more
// would not fit beside the codes for the widest rows).
constexpr int kCachedTokens = 2;

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

// Each member starts a 16-byte piece: ptxas merges a thread's neighbouring shared loads into
// 16-byte ones from an aligned address, which may take in the member before. The reads of red
// after its barrier then also read dq[0], which thread 0 writes meanwhile (compute-sanitizer's
// racecheck reported it on an H100; the value read was unused, but the access is a race).
template <int MT, int R>
struct Smem {
  alignas(16) double part[MT][kVirtual];
  alignas(16) float dq[MT];
  alignas(16) float red[kWarps];
  alignas(16) int32_t ired[kWarps];
  alignas(16) float pair[2][R][kWarps][MT];  // by the parity of the block's group count (group_rows)
};

// Dynamic shared memory: Smem, then the RMSNorm weights (k_pad floats), the input values (MT x
// k_pad floats, tokens up to kCachedTokens), then the codes (MT x k_pad bytes).
template <int MT, int R>
struct Layout {
  size_t g, xs, q, total;
  __host__ __device__ explicit Layout(int64_t k_pad) {
    const size_t kp = static_cast<size_t>(k_pad);
    g = (sizeof(Smem<MT, R>) + 15) / 16 * 16;
    xs = g + 4 * kp;
    q = xs + (MT <= kCachedTokens ? 4 * kp * MT : 0);
    total = q + kp * MT;
  }
};

// Values loaded together in the norm's first pass: the loads are issued before any of them is
// used, so the pass costs about one L2 round trip rather than one per value.
constexpr int kBatch = 16;

// Every thread: the codes of tokens 0..m-1 into q (k_pad bytes a token) and their 1/s into sm.dq;
// the sum of token `lane`'s codes into xsum. Tokens are worked on at once, kThreads / P threads
// each (P: m rounded up to a power of two; a warp works for one token). g: the RMSNorm weights in
// shared memory. Thread u of a token sees the values i = u mod TP in every pass, so with MT <=
// kCachedTokens it keeps what it read in xs (shared memory) and later passes read no global
// memory. Each reduction's last step is done by every warp that needs it (the same operations, so
// the same bits), which saves a block barrier per pass.
template <int MT, int R>
__device__ void norm_quant_rows(const DecodeGemvIn& in, int m, int64_t k, int64_t k_pad, const float* g,
                                float* xs, int8_t* q, Smem<MT, R>& sm, int& xsum) {
  constexpr int P = MT;                                              // MT is a power of two >= m
  constexpr int WP = kWarps / P > 0 ? kWarps / P : 1, TP = 32 * WP;  // whole warps a token
  constexpr bool kCache = MT <= kCachedTokens;
  const int t = threadIdx.x / TP, u = threadIdx.x % TP, warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  const bool live = t < m;
  float* xt = xs + t * k_pad;  // used with kCache only
  auto value = [&](int64_t i) { return kCache ? xt[i] : input_at(in, t, i); };
  // Pass 1: the sum of squares in the fixed partials (values added in index order); the values
  // go to xs.
  if (in.norm || kCache) {
    if (live)
      for (int v = u; v < kVirtual; v += TP) {
        double p = 0;
        const int kk = static_cast<int>(k);  // rows of fewer than 2^31 values: 32-bit indices
        for (int i0 = v; i0 < kk; i0 += kBatch * kVirtual) {
          float x[kBatch];
#pragma unroll
          for (int j = 0; j < kBatch; ++j) {
            const int i = i0 + j * kVirtual;
            x[j] = i < kk ? input_at(in, t, i) : 0.0f;
          }
#pragma unroll
          for (int j = 0; j < kBatch; ++j) {
            const int i = i0 + j * kVirtual;
            if (i < kk) {
              p += static_cast<double>(x[j]) * x[j];
              if (kCache) xt[i] = x[j];
            }
          }
        }
        if (in.norm) sm.part[t][v] = p;
      }
  }
  float sc = 1.0f;
  if (in.norm) {
    __syncthreads();
    if (live) {  // token t's partials: 8 per lane in order, then the butterfly; lane 0's sum
      double s = 0;
#pragma unroll
      for (int j = 0; j < kVirtual / 32; ++j) s += sm.part[t][lane * (kVirtual / 32) + j];
      for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
      s = __shfl_sync(0xffffffffu, s, 0);
      const float mean = static_cast<float>(s / static_cast<double>(k));
      sc = 1.0f / sqrtf(mean + in.eps);
    }
  }
  // Passes 2 and 3 need no order (a max, an integer sum): with the values staged in xs and rows
  // of whole 16-byte pieces, a thread takes pieces of four (a quarter of the instructions; every
  // block of the SM does this work).
  const bool vec = kCache && (k & 3) == 0;
  // Pass 1 staged values that other threads read below (in either layout of pass 2); with a norm
  // the partials' barrier above came after it.
  if (kCache && !in.norm) __syncthreads();
  // Pass 2: the largest |value| of the normalized row (normalized values back into xs).
  float amax = 0;
  if (live && vec) {
    const int pieces = static_cast<int>(k / 4);
    float4* x4 = reinterpret_cast<float4*>(xt);
    const float4* g4 = reinterpret_cast<const float4*>(g);
#pragma unroll 2
    for (int c = u; c < pieces; c += TP) {
      float4 x = x4[c];
      if (in.norm) {
        const float4 gv = g4[c];
        x = make_float4(x.x * sc * gv.x, x.y * sc * gv.y, x.z * sc * gv.z, x.w * sc * gv.w);
        x4[c] = x;
      }
      amax = fmaxf(fmaxf(amax, fmaxf(fabsf(x.x), fabsf(x.y))), fmaxf(fabsf(x.z), fabsf(x.w)));
    }
  } else if (live) {
#pragma unroll 4
    for (int64_t i = u; i < k; i += TP) {
      const float x = value(i);
      const float v = in.norm ? x * sc * g[i] : x;
      if (kCache) xt[i] = v;
      amax = fmaxf(amax, fabsf(v));
    }
  }
  for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
  if (lane == 0) sm.red[warp] = amax;
  __syncthreads();
  float inv_s = 0;
  if (live) {
    float a = 0;
    for (int w = 0; w < WP; ++w) a = fmaxf(a, sm.red[t * WP + w]);
    inv_s = 127.0f / fmaxf(a, 1e-5f);
    if (u == 0) sm.dq[t] = 1.0f / inv_s;
  }
  // Pass 3: the codes (round half to even) and their sum.
  auto code = [&](float v) { return static_cast<int>(fminf(fmaxf(rintf(v * inv_s), -128.0f), 127.0f)); };
  int sum = 0;
  if (live && vec) {
    const int pieces = static_cast<int>(k / 4), all = static_cast<int>(k_pad / 4);
    const float4* x4 = reinterpret_cast<const float4*>(xt);
    uint32_t* q4 = reinterpret_cast<uint32_t*>(q + t * k_pad);
#pragma unroll 2
    for (int c = u; c < all; c += TP) {
      uint32_t packed = 0;
      if (c < pieces) {
        const float4 v = x4[c];
        const int c0 = code(v.x), c1 = code(v.y), c2 = code(v.z), c3 = code(v.w);
        sum += c0 + c1 + c2 + c3;
        packed = (static_cast<uint32_t>(c0) & 0xFFu) | (static_cast<uint32_t>(c1) & 0xFFu) << 8 |
                 (static_cast<uint32_t>(c2) & 0xFFu) << 16 | (static_cast<uint32_t>(c3) & 0xFFu) << 24;
      }
      q4[c] = packed;
    }
  } else if (live) {
    int8_t* qr = q + t * k_pad;
#pragma unroll 4
    for (int64_t i = u; i < k_pad; i += TP) {
      int c = 0;
      if (i < k) c = code(kCache ? xt[i] : (in.norm ? value(i) * sc * g[i] : value(i)));
      qr[i] = static_cast<int8_t>(c);
      sum += c;
    }
  }
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  if (lane == 0) sm.ired[warp] = sum;
  __syncthreads();
  xsum = 0;
  if (lane < m)
    for (int w = 0; w < WP; ++w) xsum += sm.ired[lane * WP + w];
}

// A warp's R rows of group g (the group's rows l = g * R * kWarps + j * kWarps + warp) and the
// first S 16-byte loads of each.
template <int S, int RR>
struct WarpRows {
  static constexpr int R = RR;
  int64_t row[R];
  uint4 w[R][S];
};

template <int S, int R>
__device__ __forceinline__ void load_rows(const DevTernary& w, const DecodeGemvOut& e, int64_t g, int warp,
                                          int lane, WarpRows<S, R>& r) {
  const int64_t steps = w.k_pad / 64;
#pragma unroll
  for (int j = 0; j < R; ++j) {
    const int64_t l = (g * R + j) * kWarps + warp;
    r.row[j] = l < w.n ? row_of(l, e) : -1;
    if (r.row[j] >= 0) {
      const uint4* wr = reinterpret_cast<const uint4*>(w.w + r.row[j] * (w.k_pad / 16));
#pragma unroll
      for (int s = 0; s < S; ++s)
        if (lane + 32 * s < steps) r.w[j][s] = ld_stream(wr + lane + 32 * s);
    }
  }
}

// The group's products and epilogue (every thread of the block: the pair epilogues synchronize).
template <int MT, int S, int R>
__device__ __forceinline__ void group_rows(const DevTernary& w, int m, const DecodeGemvOut& e, int64_t g,
                                           int slot, const WarpRows<S, R>& r, const int8_t* q,
                                           Smem<MT, R>& sm, int xsum) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  const int64_t steps = w.k_pad / 64;
  const int rot = (lane >> 1) & 3;
  int acc[R][MT];
#pragma unroll
  for (int j = 0; j < R; ++j) {
#pragma unroll
    for (int t = 0; t < MT; ++t) acc[j][t] = 0;
    if (r.row[j] < 0) continue;
#pragma unroll
    for (int s = 0; s < S; ++s)
      if (lane + 32 * s < steps)
#pragma unroll
        for (int t = 0; t < MT; ++t)
          if (t < m)
            dot64(r.w[j][s], reinterpret_cast<const int4*>(q + t * w.k_pad) + (lane + 32 * s) * 4, rot,
                  acc[j][t]);
    const uint4* wr = reinterpret_cast<const uint4*>(w.w + r.row[j] * (w.k_pad / 16));
    for (int64_t c = lane + 32 * S; c < steps; c += 32) {
      const uint4 wv = ld_stream(wr + c);
#pragma unroll
      for (int t = 0; t < MT; ++t)
        if (t < m) dot64(wv, reinterpret_cast<const int4*>(q + t * w.k_pad) + c * 4, rot, acc[j][t]);
    }
  }
#pragma unroll
  for (int j = 0; j < R; ++j) {
    // Lane t < m ends with token t's exact sum: sum code * x - sum x = sum w * x.
    int mine = 0;
#pragma unroll
    for (int t = 0; t < MT; ++t) {
      int v = acc[j][t];
      for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
      if (lane == t) mine = v;
    }
    const int64_t row = r.row[j];
    const bool out = row >= 0 && lane < m;
    float v = 0;
    if (out) v = static_cast<float>(mine - xsum) * (w.row_scale[row] * sm.dq[lane]);
    if (e.kind == DecodeEpilogue::kAdd) {
      if (out) e.y[lane * e.ldy + row] += v;
      continue;
    }
    if (e.kind == DecodeEpilogue::kStore) {
      if (out) e.y[lane * e.ldy + row] = v;
      continue;
    }
    // The pair epilogues: each warp's value beside its neighbour's. A block may take several
    // groups (g, g + gridDim.x, ...); the slots alternate with the block's count of them (not g's
    // parity, which stays the same when gridDim.x is even), so a slot is written again two groups
    // later, after the next group's barrier, which every warp reaches after reading this one.
    if (lane < MT) sm.pair[slot][j][warp][lane] = v;
    __syncthreads();
    if (!out) continue;
    const float other = sm.pair[slot][j][warp ^ 1][lane];
    const int64_t l = (g * R + j) * kWarps + warp;
    if (e.kind == DecodeEpilogue::kGated) {
      if ((l & 1) == 0) e.y[lane * e.ldy + row] = gated(v, other, e.act);  // row = l / 2 (the gate)
      continue;
    }
    // RoPE as rope_kv_store: a = the pair's first row, b = its second; then the KV store.
    const int64_t hd = e.kv.head_dim, qd = e.n_head * hd, kvd = e.kv.n_head_kv * hd;
    float res = v;
    if (row < qd + kvd && l % hd < e.rope_dim) {
      const int64_t pos = e.pos[lane], pair = (l % hd) / 2;
      const double angle = static_cast<double>(pos) * e.inv_freq[pair];
      double sn, cn;
      sincos(angle, &sn, &cn);
      const float c = static_cast<float>(cn), s = static_cast<float>(sn);
      const float a = (l & 1) ? other : v, b = (l & 1) ? v : other;
      res = (l & 1) ? a * s + b * c : a * c - b * s;
    }
    e.y[lane * e.ldy + row] = res;
    if (row >= qd) {
      const int64_t p = e.pos[lane], jkv = row >= qd + kvd ? row - qd - kvd : row - qd;
      const int64_t at = e.kv.at(e.slot[lane], e.il, jkv / hd, p) + jkv % hd;
      if (row >= qd + kvd)
        e.kv.v[at] = __float2half_rn(res);
      else
        e.kv.k[at] = __float2half_rn(res);
    }
  }
}

// A block takes groups blockIdx.x, + gridDim.x, ...: the input row is normalized and quantized
// once per block, not once per group, and the next group's weights load while this group's are
// multiplied. The first group's loads and the RMSNorm weights (into shared memory) are issued
// before waiting for the kernel that writes the input (weights are nobody's output).
template <int MT, int S, int R>
__global__ void __launch_bounds__(kThreads)
    decode_gemv_kernel(DevTernary w, DecodeGemvIn in, int m, DecodeGemvOut e) {
  pdl_launch();
  unsigned long long* trace = nullptr;
  if (e.trace != nullptr && blockIdx.x == 0 && threadIdx.x == 0)
    trace = e.trace + 1 + 5 * atomicAdd(e.trace, 1ull);
  auto tick = [&](int phase) {
    if (trace == nullptr) return;
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    trace[phase] = t;
  };
  tick(0);
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const Layout<MT, R> lay(w.k_pad);
  Smem<MT, R>& sm = *reinterpret_cast<Smem<MT, R>*>(smem_raw);
  float* gs = reinterpret_cast<float*>(smem_raw + lay.g);
  float* xs = reinterpret_cast<float*>(smem_raw + lay.xs);
  int8_t* q = reinterpret_cast<int8_t*>(smem_raw + lay.q);
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  const int64_t groups = (w.n + R * kWarps - 1) / (R * kWarps);
  int64_t g = blockIdx.x;
  WarpRows<S, R> cur;
  load_rows(w, e, g, warp, lane, cur);
  if (in.norm)
    for (int64_t i = threadIdx.x; i < w.k; i += kThreads) gs[i] = in.norm[i];
  tick(1);
  pdl_wait();
  tick(2);
  int xsum = 0;  // token `lane`'s codes summed
  norm_quant_rows<MT, R>(in, m, w.k, w.k_pad, gs, xs, q, sm, xsum);
  tick(3);
  for (int slot = 0; g < groups; g += gridDim.x, slot ^= 1) {
    WarpRows<S, R> next;
    if (g + gridDim.x < groups) load_rows(w, e, g + gridDim.x, warp, lane, next);
    group_rows<MT, S, R>(w, m, e, g, slot, cur, q, sm, xsum);
    cur = next;
  }
  tick(4);
}

int tokens_rounded(int m) {
  return m <= 1 ? 1 : m <= 2 ? 2 : m <= 4 ? 4 : 8;
}

// S for rows of k_pad columns (the fewest loads that hold a row, at most 4).
int loads_per_row(int64_t k_pad) {
  return k_pad <= 32 * 64 * 2 ? 2 : 4;
}

size_t smem_bytes(int mt, int64_t k_pad) {
  return mt == 1   ? Layout<1, kRows>(k_pad).total
         : mt == 2 ? Layout<2, kRows>(k_pad).total
         : mt == 4 ? Layout<4, kRows>(k_pad).total
                   : Layout<8, kRows>(k_pad).total;
}

// Every group where the device holds all their blocks at once, else as many blocks as it holds.
template <int MT, int S>
void launch_ms(const DevTernary& w, const DecodeGemvIn& in, int m, const DecodeGemvOut& e, cudaStream_t s) {
  static unsigned long long attr_set = 0;  // once per device: the opt-in above 48 KB
  const auto kernel = decode_gemv_kernel<MT, S, kRows>;
  if (first_on_device(attr_set))
    BN_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_optin()));
  const size_t smem = smem_bytes(MT, w.k_pad);
  int dev = 0, sms = 0, per_sm = 0;
  BN_CUDA(cudaGetDevice(&dev));
  BN_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  BN_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, smem));
  const int64_t groups = (w.n + kRows * kWarps - 1) / (kRows * kWarps);
  const auto blocks =
      static_cast<unsigned>(std::min<int64_t>(groups, static_cast<int64_t>(std::max(per_sm, 1)) * sms));
  launch(kernel, blocks, kThreads, smem, s, w, in, m, e);
}

template <int MT>
void launch_mt(const DevTernary& w, const DecodeGemvIn& in, int m, const DecodeGemvOut& e, cudaStream_t s) {
  if (loads_per_row(w.k_pad) == 2)
    launch_ms<MT, 2>(w, in, m, e, s);
  else
    launch_ms<MT, 4>(w, in, m, e, s);
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
