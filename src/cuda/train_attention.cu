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
// Up to HDP 64 the kernels are held to 168 registers, so three blocks (12 warps) share a
// multiprocessor; at 128 that would spill heavily, so one block is the floor there.
template <int HDP>
constexpr int kMinBlocks = HDP <= 64 ? 3 : 1;

using FragA = wm::fragment<wm::matrix_a, 16, 16, 16, bf16, wm::row_major>;
using FragAT = wm::fragment<wm::matrix_a, 16, 16, 16, bf16, wm::col_major>;
using FragB = wm::fragment<wm::matrix_b, 16, 16, 16, bf16, wm::row_major>;
using FragBT = wm::fragment<wm::matrix_b, 16, 16, 16, bf16, wm::col_major>;
using FragC = wm::fragment<wm::accumulator, 16, 16, 16, float>;

struct Dims {
  int64_t seq, H, Hkv, hd, group, q_dim, kv_dim, C;
  int64_t nh;  // heads per row of the padded bf16 copy of qkv: H + 2 Hkv
  float scale;
  bool accumulate;  // backward: add into dqkv (else write it)
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
  r.nh = d.n_head + 2 * d.n_head_kv;
  r.scale = d.scale;
  r.accumulate = true;
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

// The kernels read Q, K, V and dO from bf16 copies with every head padded to HDP columns
// ([T][heads][HDP], to_heads_kernel): a tile row is HDP / 8 aligned 16-byte pieces, and the padding
// columns are zero, so they add nothing to any product.

// A 64-row tile of one head in flight through registers: fetch issues the loads (rows past
// rows_left read as zero), put stores them to shared memory. Fetching the next tile before
// computing on the current one hides the loads' latency behind the products.
template <int HDP>
struct TileRegs {
  static constexpr int kRowPieces = HDP / 8, kPieces = kTile * kRowPieces / kThreads;
  uint4 v[kPieces];
  __device__ void fetch(const bf16* __restrict__ src, int64_t stride, int64_t rows_left) {
#pragma unroll
    for (int i = 0; i < kPieces; ++i) {
      const int e = threadIdx.x + i * kThreads, r = e / kRowPieces, c = e % kRowPieces * 8;
      v[i] = r < rows_left ? *reinterpret_cast<const uint4*>(src + r * stride + c) : make_uint4(0, 0, 0, 0);
    }
  }
  __device__ void put(bf16* __restrict__ dst) const {
#pragma unroll
    for (int i = 0; i < kPieces; ++i) {
      const int e = threadIdx.x + i * kThreads, r = e / kRowPieces, c = e % kRowPieces * 8;
      *reinterpret_cast<uint4*>(dst + r * Ld<HDP>::h + c) = v[i];
    }
  }
};

// The softmax's shared-memory traffic in 16-byte pieces (each lane's 32 columns, or HDP / 2 output
// columns, start 16-byte aligned: every row pitch and half-row offset is a multiple of 16 bytes).
template <int N>
__device__ void load_floats(const float* __restrict__ p, float (&v)[N]) {
  static_assert(N % 4 == 0);
#pragma unroll
  for (int j = 0; j < N / 4; ++j) {
    const float4 f = reinterpret_cast<const float4*>(p)[j];
    v[4 * j] = f.x;
    v[4 * j + 1] = f.y;
    v[4 * j + 2] = f.z;
    v[4 * j + 3] = f.w;
  }
}

// bf16(v[c]) to p[c], rounded to nearest as __float2bfloat16.
__device__ void store_bf16x32(bf16* __restrict__ p, const float (&v)[32]) {
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    uint4 u;
    unsigned* w = &u.x;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const __nv_bfloat162 h = __floats2bfloat162_rn(v[8 * j + 2 * k], v[8 * j + 2 * k + 1]);
      w[k] = *reinterpret_cast<const unsigned*>(&h);
    }
    reinterpret_cast<uint4*>(p)[j] = u;
  }
}

// 2^x in one instruction (ex2.approx, relative error about 2^-22, far below bf16's 2^-9); 2^-inf = 0.
__device__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// dst[t][j][c] = bf16(src[t * stride + j * hd + c]) for c < hd, zero for hd <= c < HDP. Block t:
// row t (HDP a power of two: no index division).
template <int HDP>
__global__ void to_heads_kernel(const float* __restrict__ src, int64_t stride, int heads, int hd,
                                bf16* __restrict__ dst) {
  const int64_t t = blockIdx.x;
  for (int e = threadIdx.x; e < heads * HDP; e += blockDim.x) {
    const int j = e / HDP, c = e % HDP;
    dst[t * heads * HDP + e] = __float2bfloat16(c < hd ? src[t * stride + j * hd + c] : 0.0f);
  }
}

// out[16][64] (fp32, ld Ld::s) = A[16][HDP] . B[64][HDP]^T, both bf16 row-major with ld Ld::h.
// kOuter: the reduction outermost, four independent accumulator chains and every load ahead of
// the stores (which the compiler cannot move loads across, not knowing that they never alias).
// Otherwise one output tile at a time: fewer live registers, for the dK/dV kernel, which holds
// two sets of accumulators besides (with kOuter it spills at three blocks per multiprocessor).
template <int HDP, bool kOuter>
__device__ void rows_times_rows_t(const bf16* a, const bf16* b, float* out) {
  constexpr int LDH = Ld<HDP>::h;
  if constexpr (!kOuter) {
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
  } else {
    FragC acc[kTile / 16];
#pragma unroll
    for (int n = 0; n < kTile / 16; ++n) wm::fill_fragment(acc[n], 0.0f);
#pragma unroll
    for (int k = 0; k < HDP / 16; ++k) {
      FragA fa;
      wm::load_matrix_sync(fa, a + k * 16, LDH);
#pragma unroll
      for (int n = 0; n < kTile / 16; ++n) {
        FragBT fb;
        wm::load_matrix_sync(fb, b + n * 16 * LDH + k * 16, LDH);
        wm::mma_sync(acc[n], fa, fb, acc[n]);
      }
    }
#pragma unroll
    for (int n = 0; n < kTile / 16; ++n)
      wm::store_matrix_sync(out + n * 16, acc[n], Ld<HDP>::s, wm::mem_row_major);
  }
}

// A warp's [16][HDP] accumulators added into global rows through its fp32 strip: lane (r, half) adds
// row r's columns [half * HDP / 2, ...) below hd to g (null: a padding row, nothing added).
template <int HDP>
__device__ void add_fragments(const FragC (&f)[HDP / 16], float* strip, float* g, int64_t hd, int r, int half,
                              bool accumulate) {
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
      if (col < hd) g[col] = accumulate ? g[col] + strip[r * Ld<HDP>::s + col] : strip[r * Ld<HDP>::s + col];
    }
  }
}

// Block (nq - 1 - x, b * H + h): query tile qt against key tiles 0..qt (the longest tiles start
// first). Writes out (normalized) and lse[bh][row] = log sum_j exp(scale q.k_j).
template <int HDP>
__global__ void __launch_bounds__(kThreads, kMinBlocks<HDP>)
    flash_forward_kernel(const bf16* __restrict__ qh, Dims D, float* __restrict__ out,
                         float* __restrict__ lse) {
  constexpr int LDH = Ld<HDP>::h, LDP = Ld<HDP>::p, LDS = Ld<HDP>::s, HALF = HDP / 2;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* Qs = reinterpret_cast<bf16*>(smem);
  bf16* Ks = Qs + kTile * LDH;
  bf16* Vs = Ks + kTile * LDH;
  bf16* Ps = Vs + kTile * LDH;
  float* Ss = reinterpret_cast<float*>(Ps + kTile * LDP);

  const int64_t nq = (D.seq + kTile - 1) / kTile, qt = nq - 1 - blockIdx.x, bh = blockIdx.y;
  const int64_t b = bh / D.H, h = bh % D.H, kvh = h / D.group, RS = D.nh * HDP;
  const bf16* base = qh + b * D.seq * RS;
  const int64_t q0 = qt * kTile, koff = (D.H + kvh) * HDP, voff = (D.H + D.Hkv + kvh) * HDP;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r = lane >> 1, half = lane & 1;
  const int64_t qi = q0 + warp * 16 + r;  // this lane's query row (two lanes per row)
  float* Sw = Ss + warp * 16 * LDS;
  bf16* Pw = Ps + warp * 16 * LDP;
  const float sl2 = D.scale * kLog2e;  // scores in base-2 units: 2^x is one instruction

  TileRegs<HDP> kr, vr;
  kr.fetch(base + q0 * RS + h * HDP, RS, D.seq - q0);
  kr.put(Qs);  // Q, through the K registers (the loop's first barrier orders it)
  kr.fetch(base + koff, RS, D.seq);
  vr.fetch(base + voff, RS, D.seq);
  float m = -INFINITY, l = 0.0f, o[HALF];
#pragma unroll
  for (int c = 0; c < HALF; ++c) o[c] = 0.0f;

  for (int64_t kt = 0; kt <= qt; ++kt) {
    const int64_t k0 = kt * kTile;
    __syncthreads();  // every warp is done with the previous K and V
    kr.put(Ks);
    vr.put(Vs);
    __syncthreads();
    if (kt < qt) {  // the next tile's loads fly while this one is computed
      kr.fetch(base + (k0 + kTile) * RS + koff, RS, D.seq - k0 - kTile);
      vr.fetch(base + (k0 + kTile) * RS + voff, RS, D.seq - k0 - kTile);
    }
    rows_times_rows_t<HDP, true>(Qs + warp * 16 * LDH, Ks, Sw);
    __syncwarp();
    // Online softmax of this lane's 32 columns. Key 0 is never masked, so m is finite after the
    // first tile, also for the padding rows past seq (whose results are dropped).
    float s[32], mt = -INFINITY;
    load_floats(Sw + r * LDS + half * 32, s);
#pragma unroll
    for (int c = 0; c < 32; ++c) {
      const int64_t kj = k0 + half * 32 + c;
      s[c] = (kj > qi || kj >= D.seq) ? -INFINITY : s[c] * sl2;
      mt = fmaxf(mt, s[c]);
    }
    mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 1));
    const float mn = fmaxf(m, mt), alpha = fast_exp2(m - mn);
    float ls = 0.0f;
#pragma unroll
    for (int c = 0; c < 32; ++c) {
      s[c] = fast_exp2(s[c] - mn);
      ls += s[c];
    }
    store_bf16x32(Pw + r * LDP + half * 32, s);
    ls += __shfl_xor_sync(0xffffffffu, ls, 1);
    l = l * alpha + ls;
    m = mn;
#pragma unroll
    for (int c = 0; c < HALF; ++c) o[c] *= alpha;
    __syncwarp();
    // This tile's P V into Sw (the scores are consumed), then added to the lane's outputs.
    {  // as in rows_times_rows_t: the reduction outermost, independent chains, stores last
      FragC acc[HDP / 16];
#pragma unroll
      for (int n = 0; n < HDP / 16; ++n) wm::fill_fragment(acc[n], 0.0f);
#pragma unroll
      for (int k = 0; k < kTile / 16; ++k) {
        FragA fa;
        wm::load_matrix_sync(fa, Pw + k * 16, LDP);
#pragma unroll
        for (int n = 0; n < HDP / 16; ++n) {
          FragB fb;
          wm::load_matrix_sync(fb, Vs + k * 16 * LDH + n * 16, LDH);
          wm::mma_sync(acc[n], fa, fb, acc[n]);
        }
      }
#pragma unroll
      for (int n = 0; n < HDP / 16; ++n) wm::store_matrix_sync(Sw + n * 16, acc[n], LDS, wm::mem_row_major);
    }
    __syncwarp();
    float t[HALF];
    load_floats(Sw + r * LDS + half * HALF, t);
#pragma unroll
    for (int c = 0; c < HALF; ++c) o[c] += t[c];
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
__global__ void __launch_bounds__(kThreads, kMinBlocks<HDP>)
    flash_backward_kv_kernel(const bf16* __restrict__ doh, const bf16* __restrict__ qh,
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
  const int64_t b = bk / D.Hkv, kvh = bk % D.Hkv, RS = D.nh * HDP, DS = D.H * HDP;
  const bf16* base = qh + b * D.seq * RS;
  const bf16* dbase = doh + b * D.seq * DS;
  const int64_t k0 = kt * kTile, koff = D.q_dim + kvh * D.hd, voff = D.q_dim + D.kv_dim + kvh * D.hd;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r = lane >> 1, half = lane & 1;
  const int64_t kj = k0 + warp * 16 + r;  // this lane's key row
  float* Sw = St + warp * 16 * LDS;
  bf16* Pw = Pt + warp * 16 * LDP;
  bf16* dSw = dSt + warp * 16 * LDP;
  const float sl2 = D.scale * kLog2e;

  TileRegs<HDP> qr, dr;
  qr.fetch(base + k0 * RS + (D.H + kvh) * HDP, RS, D.seq - k0);
  dr.fetch(base + k0 * RS + (D.H + D.Hkv + kvh) * HDP, RS, D.seq - k0);
  qr.put(Ks);  // K and V through the Q and dO registers (the loop's first barrier orders them)
  dr.put(Vs);
  FragC dK[NF], dV[NF];
#pragma unroll
  for (int n = 0; n < NF; ++n) {
    wm::fill_fragment(dK[n], 0.0f);
    wm::fill_fragment(dV[n], 0.0f);
  }

  // The (head, query tile) steps in order: the group's heads, each with query tiles kt..nq-1.
  const int64_t per_head = nq - kt, steps = D.group * per_head;
  float lse_r = 0.0f, d_r = 0.0f;  // thread < 64: its query row's lse and D, in flight
  auto fetch = [&](int64_t step) {
    const int64_t h = kvh * D.group + step / per_head, q0 = (kt + step % per_head) * kTile;
    qr.fetch(base + q0 * RS + h * HDP, RS, D.seq - q0);
    dr.fetch(dbase + q0 * DS + h * HDP, DS, D.seq - q0);
    const int64_t qi = q0 + threadIdx.x, bh = b * D.H + h;
    if (threadIdx.x < kTile && qi < D.seq) {
      lse_r = lse[bh * D.seq + qi] * kLog2e;
      d_r = Dv[bh * D.seq + qi];
    } else {
      lse_r = d_r = 0.0f;
    }
  };
  fetch(0);
  for (int64_t step = 0; step < steps; ++step) {
    {
      const int64_t q0 = (kt + step % per_head) * kTile;
      __syncthreads();  // every warp is done with the previous Q, dO, lse and D
      qr.put(Qs);
      dr.put(dOs);
      if (threadIdx.x < kTile) {
        lse_s[threadIdx.x] = lse_r;
        D_s[threadIdx.x] = d_r;
      }
      __syncthreads();
      if (step + 1 < steps) fetch(step + 1);
      // S^T = K_w Q^T, then P^T = exp(S^T - lse) where the query may see the key.
      rows_times_rows_t<HDP, false>(Ks + warp * 16 * LDH, Qs, Sw);
      __syncwarp();
      float p[32], v[32];
      load_floats(Sw + r * LDS + half * 32, p);
      load_floats(lse_s + half * 32, v);
#pragma unroll
      for (int c = 0; c < 32; ++c) {
        const int64_t qi = q0 + half * 32 + c;
        p[c] = (qi >= kj && qi < D.seq) ? fast_exp2(p[c] * sl2 - v[c]) : 0.0f;
      }
      store_bf16x32(Pw + r * LDP + half * 32, p);
      __syncwarp();
      // dP^T = V_w dO^T, then dS^T = P^T (dP^T - D) scale (the scale of the scores folded in).
      rows_times_rows_t<HDP, false>(Vs + warp * 16 * LDH, dOs, Sw);
      __syncwarp();
      {
        float dp[32];
        load_floats(Sw + r * LDS + half * 32, dp);
        load_floats(D_s + half * 32, v);
#pragma unroll
        for (int c = 0; c < 32; ++c) dp[c] = p[c] * (dp[c] - v[c]) * D.scale;
        store_bf16x32(dSw + r * LDP + half * 32, dp);
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
  add_fragments<HDP>(dK, Sw, kj < D.seq ? drow + koff : nullptr, D.hd, r, half, D.accumulate);
  add_fragments<HDP>(dV, Sw, kj < D.seq ? drow + voff : nullptr, D.hd, r, half, D.accumulate);
}

// Block (nq - 1 - x, b * H + h): dQ of query tile qt from key tiles 0..qt, recomputing P and dP;
// each warp keeps dQ of its 16 rows in accumulator fragments.
template <int HDP>
__global__ void __launch_bounds__(kThreads, kMinBlocks<HDP>)
    flash_backward_q_kernel(const bf16* __restrict__ doh, const bf16* __restrict__ qh,
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
  const int64_t b = bh / D.H, h = bh % D.H, kvh = h / D.group, RS = D.nh * HDP, DS = D.H * HDP;
  const bf16* base = qh + b * D.seq * RS;
  const int64_t q0 = qt * kTile, koff = (D.H + kvh) * HDP, voff = (D.H + D.Hkv + kvh) * HDP;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r = lane >> 1, half = lane & 1;
  const int64_t qi = q0 + warp * 16 + r;
  float* Sw = Ss + warp * 16 * LDS;
  bf16* dSw = dSs + warp * 16 * LDP;
  const float sl2 = D.scale * kLog2e;

  TileRegs<HDP> kr, vr;
  kr.fetch(base + q0 * RS + h * HDP, RS, D.seq - q0);
  vr.fetch(doh + (b * D.seq + q0) * DS + h * HDP, DS, D.seq - q0);
  kr.put(Qs);  // Q and dO through the K and V registers (the loop's first barrier orders them)
  vr.put(dOs);
  kr.fetch(base + koff, RS, D.seq);
  vr.fetch(base + voff, RS, D.seq);
  const float lse_row = qi < D.seq ? lse[bh * D.seq + qi] * kLog2e : 0.0f;
  const float d_row = qi < D.seq ? Dv[bh * D.seq + qi] : 0.0f;
  FragC dQ[NF];
#pragma unroll
  for (int n = 0; n < NF; ++n) wm::fill_fragment(dQ[n], 0.0f);

  for (int64_t kt = 0; kt <= qt; ++kt) {
    const int64_t k0 = kt * kTile;
    __syncthreads();
    kr.put(Ks);
    vr.put(Vs);
    __syncthreads();
    if (kt < qt) {
      kr.fetch(base + (k0 + kTile) * RS + koff, RS, D.seq - k0 - kTile);
      vr.fetch(base + (k0 + kTile) * RS + voff, RS, D.seq - k0 - kTile);
    }
    rows_times_rows_t<HDP, true>(Qs + warp * 16 * LDH, Ks, Sw);
    __syncwarp();
    float p[32];
    load_floats(Sw + r * LDS + half * 32, p);
#pragma unroll
    for (int c = 0; c < 32; ++c) {
      const int64_t kj = k0 + half * 32 + c;
      p[c] = (kj <= qi && qi < D.seq) ? fast_exp2(p[c] * sl2 - lse_row) : 0.0f;
    }
    __syncwarp();
    rows_times_rows_t<HDP, true>(dOs + warp * 16 * LDH, Vs, Sw);
    __syncwarp();
    {
      float dp[32];
      load_floats(Sw + r * LDS + half * 32, dp);
#pragma unroll
      for (int c = 0; c < 32; ++c) dp[c] = p[c] * (dp[c] - d_row) * D.scale;
      store_bf16x32(dSw + r * LDP + half * 32, dp);
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
  add_fragments<HDP>(dQ, Sw, qi < D.seq ? dqkv + (b * D.seq + qi) * D.C + h * D.hd : nullptr, D.hd, r, half,
                     D.accumulate);
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

int64_t hdp_of(int64_t hd) {
  return hd <= 16 ? 16 : hd <= 32 ? 32 : hd <= 64 ? 64 : 128;
}

size_t align256(size_t n) {
  return (n + 255) / 256 * 256;
}

// The scratch: the padded bf16 copy of qkv, then (backward) of dout, then D per row.
struct Scratch {
  bf16* qh;
  bf16* doh;
  float* Dv;
};

size_t qh_bytes(const Dims& D, int64_t batch) {
  return align256(sizeof(bf16) * static_cast<size_t>(batch * D.seq * D.nh * hdp_of(D.hd)));
}
size_t doh_bytes(const Dims& D, int64_t batch) {
  return align256(sizeof(bf16) * static_cast<size_t>(batch * D.seq * D.H * hdp_of(D.hd)));
}

Scratch carve(void* scratch, const Dims& D, int64_t batch) {
  auto* p = static_cast<unsigned char*>(scratch);
  const size_t a = qh_bytes(D, batch), b = doh_bytes(D, batch);
  return Scratch{reinterpret_cast<bf16*>(p), reinterpret_cast<bf16*>(p + a),
                 reinterpret_cast<float*>(p + a + b)};
}

void to_heads(const float* src, int64_t T, int64_t stride, int64_t heads, int64_t hd, bf16* dst,
              cudaStream_t s) {
  constexpr int kConvThreads = 256;
  const unsigned grid = static_cast<unsigned>(T);
  const int h = static_cast<int>(heads), d = static_cast<int>(hd);
  switch (hdp_of(hd)) {
    case 16:
      to_heads_kernel<16><<<grid, kConvThreads, 0, s>>>(src, stride, h, d, dst);
      break;
    case 32:
      to_heads_kernel<32><<<grid, kConvThreads, 0, s>>>(src, stride, h, d, dst);
      break;
    case 64:
      to_heads_kernel<64><<<grid, kConvThreads, 0, s>>>(src, stride, h, d, dst);
      break;
    default:
      to_heads_kernel<128><<<grid, kConvThreads, 0, s>>>(src, stride, h, d, dst);
      break;
  }
  BN_CUDA_LAUNCHED();
}

template <int HDP>
void forward_hdp(const bf16* qh, const Dims& D, int64_t batch, float* out, float* lse, cudaStream_t s) {
  const size_t shared = forward_smem<HDP>();
  set_shared(reinterpret_cast<const void*>(flash_forward_kernel<HDP>), shared);
  const dim3 grid(static_cast<unsigned>((D.seq + kTile - 1) / kTile), static_cast<unsigned>(batch * D.H));
  flash_forward_kernel<HDP><<<grid, kThreads, shared, s>>>(qh, D, out, lse);
  BN_CUDA_LAUNCHED();
}

template <int HDP>
void backward_hdp(const bf16* doh, const bf16* qh, const float* lse, const float* Dv, const Dims& D,
                  int64_t batch, float* dqkv, cudaStream_t s) {
  const unsigned tiles = static_cast<unsigned>((D.seq + kTile - 1) / kTile);
  const size_t kv_shared = backward_kv_smem<HDP>(), q_shared = backward_q_smem<HDP>();
  set_shared(reinterpret_cast<const void*>(flash_backward_kv_kernel<HDP>), kv_shared);
  set_shared(reinterpret_cast<const void*>(flash_backward_q_kernel<HDP>), q_shared);
  flash_backward_kv_kernel<HDP>
      <<<dim3(tiles, static_cast<unsigned>(batch * D.Hkv)), kThreads, kv_shared, s>>>(doh, qh, lse, Dv, D,
                                                                                      dqkv);
  BN_CUDA_LAUNCHED();
  flash_backward_q_kernel<HDP>
      <<<dim3(tiles, static_cast<unsigned>(batch * D.H)), kThreads, q_shared, s>>>(doh, qh, lse, Dv, D, dqkv);
  BN_CUDA_LAUNCHED();
}

}  // namespace

size_t attention_scratch(const AttnDims& d, bool backward) {
  const Dims D = dims_of(d);
  size_t n = qh_bytes(D, d.batch);
  if (backward) n += doh_bytes(D, d.batch) + sizeof(float) * static_cast<size_t>(d.batch * D.H * D.seq);
  return n;
}

void attention_forward(const float* qkv, const AttnDims& d, float* out, float* lse, void* scratch,
                       cudaStream_t s) {
  const Dims D = dims_of(d);
  if (d.seq == 0 || d.batch == 0) return;
  const Scratch sc = carve(scratch, D, d.batch);
  to_heads(qkv, d.batch * D.seq, D.C, D.nh, D.hd, sc.qh, s);
  switch (hdp_of(D.hd)) {
    case 16:
      return forward_hdp<16>(sc.qh, D, d.batch, out, lse, s);
    case 32:
      return forward_hdp<32>(sc.qh, D, d.batch, out, lse, s);
    case 64:
      return forward_hdp<64>(sc.qh, D, d.batch, out, lse, s);
    default:
      return forward_hdp<128>(sc.qh, D, d.batch, out, lse, s);
  }
}

void attention_backward(const float* dout, const float* qkv, const float* out, const float* lse,
                        const AttnDims& d, void* scratch, float* dqkv, bool accumulate, cudaStream_t s) {
  Dims D = dims_of(d);
  D.accumulate = accumulate;
  if (d.seq == 0 || d.batch == 0) return;
  const Scratch sc = carve(scratch, D, d.batch);
  const int64_t T = d.batch * D.seq, rows = T * D.H;
  to_heads(qkv, T, D.C, D.nh, D.hd, sc.qh, s);
  to_heads(dout, T, D.q_dim, D.H, D.hd, sc.doh, s);
  constexpr int kRowThreads = 256;
  rowdot_kernel<<<static_cast<unsigned>((rows + kRowThreads / 32 - 1) / (kRowThreads / 32)), kRowThreads, 0,
                  s>>>(dout, out, rows, D.H, D.hd, D.seq, sc.Dv);
  BN_CUDA_LAUNCHED();
  switch (hdp_of(D.hd)) {
    case 16:
      return backward_hdp<16>(sc.doh, sc.qh, lse, sc.Dv, D, d.batch, dqkv, s);
    case 32:
      return backward_hdp<32>(sc.doh, sc.qh, lse, sc.Dv, D, d.batch, dqkv, s);
    case 64:
      return backward_hdp<64>(sc.doh, sc.qh, lse, sc.Dv, D, d.batch, dqkv, s);
    default:
      return backward_hdp<128>(sc.doh, sc.qh, lse, sc.Dv, D, d.batch, dqkv, s);
  }
}

}  // namespace bitnet::cuda::kern
