// Causal attention with grouped KV heads over the fused q|k|v buffer, tiled as FlashAttention-2:
// the forward keeps a running max and sum per query row (online softmax) and saves only the
// log-sum-exp, the backward recomputes the probabilities from it. The products run on the tensor
// cores (wmma, bf16 operands, fp32 accumulation); the softmax and every sum outside a product are
// fp32. So Q, K, V, dO and the probabilities are rounded to bf16 (8 significant bits) before each
// product, as in PyTorch's bf16 attention: results agree with the CPU's fp32 op to about 1e-3
// relative, not to fp32 rounding (tests/cuda/test_train_ops.cpp holds them to that).
//
// Tiles are 64 query rows by 64 key rows; a block of 4 warps owns a tile and each warp 16 of its
// rows, so the softmax of a row stays inside one warp (two lanes per row, 32 columns each). The
// head dimension is padded with zeros to HDP (16, 32, 64 or 128), which changes no product.
// Deterministic, no atomics: dK and dV are summed by the block of their key tile (over the group's
// heads and the query tiles, in order), dQ by the block of its query tile (a second pass that
// recomputes the probabilities rather than adding across blocks).
#include <cuda_bf16.h>
#include <mma.h>

#include "cuda/check.h"
#include "cuda/train_kernels.h"

namespace bitnet::cuda::kern {

namespace {

using bf16 = __nv_bfloat16;
namespace wm = nvcuda::wmma;

constexpr int kTile = 64;
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

using FragA = wm::fragment<wm::matrix_a, 16, 16, 16, bf16, wm::row_major>;
using FragAT = wm::fragment<wm::matrix_a, 16, 16, 16, bf16, wm::col_major>;
using FragB = wm::fragment<wm::matrix_b, 16, 16, 16, bf16, wm::row_major>;
using FragBT = wm::fragment<wm::matrix_b, 16, 16, 16, bf16, wm::col_major>;
using FragC = wm::fragment<wm::accumulator, 16, 16, 16, float>;

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

// Leading dimensions (elements). Every wmma pointer must be 32-byte aligned and ldm a multiple of
// 8 (bf16) or 4 (fp32); the +8 / +4 padding also spreads a column's elements over the banks. Each
// region's size is a multiple of 128 bytes for every HDP, so the regions stay aligned.
template <int HDP>
struct Ld {
  static constexpr int h = HDP + 8;                          // bf16 [64][h]: Q, K, V, dO tiles
  static constexpr int p = kTile + 8;                        // bf16 [64][p]: probabilities, dS
  static constexpr int s = (HDP > kTile ? HDP : kTile) + 4;  // fp32 [64][s]: scores, dP, outputs
  static constexpr size_t tile_h = size_t{kTile} * h * sizeof(bf16);
  static constexpr size_t tile_p = size_t{kTile} * p * sizeof(bf16);
  static constexpr size_t tile_s = size_t{kTile} * s * sizeof(float);
};

// dst[r][c] = bf16(src[r * stride + c]) for r < rows_left and c < hd, else 0 (padding rows and
// columns are zero, so they add nothing to any product). Consecutive threads read consecutive
// columns of a row.
template <int HDP>
__device__ void load_tile(const float* __restrict__ src, int64_t stride, int64_t rows_left, int64_t hd,
                          bf16* __restrict__ dst) {
  for (int e = threadIdx.x; e < kTile * HDP; e += kThreads) {
    const int r = e / HDP, c = e % HDP;
    float v = 0.0f;
    if (r < rows_left && c < hd) v = src[r * stride + c];
    dst[r * Ld<HDP>::h + c] = __float2bfloat16(v);
  }
}

// out[16][64] (fp32, ld Ld::s) = A[16][HDP] . B[64][HDP]^T, both bf16 row-major with ld Ld::h.
template <int HDP>
__device__ void rows_times_rows_t(const bf16* a, const bf16* b, float* out) {
  constexpr int LDH = Ld<HDP>::h;
#pragma unroll
  for (int n = 0; n < kTile / 16; ++n) {
    FragC acc;
    wm::fill_fragment(acc, 0.0f);
#pragma unroll
    for (int k = 0; k < HDP / 16; ++k) {
      FragA fa;
      FragBT fb;
      wm::load_matrix_sync(fa, a + k * 16, LDH);
      wm::load_matrix_sync(fb, b + n * 16 * LDH + k * 16, LDH);
      wm::mma_sync(acc, fa, fb, acc);
    }
    wm::store_matrix_sync(out + n * 16, acc, Ld<HDP>::s, wm::mem_row_major);
  }
}

// A warp's [16][HDP] accumulators added into global rows through its fp32 strip: lane (r, half) adds
// row r's columns [half * HDP / 2, ...) below hd to g (null: a padding row, nothing added).
template <int HDP>
__device__ void add_fragments(const FragC (&f)[HDP / 16], float* strip, float* g, int64_t hd, int r,
                              int half) {
  constexpr int HALF = HDP / 2;
  __syncwarp();  // the warp is done reading the strip
#pragma unroll
  for (int n = 0; n < HDP / 16; ++n)
    wm::store_matrix_sync(strip + n * 16, f[n], Ld<HDP>::s, wm::mem_row_major);
  __syncwarp();
  if (g != nullptr) {
#pragma unroll
    for (int c = 0; c < HALF; ++c) {
      const int col = half * HALF + c;
      if (col < hd) g[col] += strip[r * Ld<HDP>::s + col];
    }
  }
}

// Block (nq - 1 - x, b * H + h): query tile qt against key tiles 0..qt (the longest tiles start
// first). Writes out (normalized) and lse[bh][row] = log sum_j exp(scale q.k_j).
template <int HDP>
__global__ void __launch_bounds__(kThreads)
    flash_forward_kernel(const float* __restrict__ qkv, Dims D, float* __restrict__ out,
                         float* __restrict__ lse) {
  constexpr int LDH = Ld<HDP>::h, LDP = Ld<HDP>::p, LDS = Ld<HDP>::s, HALF = HDP / 2;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* Qs = reinterpret_cast<bf16*>(smem);
  bf16* Ks = Qs + kTile * LDH;
  bf16* Vs = Ks + kTile * LDH;
  bf16* Ps = Vs + kTile * LDH;
  float* Ss = reinterpret_cast<float*>(Ps + kTile * LDP);

  const int64_t nq = (D.seq + kTile - 1) / kTile, qt = nq - 1 - blockIdx.x, bh = blockIdx.y;
  const int64_t b = bh / D.H, h = bh % D.H, kvh = h / D.group;
  const float* base = qkv + b * D.seq * D.C;
  const int64_t q0 = qt * kTile, koff = D.q_dim + kvh * D.hd, voff = D.q_dim + D.kv_dim + kvh * D.hd;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r = lane >> 1, half = lane & 1;
  const int64_t qi = q0 + warp * 16 + r;  // this lane's query row (two lanes per row)
  float* Sw = Ss + warp * 16 * LDS;
  bf16* Pw = Ps + warp * 16 * LDP;
  const float sl2 = D.scale * kLog2e;  // scores in base-2 units: exp2f is one instruction

  load_tile<HDP>(base + q0 * D.C + h * D.hd, D.C, D.seq - q0, D.hd, Qs);
  float m = -INFINITY, l = 0.0f, o[HALF];
#pragma unroll
  for (int c = 0; c < HALF; ++c) o[c] = 0.0f;

  for (int64_t kt = 0; kt <= qt; ++kt) {
    const int64_t k0 = kt * kTile;
    __syncthreads();  // every warp is done with the previous K and V
    load_tile<HDP>(base + k0 * D.C + koff, D.C, D.seq - k0, D.hd, Ks);
    load_tile<HDP>(base + k0 * D.C + voff, D.C, D.seq - k0, D.hd, Vs);
    __syncthreads();
    rows_times_rows_t<HDP>(Qs + warp * 16 * LDH, Ks, Sw);
    __syncwarp();
    // Online softmax of this lane's 32 columns. Key 0 is never masked, so m is finite after the
    // first tile, also for the padding rows past seq (whose results are dropped).
    const float* srow = Sw + r * LDS + half * 32;
    float s[32], mt = -INFINITY;
#pragma unroll
    for (int c = 0; c < 32; ++c) {
      const int64_t kj = k0 + half * 32 + c;
      s[c] = (kj > qi || kj >= D.seq) ? -INFINITY : srow[c] * sl2;
      mt = fmaxf(mt, s[c]);
    }
    mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 1));
    const float mn = fmaxf(m, mt), alpha = exp2f(m - mn);
    float ls = 0.0f;
    bf16* prow = Pw + r * LDP + half * 32;
#pragma unroll
    for (int c = 0; c < 32; ++c) {
      const float p = exp2f(s[c] - mn);
      ls += p;
      prow[c] = __float2bfloat16(p);
    }
    ls += __shfl_xor_sync(0xffffffffu, ls, 1);
    l = l * alpha + ls;
    m = mn;
#pragma unroll
    for (int c = 0; c < HALF; ++c) o[c] *= alpha;
    __syncwarp();
    // This tile's P V into Sw (the scores are consumed), then added to the lane's outputs.
#pragma unroll
    for (int n = 0; n < HDP / 16; ++n) {
      FragC acc;
      wm::fill_fragment(acc, 0.0f);
#pragma unroll
      for (int k = 0; k < kTile / 16; ++k) {
        FragA fa;
        FragB fb;
        wm::load_matrix_sync(fa, Pw + k * 16, LDP);
        wm::load_matrix_sync(fb, Vs + k * 16 * LDH + n * 16, LDH);
        wm::mma_sync(acc, fa, fb, acc);
      }
      wm::store_matrix_sync(Sw + n * 16, acc, LDS, wm::mem_row_major);
    }
    __syncwarp();
    const float* trow = Sw + r * LDS + half * HALF;
#pragma unroll
    for (int c = 0; c < HALF; ++c) o[c] += trow[c];
    __syncwarp();  // the next tile's scores overwrite Sw
  }
  if (qi < D.seq) {
    const float inv = 1.0f / l;
    float* orow = out + (b * D.seq + qi) * D.q_dim + h * D.hd + half * HALF;
#pragma unroll
    for (int c = 0; c < HALF; ++c)
      if (half * HALF + c < D.hd) orow[c] = o[c] * inv;
    if (half == 0) lse[bh * D.seq + qi] = (m + log2f(l)) * kLn2;
  }
}

// Dv[bh][row] = dout_row . out_row over the head (a warp per row and head): softmax's backward
// subtracts it from every dP of the row.
__global__ void rowdot_kernel(const float* __restrict__ dout, const float* __restrict__ out, int64_t rows,
                              int64_t H, int64_t hd, int64_t seq, float* __restrict__ Dv) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (idx >= rows) return;
  const int lane = threadIdx.x % 32;
  const float* a = dout + idx * hd;  // row t, head h sits at (t * H + h) * hd: q_dim = H * hd
  const float* c = out + idx * hd;
  float s = 0.0f;
  for (int64_t i = lane; i < hd; i += 32) s += a[i] * c[i];
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  const int64_t t = idx / H, h = idx % H, b = t / seq, q = t % seq;
  if (lane == 0) Dv[(b * H + h) * seq + q] = s;
}

// The probabilities and score gradients of a [16 keys][64 queries] strip, transposed, are the
// operands of dV and dK. Block (kt, b * Hkv + kvh): key tile kt against the query tiles kt.. of
// every head of the group; each warp keeps dK and dV of its 16 keys in accumulator fragments.
template <int HDP>
__global__ void __launch_bounds__(kThreads)
    flash_backward_kv_kernel(const float* __restrict__ dout, const float* __restrict__ qkv,
                             const float* __restrict__ lse, const float* __restrict__ Dv, Dims D,
                             float* __restrict__ dqkv) {
  constexpr int LDH = Ld<HDP>::h, LDP = Ld<HDP>::p, LDS = Ld<HDP>::s, NF = HDP / 16;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* Ks = reinterpret_cast<bf16*>(smem);
  bf16* Vs = Ks + kTile * LDH;
  bf16* Qs = Vs + kTile * LDH;
  bf16* dOs = Qs + kTile * LDH;
  bf16* Pt = dOs + kTile * LDH;
  bf16* dSt = Pt + kTile * LDP;
  float* St = reinterpret_cast<float*>(dSt + kTile * LDP);
  float* lse_s = St + kTile * LDS;
  float* D_s = lse_s + kTile;

  const int64_t nq = (D.seq + kTile - 1) / kTile, kt = blockIdx.x, bk = blockIdx.y;
  const int64_t b = bk / D.Hkv, kvh = bk % D.Hkv;
  const float* base = qkv + b * D.seq * D.C;
  const int64_t k0 = kt * kTile, koff = D.q_dim + kvh * D.hd, voff = D.q_dim + D.kv_dim + kvh * D.hd;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r = lane >> 1, half = lane & 1;
  const int64_t kj = k0 + warp * 16 + r;  // this lane's key row
  float* Sw = St + warp * 16 * LDS;
  bf16* Pw = Pt + warp * 16 * LDP;
  bf16* dSw = dSt + warp * 16 * LDP;
  const float sl2 = D.scale * kLog2e;

  load_tile<HDP>(base + k0 * D.C + koff, D.C, D.seq - k0, D.hd, Ks);
  load_tile<HDP>(base + k0 * D.C + voff, D.C, D.seq - k0, D.hd, Vs);
  FragC dK[NF], dV[NF];
#pragma unroll
  for (int n = 0; n < NF; ++n) {
    wm::fill_fragment(dK[n], 0.0f);
    wm::fill_fragment(dV[n], 0.0f);
  }

  for (int64_t h = kvh * D.group; h < (kvh + 1) * D.group; ++h) {
    const int64_t bh = b * D.H + h;
    for (int64_t qt = kt; qt < nq; ++qt) {
      const int64_t q0 = qt * kTile;
      __syncthreads();  // every warp is done with the previous Q, dO, lse and D
      load_tile<HDP>(base + q0 * D.C + h * D.hd, D.C, D.seq - q0, D.hd, Qs);
      load_tile<HDP>(dout + (b * D.seq + q0) * D.q_dim + h * D.hd, D.q_dim, D.seq - q0, D.hd, dOs);
      if (threadIdx.x < kTile) {
        const int64_t qi = q0 + threadIdx.x;
        lse_s[threadIdx.x] = qi < D.seq ? lse[bh * D.seq + qi] * kLog2e : 0.0f;
        D_s[threadIdx.x] = qi < D.seq ? Dv[bh * D.seq + qi] : 0.0f;
      }
      __syncthreads();
      // S^T = K_w Q^T, then P^T = exp(S^T - lse) where the query may see the key.
      rows_times_rows_t<HDP>(Ks + warp * 16 * LDH, Qs, Sw);
      __syncwarp();
      float p[32];
#pragma unroll
      for (int c = 0; c < 32; ++c) {
        const int col = half * 32 + c;
        const int64_t qi = q0 + col;
        p[c] = (qi >= kj && qi < D.seq) ? exp2f(Sw[r * LDS + col] * sl2 - lse_s[col]) : 0.0f;
        Pw[r * LDP + col] = __float2bfloat16(p[c]);
      }
      __syncwarp();
      // dP^T = V_w dO^T, then dS^T = P^T (dP^T - D) scale (the scale of the scores folded in).
      rows_times_rows_t<HDP>(Vs + warp * 16 * LDH, dOs, Sw);
      __syncwarp();
#pragma unroll
      for (int c = 0; c < 32; ++c) {
        const int col = half * 32 + c;
        dSw[r * LDP + col] = __float2bfloat16(p[c] * (Sw[r * LDS + col] - D_s[col]) * D.scale);
      }
      __syncwarp();
      // dV_w += P^T_w dO, dK_w += dS^T_w Q.
#pragma unroll
      for (int k = 0; k < kTile / 16; ++k) {
        FragA fp, fs;
        wm::load_matrix_sync(fp, Pw + k * 16, LDP);
        wm::load_matrix_sync(fs, dSw + k * 16, LDP);
#pragma unroll
        for (int n = 0; n < NF; ++n) {
          FragB fo, fq;
          wm::load_matrix_sync(fo, dOs + k * 16 * LDH + n * 16, LDH);
          wm::load_matrix_sync(fq, Qs + k * 16 * LDH + n * 16, LDH);
          wm::mma_sync(dV[n], fp, fo, dV[n]);
          wm::mma_sync(dK[n], fs, fq, dK[n]);
        }
      }
    }
  }
  // Add the warp's dK, then dV, into dqkv through Sw.
  float* drow = dqkv + (b * D.seq + kj) * D.C;
  add_fragments<HDP>(dK, Sw, kj < D.seq ? drow + koff : nullptr, D.hd, r, half);
  add_fragments<HDP>(dV, Sw, kj < D.seq ? drow + voff : nullptr, D.hd, r, half);
}

// Block (nq - 1 - x, b * H + h): dQ of query tile qt from key tiles 0..qt, recomputing P and dP;
// each warp keeps dQ of its 16 rows in accumulator fragments.
template <int HDP>
__global__ void __launch_bounds__(kThreads)
    flash_backward_q_kernel(const float* __restrict__ dout, const float* __restrict__ qkv,
                            const float* __restrict__ lse, const float* __restrict__ Dv, Dims D,
                            float* __restrict__ dqkv) {
  constexpr int LDH = Ld<HDP>::h, LDP = Ld<HDP>::p, LDS = Ld<HDP>::s, NF = HDP / 16;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* Qs = reinterpret_cast<bf16*>(smem);
  bf16* dOs = Qs + kTile * LDH;
  bf16* Ks = dOs + kTile * LDH;
  bf16* Vs = Ks + kTile * LDH;
  bf16* dSs = Vs + kTile * LDH;
  float* Ss = reinterpret_cast<float*>(dSs + kTile * LDP);

  const int64_t nq = (D.seq + kTile - 1) / kTile, qt = nq - 1 - blockIdx.x, bh = blockIdx.y;
  const int64_t b = bh / D.H, h = bh % D.H, kvh = h / D.group;
  const float* base = qkv + b * D.seq * D.C;
  const int64_t q0 = qt * kTile, koff = D.q_dim + kvh * D.hd, voff = D.q_dim + D.kv_dim + kvh * D.hd;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r = lane >> 1, half = lane & 1;
  const int64_t qi = q0 + warp * 16 + r;
  float* Sw = Ss + warp * 16 * LDS;
  bf16* dSw = dSs + warp * 16 * LDP;
  const float sl2 = D.scale * kLog2e;

  load_tile<HDP>(base + q0 * D.C + h * D.hd, D.C, D.seq - q0, D.hd, Qs);
  load_tile<HDP>(dout + (b * D.seq + q0) * D.q_dim + h * D.hd, D.q_dim, D.seq - q0, D.hd, dOs);
  const float lse_row = qi < D.seq ? lse[bh * D.seq + qi] * kLog2e : 0.0f;
  const float d_row = qi < D.seq ? Dv[bh * D.seq + qi] : 0.0f;
  FragC dQ[NF];
#pragma unroll
  for (int n = 0; n < NF; ++n) wm::fill_fragment(dQ[n], 0.0f);

  for (int64_t kt = 0; kt <= qt; ++kt) {
    const int64_t k0 = kt * kTile;
    __syncthreads();
    load_tile<HDP>(base + k0 * D.C + koff, D.C, D.seq - k0, D.hd, Ks);
    load_tile<HDP>(base + k0 * D.C + voff, D.C, D.seq - k0, D.hd, Vs);
    __syncthreads();
    rows_times_rows_t<HDP>(Qs + warp * 16 * LDH, Ks, Sw);
    __syncwarp();
    float p[32];
#pragma unroll
    for (int c = 0; c < 32; ++c) {
      const int col = half * 32 + c;
      const int64_t kj = k0 + col;
      p[c] = (kj <= qi && qi < D.seq) ? exp2f(Sw[r * LDS + col] * sl2 - lse_row) : 0.0f;
    }
    __syncwarp();
    rows_times_rows_t<HDP>(dOs + warp * 16 * LDH, Vs, Sw);
    __syncwarp();
#pragma unroll
    for (int c = 0; c < 32; ++c) {
      const int col = half * 32 + c;
      dSw[r * LDP + col] = __float2bfloat16(p[c] * (Sw[r * LDS + col] - d_row) * D.scale);
    }
    __syncwarp();
#pragma unroll
    for (int k = 0; k < kTile / 16; ++k) {
      FragA fs;
      wm::load_matrix_sync(fs, dSw + k * 16, LDP);
#pragma unroll
      for (int n = 0; n < NF; ++n) {
        FragB fk;
        wm::load_matrix_sync(fk, Ks + k * 16 * LDH + n * 16, LDH);
        wm::mma_sync(dQ[n], fs, fk, dQ[n]);
      }
    }
  }
  add_fragments<HDP>(dQ, Sw, qi < D.seq ? dqkv + (b * D.seq + qi) * D.C + h * D.hd : nullptr, D.hd, r, half);
}

template <int HDP>
constexpr size_t forward_smem() {
  return 3 * Ld<HDP>::tile_h + Ld<HDP>::tile_p + Ld<HDP>::tile_s;
}
template <int HDP>
constexpr size_t backward_kv_smem() {
  return 4 * Ld<HDP>::tile_h + 2 * Ld<HDP>::tile_p + Ld<HDP>::tile_s + 2 * kTile * sizeof(float);
}
template <int HDP>
constexpr size_t backward_q_smem() {
  return 4 * Ld<HDP>::tile_h + Ld<HDP>::tile_p + Ld<HDP>::tile_s;
}

// Above 48 KiB a kernel must opt in to its dynamic shared memory.
void set_shared(const void* kernel, size_t bytes) {
  BN_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

template <int HDP>
void forward_hdp(const float* qkv, const Dims& D, int64_t batch, float* out, float* lse, cudaStream_t s) {
  const size_t shared = forward_smem<HDP>();
  set_shared(reinterpret_cast<const void*>(flash_forward_kernel<HDP>), shared);
  const dim3 grid(static_cast<unsigned>((D.seq + kTile - 1) / kTile), static_cast<unsigned>(batch * D.H));
  flash_forward_kernel<HDP><<<grid, kThreads, shared, s>>>(qkv, D, out, lse);
  BN_CUDA_LAUNCHED();
}

template <int HDP>
void backward_hdp(const float* dout, const float* qkv, const float* lse, const float* Dv, const Dims& D,
                  int64_t batch, float* dqkv, cudaStream_t s) {
  const unsigned tiles = static_cast<unsigned>((D.seq + kTile - 1) / kTile);
  const size_t kv_shared = backward_kv_smem<HDP>(), q_shared = backward_q_smem<HDP>();
  set_shared(reinterpret_cast<const void*>(flash_backward_kv_kernel<HDP>), kv_shared);
  set_shared(reinterpret_cast<const void*>(flash_backward_q_kernel<HDP>), q_shared);
  flash_backward_kv_kernel<HDP>
      <<<dim3(tiles, static_cast<unsigned>(batch * D.Hkv)), kThreads, kv_shared, s>>>(dout, qkv, lse, Dv, D,
                                                                                      dqkv);
  BN_CUDA_LAUNCHED();
  flash_backward_q_kernel<HDP><<<dim3(tiles, static_cast<unsigned>(batch * D.H)), kThreads, q_shared, s>>>(
      dout, qkv, lse, Dv, D, dqkv);
  BN_CUDA_LAUNCHED();
}

}  // namespace

void attention_forward(const float* qkv, const AttnDims& d, float* out, float* lse, cudaStream_t s) {
  const Dims D = dims_of(d);
  if (d.seq == 0 || d.batch == 0) return;
  if (D.hd <= 16) return forward_hdp<16>(qkv, D, d.batch, out, lse, s);
  if (D.hd <= 32) return forward_hdp<32>(qkv, D, d.batch, out, lse, s);
  if (D.hd <= 64) return forward_hdp<64>(qkv, D, d.batch, out, lse, s);
  forward_hdp<128>(qkv, D, d.batch, out, lse, s);
}

void attention_backward(const float* dout, const float* qkv, const float* out, const float* lse,
                        const AttnDims& d, float* Dv, float* dqkv, cudaStream_t s) {
  const Dims D = dims_of(d);
  if (d.seq == 0 || d.batch == 0) return;
  const int64_t rows = d.batch * d.seq * D.H;
  constexpr int kRowThreads = 256;
  rowdot_kernel<<<static_cast<unsigned>((rows + kRowThreads / 32 - 1) / (kRowThreads / 32)), kRowThreads, 0,
                  s>>>(dout, out, rows, D.H, D.hd, D.seq, Dv);
  BN_CUDA_LAUNCHED();
  if (D.hd <= 16) return backward_hdp<16>(dout, qkv, lse, Dv, D, d.batch, dqkv, s);
  if (D.hd <= 32) return backward_hdp<32>(dout, qkv, lse, Dv, D, d.batch, dqkv, s);
  if (D.hd <= 64) return backward_hdp<64>(dout, qkv, lse, Dv, D, d.batch, dqkv, s);
  backward_hdp<128>(dout, qkv, lse, Dv, D, d.batch, dqkv, s);
}

}  // namespace bitnet::cuda::kern
