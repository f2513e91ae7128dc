// Prompt attention on tensor cores (infer_kernels.h: attention_prompt). A block takes 64 query
// tokens of one query head, a warp 16 of them; keys and values stream through shared memory in
// tiles of 64 positions. Scores are mma.m16n8k16 products of the half query (rounded like the
// CPU's) and the half keys with float accumulation, times 1 / sqrt(head_dim). The probabilities
// are the CPU's softmax (exp(s - max) / sum, the sum in double, each probability rounded to half),
// so the keys are read twice: a first pass finds each row's max and exponential sum (the sum
// rescaled in double when the max grows), the second turns the scores into those probabilities
// and multiplies them (half) by the values (half) into float outputs. What differs from the CPU:
// the order of the float additions, the tensor cores' accumulation, and the exponential sum's
// rescaling as the max grows (in double, so 1 / sum may differ in its last bit); a probability
// may therefore round to half the other way (PromptAttentionMatchesTheOneBlockKernel: 1e-3).
//
// The keys are split between kSplits groups of warps: each step copies kSplits tiles of 64 keys
// and each group multiplies its own, so a block's chain of dependent tile steps (its time: the
// 2B4T's prompt has about one block an SM, latency-bound) is kSplits times shorter. The groups'
// row maxima and sums are combined after pass 1 (in double, group 0's first), their outputs
// added after pass 2. The tiles come in by cp.async into two buffers, the next step's copies in
// flight while the warps multiply the current one. Blocks are numbered from the last query block
// down, so the ones with the most keys start first.
#include <cfloat>

#include "cuda/check.h"
#include "cuda/infer_device.cuh"
#include "cuda/infer_kernels.h"
#include "cuda/infer_launch.cuh"

namespace bitnet::cuda::infer {
namespace {

constexpr int kBq = 64, kBk = 64, kWarps = kBq / 16, kSplits = 2, kThreads = 32 * kWarps * kSplits;
constexpr int kStep = kBk * kSplits;  // keys a step copies

template <int HD>
__host__ __device__ constexpr int row_halves() {
  return HD + 8;  // 16 bytes of padding: ldmatrix's eight row reads hit distinct banks
}
template <int HD>
constexpr size_t smem_bytes() {
  return sizeof(__half) * (kBq + 4 * kStep) * row_halves<HD>();  // the query, two key and two value steps
}
// The groups' partial results meet in the key buffers once the passes are done with them.
template <int HD>
constexpr bool partials_fit() {
  return kSplits * kBq * (sizeof(float) + sizeof(double)) <= sizeof(__half) * 2 * kStep * row_halves<HD>() &&
         (kSplits - 1) * kBq * HD * sizeof(float) <= sizeof(__half) * 4 * kStep * row_halves<HD>();
}
static_assert(partials_fit<32>() && partials_fit<64>() && partials_fit<128>());

__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const __half* p) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}
__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], const __half* p) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}
__device__ __forceinline__ void mma_f16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ uint32_t pack_half2(float lo, float hi) {
  const __half2 h = __halves2half2(__float2half_rn(lo), __float2half_rn(hi));
  return *reinterpret_cast<const uint32_t*>(&h);
}

template <int HD>
__global__ void __launch_bounds__(kThreads)
    attn_prompt_kernel(const float* qkv, int m, const int32_t* pos, const int32_t* slot, int64_t n_head,
                       KvGeom kv, int64_t il, float* out) {
  pdl_launch();
  pdl_wait();
  constexpr int RS = row_halves<HD>(), KC = HD / 16, DT = HD / 8;
  extern __shared__ __align__(16) __half smh[];
  __half* sq = smh;                    // [kBq][RS]
  __half* sk0 = sq + kBq * RS;         // [2][kStep][RS]
  __half* sv0 = sk0 + 2 * kStep * RS;  // [2][kStep][RS]
  const int tid = threadIdx.x, lane = tid & 31, g = lane / 4, q = lane % 4;
  // Warp: its 16 query rows (warp) and the 64 keys of each step it takes (split).
  const int warp = (tid / 32) % kWarps, split = tid / 32 / kWarps;
  const int64_t h = blockIdx.y, group = n_head / kv.n_head_kv, kvh = h / group;
  const int64_t t0 = static_cast<int64_t>(gridDim.x - 1 - blockIdx.x) * kBq, p0 = pos[0];
  const int64_t qd = n_head * HD, ld = qd + 2 * kv.n_head_kv * HD;
  const __half* K = kv.k + kv.at(slot[0], il, kvh, 0);
  const __half* V = kv.v + kv.at(slot[0], il, kvh, 0);
  // Keys this block needs: up to the position of its last real token.
  const int64_t last = t0 + kBq < m ? t0 + kBq - 1 : m - 1;
  const int64_t n_keys = p0 + last + 1;
  const float scale = 1.0f / sqrtf(static_cast<float>(HD));

  // The block's 64 query rows as half, four values a thread and step (the loads of a step are
  // independent, so they are in flight together).
#pragma unroll 4
  for (int i = tid; i < kBq * HD / 4; i += kThreads) {
    const int r = i / (HD / 4), d = 4 * (i % (HD / 4));
    const int64_t t = t0 + r;
    const float4 v = t < m ? *reinterpret_cast<const float4*>(qkv + t * ld + h * HD + d)
                           : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    *reinterpret_cast<__half2*>(sq + r * RS + d) = __halves2half2(__float2half_rn(v.x), __float2half_rn(v.y));
    *reinterpret_cast<__half2*>(sq + r * RS + d + 2) =
        __halves2half2(__float2half_rn(v.z), __float2half_rn(v.w));
  }
  __syncthreads();
  uint32_t qa[KC][4];
#pragma unroll
  for (int c = 0; c < KC; ++c) ldsm_x4(qa[c], sq + (16 * warp + (lane & 15)) * RS + 16 * c + (lane >> 4) * 8);
  // Rows g and g + 8 of the warp's 16: their positions (keys 0 .. pos are visible).
  const int64_t pos_r[2] = {p0 + t0 + 16 * warp + g, p0 + t0 + 16 * warp + g + 8};
  const int64_t warp_last = p0 + t0 + 16 * warp + 15;

  // Starts the copy of key (or value) rows j0 .. j0 + kStep - 1 into dst; rows past n_keys are zeros.
  auto load_tile = [&](__half* dst, const __half* src, int64_t j0) {
    constexpr int kPieces = HD / 8;  // 16-byte pieces per row
    for (int i = tid; i < kStep * kPieces; i += kThreads) {
      const int r = i / kPieces, c = i % kPieces;
      const bool in = j0 + r < n_keys;
      cp_async16_zfill(dst + r * RS + c * 8, src + (in ? j0 + r : 0) * HD + c * 8, in ? 16 : 0);
    }
  };
  const int tiles = static_cast<int>((n_keys + kStep - 1) / kStep);  // steps
  // Scores of the warp's 16 rows against keys j0 .. j0 + 63 (scaled; masked ones -FLT_MAX).
  auto scores = [&](float(&s)[kBk / 8][4], const __half* sk, int64_t j0) {
#pragma unroll
    for (int nt = 0; nt < kBk / 8; ++nt)
#pragma unroll
      for (int r = 0; r < 4; ++r) s[nt][r] = 0;
#pragma unroll
    for (int c = 0; c < KC; ++c)
#pragma unroll
      for (int np = 0; np < kBk / 16; ++np) {  // two key tiles of 8 per ldmatrix.x4
        uint32_t b[4];
        ldsm_x4(b, sk + (16 * np + (lane & 7) + ((lane >> 4) << 3)) * RS + 16 * c + ((lane >> 3) & 1) * 8);
        mma_f16(s[2 * np], qa[c], b[0], b[1]);
        mma_f16(s[2 * np + 1], qa[c], b[2], b[3]);
      }
#pragma unroll
    for (int nt = 0; nt < kBk / 8; ++nt)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int64_t j = j0 + 8 * nt + 2 * q + (r & 1);
        s[nt][r] = j <= pos_r[r >> 1] ? s[nt][r] * scale : -FLT_MAX;
      }
  };

  // Pass 1: each row's max and sum of exp(s - max). Tile t is in buffer t % 2; the copy of tile
  // t + 1 is started before tile t is waited for, and each tile's buffer is refilled only after
  // the barrier that ends its use.
  float mx[2] = {-FLT_MAX, -FLT_MAX};
  double sum[2] = {0, 0};
  load_tile(sk0, K, 0);
  cp_async_commit();
  for (int t = 0; t < tiles; ++t) {
    const int64_t j0 = static_cast<int64_t>(t) * kStep + split * kBk;  // this warp's keys
    if (t + 1 < tiles) load_tile(sk0 + ((t + 1) & 1) * kStep * RS, K, static_cast<int64_t>(t + 1) * kStep);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const __half* sk = sk0 + (t & 1) * kStep * RS + split * kBk * RS;
    if (j0 <= warp_last) {
      float s[kBk / 8][4];
      scores(s, sk, j0);
#pragma unroll
      for (int rr = 0; rr < 2; ++rr) {
        float tm = mx[rr];
#pragma unroll
        for (int nt = 0; nt < kBk / 8; ++nt) tm = fmaxf(tm, fmaxf(s[nt][2 * rr], s[nt][2 * rr + 1]));
        tm = fmaxf(tm, __shfl_xor_sync(0xffffffffu, tm, 1));
        tm = fmaxf(tm, __shfl_xor_sync(0xffffffffu, tm, 2));
        if (tm > mx[rr]) {
          sum[rr] *= exp(static_cast<double>(mx[rr]) - static_cast<double>(tm));  // 0 while mx is -FLT_MAX
          mx[rr] = tm;
        }
#pragma unroll
        for (int nt = 0; nt < kBk / 8; ++nt)
#pragma unroll
          for (int e = 0; e < 2; ++e)
            if (s[nt][2 * rr + e] != -FLT_MAX) sum[rr] += expf(s[nt][2 * rr + e] - mx[rr]);
      }
    }
    __syncthreads();  // every warp is done with buffer t % 2 before tile t + 2 is copied into it
  }
  // Each group's row max and sum into shared memory (the key buffers are free after the loop's
  // last barrier), then every warp combines its rows' kSplits partials in group order.
  float* part_mx = reinterpret_cast<float*>(sk0);                         // [kSplits][kBq]
  double* part_sum = reinterpret_cast<double*>(part_mx + kSplits * kBq);  // [kSplits][kBq]
  float inv[2];
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
    sum[rr] += __shfl_xor_sync(0xffffffffu, sum[rr], 1);
    sum[rr] += __shfl_xor_sync(0xffffffffu, sum[rr], 2);
    if (q == 0) {
      part_mx[split * kBq + 16 * warp + g + 8 * rr] = mx[rr];
      part_sum[split * kBq + 16 * warp + g + 8 * rr] = sum[rr];
    }
  }
  __syncthreads();
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
    const int r = 16 * warp + g + 8 * rr;
    float m_all = part_mx[r];
    for (int sp = 1; sp < kSplits; ++sp) m_all = fmaxf(m_all, part_mx[sp * kBq + r]);
    double s_all = 0;  // a group that saw no key has max -FLT_MAX and sum 0
    for (int sp = 0; sp < kSplits; ++sp)
      s_all += part_sum[sp * kBq + r] *
               exp(static_cast<double>(part_mx[sp * kBq + r]) - static_cast<double>(m_all));
    mx[rr] = m_all;
    inv[rr] = static_cast<float>(1.0 / s_all);
  }
  __syncthreads();  // the partials are read before pass 2's copies overwrite them

  // Pass 2: probabilities (half) times values.
  float o[DT][4];
#pragma unroll
  for (int dt = 0; dt < DT; ++dt)
#pragma unroll
    for (int r = 0; r < 4; ++r) o[dt][r] = 0;
  load_tile(sk0, K, 0);
  load_tile(sv0, V, 0);
  cp_async_commit();
  for (int t = 0; t < tiles; ++t) {
    const int64_t j0 = static_cast<int64_t>(t) * kStep + split * kBk;
    if (t + 1 < tiles) {
      load_tile(sk0 + ((t + 1) & 1) * kStep * RS, K, static_cast<int64_t>(t + 1) * kStep);
      load_tile(sv0 + ((t + 1) & 1) * kStep * RS, V, static_cast<int64_t>(t + 1) * kStep);
    }
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const __half* sk = sk0 + (t & 1) * kStep * RS + split * kBk * RS;
    const __half* sv = sv0 + (t & 1) * kStep * RS + split * kBk * RS;
    // Warps whose rows see none of these keys skip the products but not the barrier below (one
    // barrier instruction for the whole block: bar.sync is aligned).
    if (j0 <= warp_last) {
      float s[kBk / 8][4];
      scores(s, sk, j0);
#pragma unroll
      for (int kc = 0; kc < kBk / 16; ++kc) {
        uint32_t pa[4];
        auto prob = [&](float v, int rr) { return v == -FLT_MAX ? 0.0f : expf(v - mx[rr]) * inv[rr]; };
        pa[0] = pack_half2(prob(s[2 * kc][0], 0), prob(s[2 * kc][1], 0));
        pa[1] = pack_half2(prob(s[2 * kc][2], 1), prob(s[2 * kc][3], 1));
        pa[2] = pack_half2(prob(s[2 * kc + 1][0], 0), prob(s[2 * kc + 1][1], 0));
        pa[3] = pack_half2(prob(s[2 * kc + 1][2], 1), prob(s[2 * kc + 1][3], 1));
#pragma unroll
        for (int dp = 0; dp < DT / 2; ++dp) {  // two d tiles of 8 per ldmatrix.x4.trans
          uint32_t b[4];
          ldsm_x4_trans(b,
                        sv + (16 * kc + (lane & 7) + ((lane >> 3) & 1) * 8) * RS + 16 * dp + (lane >> 4) * 8);
          mma_f16(o[2 * dp], pa, b[0], b[1]);
          mma_f16(o[2 * dp + 1], pa, b[2], b[3]);
        }
      }
    }
    __syncthreads();  // as in pass 1
  }
  // Groups 1 .. kSplits - 1 leave their outputs in shared memory (the buffers are free after the
  // loop's last barrier); group 0 adds them in group order and writes the rows.
  float* part_o = reinterpret_cast<float*>(sk0);  // [kSplits - 1][kBq][HD]
  if (split > 0) {
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      float* dst = part_o + ((split - 1) * kBq + 16 * warp + g + 8 * rr) * HD;
#pragma unroll
      for (int dt = 0; dt < DT; ++dt) {
        dst[8 * dt + 2 * q] = o[dt][2 * rr];
        dst[8 * dt + 2 * q + 1] = o[dt][2 * rr + 1];
      }
    }
  }
  __syncthreads();
  if (split > 0) return;
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
    const int r = 16 * warp + g + 8 * rr;
    const int64_t t = t0 + r;
    if (t >= m) continue;
    float* dst = out + t * qd + h * HD;
#pragma unroll
    for (int dt = 0; dt < DT; ++dt) {
      float a = o[dt][2 * rr], b = o[dt][2 * rr + 1];
      for (int sp = 1; sp < kSplits; ++sp) {
        a += part_o[((sp - 1) * kBq + r) * HD + 8 * dt + 2 * q];
        b += part_o[((sp - 1) * kBq + r) * HD + 8 * dt + 2 * q + 1];
      }
      dst[8 * dt + 2 * q] = a;
      dst[8 * dt + 2 * q + 1] = b;
    }
  }
}

template <int HD>
void launch_prompt(const float* qkv, int m, const int32_t* pos, const int32_t* slot, int64_t n_head,
                   const KvGeom& kv, int64_t il, float* out, cudaStream_t s) {
  static unsigned long long attr_set = 0;  // once per device and instantiation (the opt-in above 48 KB)
  if (first_on_device(attr_set)) {
    BN_CUDA(cudaFuncSetAttribute(attn_prompt_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 static_cast<int>(smem_bytes<HD>())));
  }
  const dim3 grid(static_cast<unsigned>((m + kBq - 1) / kBq), static_cast<unsigned>(n_head));
  launch(attn_prompt_kernel<HD>, grid, kThreads, smem_bytes<HD>(), s, qkv, m, pos, slot, n_head, kv, il, out);
  BN_CUDA_LAUNCHED();
}

}  // namespace

void attention_prompt(const float* qkv, int m, const int32_t* pos, const int32_t* slot, int64_t n_head,
                      const KvGeom& kv, int64_t il, float* out, cudaStream_t s) {
  if (m <= 0) return;
  switch (kv.head_dim) {
    case 32:
      return launch_prompt<32>(qkv, m, pos, slot, n_head, kv, il, out, s);
    case 64:
      return launch_prompt<64>(qkv, m, pos, slot, n_head, kv, il, out, s);
    default:
      return launch_prompt<128>(qkv, m, pos, slot, n_head, kv, il, out, s);
  }
}

}  // namespace bitnet::cuda::infer
