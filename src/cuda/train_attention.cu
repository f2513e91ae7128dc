// Causal attention with grouped KV heads over the fused q|k|v buffer, tiled as FlashAttention-2:
// the forward keeps a running max and sum per query row (online softmax) and saves only the
// log-sum-exp, the backward recomputes the probabilities from it. The products run on the tensor
// cores (mma.sync, bf16 operands, fp32 accumulation); the softmax and every sum outside a product are
// fp32. So Q, K, V, dO and the probabilities are rounded to bf16 (8 significant bits) before each
// product, as in PyTorch's bf16 attention: results agree with the CPU's fp32 op to about 1e-3
// relative, not to fp32 rounding (tests/cuda/test_train_ops.cpp holds them to that).
//
// Tiles are 64 query rows by 64 key rows; a block of 4 warps owns a tile and each warp 16 of its
// rows. Scores, probabilities and their gradients stay in the warp's accumulator registers (a quad
// of lanes per row, reductions by shuffles) and feed the next product directly; only the Q, K, V
// and dO tiles pass through shared memory. The head dimension is padded with zeros to HDP (16, 32, 64 or
// 128), which changes no product. Deterministic, no atomics: dK and dV are summed by the block of their key
// tile (over the group's heads and the query tiles, in order), dQ by the block of its query tile (a second
// pass that recomputes the probabilities rather than adding across blocks).
#include <cuda_bf16.h>

#include "cuda/check.h"
#include "cuda/train_kernels.h"
#include "cuda/train_math.cuh"

namespace bitnet::cuda::kern {

namespace {

using bf16 = __nv_bfloat16;

constexpr int kTile = 64;
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
// Up to HDP 64 the kernels are held to 168 registers, so three blocks (12 warps) share a
// multiprocessor; at 128 that would spill heavily, so one block is the floor there.
template <int HDP>
constexpr int kMinBlocks = HDP <= 64 ? 3 : 1;

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

// The tiles' leading dimension (elements): ldmatrix reads eight 16-byte rows at once, and the +8
// padding puts them in eight different bank groups (a pitch of an odd number of 16-byte units).
// Each tile's size is a multiple of 128 bytes for every HDP, so the regions stay aligned.
template <int HDP>
struct Ld {
  static constexpr int h = HDP + 8;  // bf16 [64][h]: Q, K, V, dO tiles
  static constexpr size_t tile_h = size_t{kTile} * h * sizeof(bf16);
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

// 2^x in one instruction (ex2.approx, relative error about 2^-22, far below bf16's 2^-9); 2^-inf = 0.
__device__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// dst[t][j][c] = bf16(src.at(t, j * hd + c)) for c < hd, zero for hd <= c < HDP. Block t:
// row t (HDP a power of two: no index division). With a RoPE table (cs not null), the first
// rot_heads heads' columns below 2 half are rotated first, each element by the expression of
// rope_kernel (train_elementwise.cu) that writes it, so the copy is bit for bit rope then convert.
template <int HDP>
__global__ void to_heads_kernel(const ProductRows src, int heads, int hd, bf16* __restrict__ dst,
                                int rot_heads, int half, bool neox, int64_t seq, const float* __restrict__ cs,
                                const float* __restrict__ sn) {
  const int64_t t = blockIdx.x;
  const int64_t p = cs != nullptr ? t % seq : 0;
  for (int e = threadIdx.x; e < heads * HDP; e += blockDim.x) {
    const int j = e / HDP, c = e % HDP;
    float v = 0.0f;
    if (c < hd) {
      const int x = j * hd;  // the head's first column
      v = src.at(t, x + c);
      if (cs != nullptr && j < rot_heads && c < 2 * half) {
        const int i = neox ? (c < half ? c : c - half) : c / 2;
        const int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
        const float co = cs[p * half + i], si = sn[p * half + i], x0 = src.at(t, x + a),
                    x1 = src.at(t, x + b);
        v = c == a ? __fsub_rn(__fmul_rn(x0, co), __fmul_rn(x1, si))
                   : __fadd_rn(__fmul_rn(x0, si), __fmul_rn(x1, co));
      }
    }
    dst[t * heads * HDP + e] = __float2bfloat16(v);
  }
}

// to_heads_kernel four columns at a time (16-byte loads of the product, 8-byte stores), where hd and
// half are multiples of 4 and src is aligned4: the same expressions per element (dev::rope4), so the
// same bits.
template <int HDP>
__global__ void to_heads4_kernel(const ProductRows src, int heads, int hd, bf16* __restrict__ dst,
                                 int rot_heads, int half, bool neox, int64_t seq,
                                 const float* __restrict__ cs, const float* __restrict__ sn) {
  const int64_t t = blockIdx.x;
  const int64_t p = cs != nullptr ? t % seq : 0;
  for (int e = threadIdx.x; e < heads * HDP / 4; e += blockDim.x) {
    const int j = e / (HDP / 4), c = e % (HDP / 4) * 4;
    float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (c < hd) {
      const int x = j * hd;  // the head's first column
      const auto at4 = [&](int k) { return src.at4(t, x + k); };
      if (cs != nullptr && j < rot_heads && c < 2 * half)
        v = dev::rope4(at4, c, half, neox, cs + p * half, sn + p * half, /*inverse=*/false);
      else
        v = at4(c);
    }
    dev::store_bf16x4(dst + t * heads * HDP + e * 4, v);
  }
}

// ---- the warp's tensor-core products (mma.sync m16n8k16, bf16 operands, fp32 accumulation) ----
// Fragment layouts (PTX ISA, "matrix fragments for mma.m16n8k16"), with g = lane / 4, q = lane % 4:
// an accumulator of a 16 x 8 tile holds rows g and g + 8, columns 2q and 2q + 1; the A operand of
// a 16 x 16 slice holds the same rows, columns 2q, 2q + 1 and 8 + 2q, 8 + 2q + 1. So the
// accumulators of two neighbouring 16 x 8 score tiles, rounded to bf16 pairs, are the A operand of
// the next product as they stand: the softmax never leaves the registers.

__device__ __forceinline__ unsigned smem_addr(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

// Four 8 x 8 bf16 matrices from shared memory, lane i giving the address of row i % 8 of matrix
// i / 8; trans: each lane receives a column pair instead of a row pair.
__device__ __forceinline__ void ldsm_x4(unsigned (&r)[4], const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldsm_x4_trans(unsigned (&r)[4], const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

// c += a . b for one 16 x 8 x 16 step.
__device__ __forceinline__ void mma_bf16(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// bf16(lo) in the low half, bf16(hi) in the high half, each rounded to nearest.
__device__ __forceinline__ unsigned pack_bf16(float lo, float hi) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const unsigned*>(&h);
}

// s[8][4] = A[16][HDP] . B[64][HDP]^T: the 16 x 64 scores of a warp's rows (A: its 16 rows, B: a
// tile's 64 rows, both bf16 in shared memory with ld Ld::h).
template <int HDP>
__device__ void rows_times_rows_t(const bf16* a, const bf16* b, float (&s)[8][4], int lane) {
  constexpr int LDH = Ld<HDP>::h;
#pragma unroll
  for (int j = 0; j < 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
  for (int k = 0; k < HDP / 16; ++k) {
    unsigned fa[4];
    ldsm_x4(fa, a + (lane % 16) * LDH + k * 16 + (lane / 16) * 8);
#pragma unroll
    for (int np = 0; np < 4; ++np) {  // B's rows np * 16 .. + 15: two 8-column tiles of s
      unsigned fb[4];
      ldsm_x4(fb, b + (np * 16 + (lane / 16) * 8 + lane % 8) * LDH + k * 16 + (lane / 8) % 2 * 8);
      mma_bf16(s[2 * np], fa, fb[0], fb[1]);
      mma_bf16(s[2 * np + 1], fa, fb[2], fb[3]);
    }
  }
}

// The A operands of a 16 x 64 tile of accumulators (p) rounded to bf16: pa[k] covers columns
// 16 k .. 16 k + 15.
__device__ __forceinline__ void to_a_operands(const float (&p)[8][4], unsigned (&pa)[4][4]) {
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    pa[k][0] = pack_bf16(p[2 * k][0], p[2 * k][1]);
    pa[k][1] = pack_bf16(p[2 * k][2], p[2 * k][3]);
    pa[k][2] = pack_bf16(p[2 * k + 1][0], p[2 * k + 1][1]);
    pa[k][3] = pack_bf16(p[2 * k + 1][2], p[2 * k + 1][3]);
  }
}

// acc[HDP / 8][4] += P[16][64] . B[64][HDP]: P as A operands (to_a_operands), B a tile of 64 rows
// in shared memory (ld Ld::h), read transposed by ldmatrix.
template <int HDP>
__device__ void p_times_rows(const unsigned (&pa)[4][4], const bf16* b, float (&acc)[HDP / 8][4], int lane) {
  constexpr int LDH = Ld<HDP>::h;
#pragma unroll
  for (int k = 0; k < 4; ++k) {
#pragma unroll
    for (int np = 0; np < HDP / 16; ++np) {
      unsigned fb[4];
      ldsm_x4_trans(fb, b + (k * 16 + lane % 16) * LDH + np * 16 + (lane / 16) * 8);
      mma_bf16(acc[2 * np], pa[k], fb[0], fb[1]);
      mma_bf16(acc[2 * np + 1], pa[k], fb[2], fb[3]);
    }
  }
}

// A warp's [16][HDP] accumulators into global rows: row a holds the lane's row g, row b row g + 8
// (null: a padding row past seq, nothing written); columns below hd, added to or written.
template <int HDP>
__device__ void store_rows(const float (&acc)[HDP / 8][4], float* row_a, float* row_b, int64_t hd, int lane,
                           bool accumulate) {
#pragma unroll
  for (int n = 0; n < HDP / 8; ++n) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int col = n * 8 + (lane % 4) * 2 + e;
      if (col >= hd) continue;
      if (row_a != nullptr) row_a[col] = accumulate ? row_a[col] + acc[n][e] : acc[n][e];
      if (row_b != nullptr) row_b[col] = accumulate ? row_b[col] + acc[n][2 + e] : acc[n][2 + e];
    }
  }
}

// Block (nq - 1 - x, b * H + h): query tile qt against key tiles 0..qt (the longest tiles start
// first). Each warp owns 16 query rows; its lanes hold rows g and g + 8 of them (a quad of lanes
// per row), scores, probabilities and outputs in registers. Writes out (normalized) and
// lse[bh][row] = log sum_j exp(scale q.k_j).
template <int HDP>
__global__ void __launch_bounds__(kThreads, kMinBlocks<HDP>)
    flash_forward_kernel(const bf16* __restrict__ qh, Dims D, float* __restrict__ out,
                         float* __restrict__ lse) {
  constexpr int LDH = Ld<HDP>::h, NO = HDP / 8;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* Qs = reinterpret_cast<bf16*>(smem);
  bf16* Ks = Qs + kTile * LDH;
  bf16* Vs = Ks + kTile * LDH;

  const int64_t nq = (D.seq + kTile - 1) / kTile, qt = nq - 1 - blockIdx.x, bh = blockIdx.y;
  const int64_t b = bh / D.H, h = bh % D.H, kvh = h / D.group, RS = D.nh * HDP;
  const bf16* base = qh + b * D.seq * RS;
  const int64_t q0 = qt * kTile, koff = (D.H + kvh) * HDP, voff = (D.H + D.Hkv + kvh) * HDP;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t qa = q0 + warp * 16 + lane / 4, qb = qa + 8;  // this lane's two query rows
  const float sl2 = D.scale * kLog2e;                         // scores in base-2 units

  TileRegs<HDP> kr, vr;
  kr.fetch(base + q0 * RS + h * HDP, RS, D.seq - q0);
  kr.put(Qs);  // Q, through the K registers (the loop's first barrier orders it)
  kr.fetch(base + koff, RS, D.seq);
  vr.fetch(base + voff, RS, D.seq);
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f}, o[NO][4];
#pragma unroll
  for (int n = 0; n < NO; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;

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
    float s[8][4];
    rows_times_rows_t<HDP>(Qs + warp * 16 * LDH, Ks, s, lane);
    // Online softmax. Only the diagonal tile masks (earlier tiles end before q0 <= seq - 1); key
    // k0 is never masked there, so m is finite after it, also for the padding rows past seq
    // (whose results are dropped).
    const bool diag = kt == qt;
    float mt[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t kj = k0 + j * 8 + (lane % 4) * 2 + (e & 1), qi = e < 2 ? qa : qb;
        s[j][e] = (diag && (kj > qi || kj >= D.seq)) ? -INFINITY : s[j][e] * sl2;
        mt[e / 2] = fmaxf(mt[e / 2], s[j][e]);
      }
    float alpha[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mt[r] = fmaxf(mt[r], __shfl_xor_sync(0xffffffffu, mt[r], 1));
      mt[r] = fmaxf(mt[r], __shfl_xor_sync(0xffffffffu, mt[r], 2));
      const float mn = fmaxf(m[r], mt[r]);
      alpha[r] = fast_exp2(m[r] - mn);
      m[r] = mn;
      l[r] *= alpha[r];  // this lane's part of the row sum: the quad's parts are added at the end
    }
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[j][e] = fast_exp2(s[j][e] - m[e / 2]);
        l[e / 2] += s[j][e];
      }
#pragma unroll
    for (int n = 0; n < NO; ++n) {
      o[n][0] *= alpha[0];
      o[n][1] *= alpha[0];
      o[n][2] *= alpha[1];
      o[n][3] *= alpha[1];
    }
    unsigned pa[4][4];
    to_a_operands(s, pa);
    p_times_rows<HDP>(pa, Vs, o, lane);
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
  }
  const float inv_a = 1.0f / l[0], inv_b = 1.0f / l[1];
#pragma unroll
  for (int n = 0; n < NO; ++n) {
    o[n][0] *= inv_a;
    o[n][1] *= inv_a;
    o[n][2] *= inv_b;
    o[n][3] *= inv_b;
  }
  float* oa = qa < D.seq ? out + (b * D.seq + qa) * D.q_dim + h * D.hd : nullptr;
  float* ob = qb < D.seq ? out + (b * D.seq + qb) * D.q_dim + h * D.hd : nullptr;
  store_rows<HDP>(o, oa, ob, D.hd, lane, false);
  if (lane % 4 == 0) {
    if (qa < D.seq) lse[bh * D.seq + qa] = (m[0] + log2f(l[0])) * kLn2;
    if (qb < D.seq) lse[bh * D.seq + qb] = (m[1] + log2f(l[1])) * kLn2;
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

// Block (kt, b * Hkv + kvh): key tile kt against the query tiles kt.. of every head of the group.
// Each warp owns 16 keys and keeps their dK and dV in accumulators; per (head, query tile) it
// forms S^T = K Q^T, P^T, dP^T = V dO^T and dS^T in registers, then dV += P^T dO, dK += dS^T Q.
template <int HDP>
__global__ void __launch_bounds__(kThreads, kMinBlocks<HDP>)
    flash_backward_kv_kernel(const bf16* __restrict__ doh, const bf16* __restrict__ qh,
                             const float* __restrict__ lse, const float* __restrict__ Dv, Dims D,
                             float* __restrict__ dqkv) {
  constexpr int LDH = Ld<HDP>::h, NO = HDP / 8;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* Ks = reinterpret_cast<bf16*>(smem);
  bf16* Vs = Ks + kTile * LDH;
  bf16* Qs = Vs + kTile * LDH;
  bf16* dOs = Qs + kTile * LDH;
  float* lse_s = reinterpret_cast<float*>(dOs + kTile * LDH);
  float* D_s = lse_s + kTile;

  const int64_t nq = (D.seq + kTile - 1) / kTile, kt = blockIdx.x, bk = blockIdx.y;
  const int64_t b = bk / D.Hkv, kvh = bk % D.Hkv, RS = D.nh * HDP, DS = D.H * HDP;
  const bf16* base = qh + b * D.seq * RS;
  const bf16* dbase = doh + b * D.seq * DS;
  const int64_t k0 = kt * kTile, koff = D.q_dim + kvh * D.hd, voff = D.q_dim + D.kv_dim + kvh * D.hd;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t ka = k0 + warp * 16 + lane / 4, kb = ka + 8;  // this lane's two key rows
  const float sl2 = D.scale * kLog2e;

  TileRegs<HDP> qr, dr;
  qr.fetch(base + k0 * RS + (D.H + kvh) * HDP, RS, D.seq - k0);
  dr.fetch(base + k0 * RS + (D.H + D.Hkv + kvh) * HDP, RS, D.seq - k0);
  qr.put(Ks);  // K and V through the Q and dO registers (the loop's first barrier orders them)
  dr.put(Vs);
  float dK[NO][4], dV[NO][4];
#pragma unroll
  for (int n = 0; n < NO; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) dK[n][e] = dV[n][e] = 0.0f;

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
    // S^T = K_w Q^T, then P^T = exp(S^T - lse) where the query may see the key (lse per column).
    float p[8][4];
    rows_times_rows_t<HDP>(Ks + warp * 16 * LDH, Qs, p, lane);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int c = j * 8 + (lane % 4) * 2;
      const float2 lv = *reinterpret_cast<const float2*>(lse_s + c);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t qi = q0 + c + (e & 1), kj = e < 2 ? ka : kb;
        p[j][e] = (qi >= kj && qi < D.seq) ? fast_exp2(p[j][e] * sl2 - ((e & 1) ? lv.y : lv.x)) : 0.0f;
      }
    }
    unsigned fa[4][4];
    to_a_operands(p, fa);
    p_times_rows<HDP>(fa, dOs, dV, lane);  // dV_w += P^T_w dO
    // dP^T = V_w dO^T, then dS^T = P^T (dP^T - D) scale (the scale of the scores folded in).
    float ds[8][4];
    rows_times_rows_t<HDP>(Vs + warp * 16 * LDH, dOs, ds, lane);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const float2 dv = *reinterpret_cast<const float2*>(D_s + j * 8 + (lane % 4) * 2);
#pragma unroll
      for (int e = 0; e < 4; ++e) ds[j][e] = p[j][e] * (ds[j][e] - ((e & 1) ? dv.y : dv.x)) * D.scale;
    }
    to_a_operands(ds, fa);
    p_times_rows<HDP>(fa, Qs, dK, lane);  // dK_w += dS^T_w Q
  }
  float* ra = ka < D.seq ? dqkv + (b * D.seq + ka) * D.C : nullptr;
  float* rb = kb < D.seq ? dqkv + (b * D.seq + kb) * D.C : nullptr;
  store_rows<HDP>(dK, ra ? ra + koff : nullptr, rb ? rb + koff : nullptr, D.hd, lane, D.accumulate);
  store_rows<HDP>(dV, ra ? ra + voff : nullptr, rb ? rb + voff : nullptr, D.hd, lane, D.accumulate);
}

// Block (nq - 1 - x, b * H + h): dQ of query tile qt from key tiles 0..qt, recomputing P and dP in
// registers; each warp keeps dQ of its 16 rows in accumulators.
template <int HDP>
__global__ void __launch_bounds__(kThreads, kMinBlocks<HDP>)
    flash_backward_q_kernel(const bf16* __restrict__ doh, const bf16* __restrict__ qh,
                            const float* __restrict__ lse, const float* __restrict__ Dv, Dims D,
                            float* __restrict__ dqkv) {
  constexpr int LDH = Ld<HDP>::h, NO = HDP / 8;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* Qs = reinterpret_cast<bf16*>(smem);
  bf16* dOs = Qs + kTile * LDH;
  bf16* Ks = dOs + kTile * LDH;
  bf16* Vs = Ks + kTile * LDH;

  const int64_t nq = (D.seq + kTile - 1) / kTile, qt = nq - 1 - blockIdx.x, bh = blockIdx.y;
  const int64_t b = bh / D.H, h = bh % D.H, kvh = h / D.group, RS = D.nh * HDP, DS = D.H * HDP;
  const bf16* base = qh + b * D.seq * RS;
  const int64_t q0 = qt * kTile, koff = (D.H + kvh) * HDP, voff = (D.H + D.Hkv + kvh) * HDP;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t qa = q0 + warp * 16 + lane / 4, qb = qa + 8;
  const float sl2 = D.scale * kLog2e;

  TileRegs<HDP> kr, vr;
  kr.fetch(base + q0 * RS + h * HDP, RS, D.seq - q0);
  vr.fetch(doh + (b * D.seq + q0) * DS + h * HDP, DS, D.seq - q0);
  kr.put(Qs);  // Q and dO through the K and V registers (the loop's first barrier orders them)
  vr.put(dOs);
  kr.fetch(base + koff, RS, D.seq);
  vr.fetch(base + voff, RS, D.seq);
  const float lse_row[2] = {qa < D.seq ? lse[bh * D.seq + qa] * kLog2e : 0.0f,
                            qb < D.seq ? lse[bh * D.seq + qb] * kLog2e : 0.0f};
  const float d_row[2] = {qa < D.seq ? Dv[bh * D.seq + qa] : 0.0f, qb < D.seq ? Dv[bh * D.seq + qb] : 0.0f};
  float dQ[NO][4];
#pragma unroll
  for (int n = 0; n < NO; ++n) dQ[n][0] = dQ[n][1] = dQ[n][2] = dQ[n][3] = 0.0f;

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
    float p[8][4], ds[8][4];
    rows_times_rows_t<HDP>(Qs + warp * 16 * LDH, Ks, p, lane);
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t kj = k0 + j * 8 + (lane % 4) * 2 + (e & 1), qi = e < 2 ? qa : qb;
        p[j][e] = (kj <= qi && qi < D.seq) ? fast_exp2(p[j][e] * sl2 - lse_row[e / 2]) : 0.0f;
      }
    rows_times_rows_t<HDP>(dOs + warp * 16 * LDH, Vs, ds, lane);
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) ds[j][e] = p[j][e] * (ds[j][e] - d_row[e / 2]) * D.scale;
    unsigned fa[4][4];
    to_a_operands(ds, fa);
    p_times_rows<HDP>(fa, Ks, dQ, lane);  // dQ_w += dS_w K
  }
  float* ra = qa < D.seq ? dqkv + (b * D.seq + qa) * D.C + h * D.hd : nullptr;
  float* rb = qb < D.seq ? dqkv + (b * D.seq + qb) * D.C + h * D.hd : nullptr;
  store_rows<HDP>(dQ, ra, rb, D.hd, lane, D.accumulate);
}

template <int HDP>
constexpr size_t forward_smem() {
  return 3 * Ld<HDP>::tile_h;
}
template <int HDP>
constexpr size_t backward_kv_smem() {
  return 4 * Ld<HDP>::tile_h + 2 * kTile * sizeof(float);
}
template <int HDP>
constexpr size_t backward_q_smem() {
  return 4 * Ld<HDP>::tile_h;
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

// The scratch of the float-input entry points: the padded bf16 copy of qkv, then (backward) of dout,
// then D per row, each 256-byte aligned.
size_t qh_bytes(const Dims& D, int64_t batch) {
  return align256(sizeof(bf16) * static_cast<size_t>(batch * D.seq * D.nh * hdp_of(D.hd)));
}
size_t doh_bytes(const Dims& D, int64_t batch) {
  return align256(sizeof(bf16) * static_cast<size_t>(batch * D.seq * D.H * hdp_of(D.hd)));
}

void to_heads(const ProductRows& src, int64_t T, int64_t heads, int64_t hd, bf16* dst, cudaStream_t s,
              const RopeArgs* rope = nullptr) {
  constexpr int kConvThreads = 256;
  const unsigned grid = static_cast<unsigned>(T);
  const int h = static_cast<int>(heads), d = static_cast<int>(hd);
  const bool on = rope != nullptr && rope->rope_dim > 0;
  const int rot = on ? static_cast<int>(rope->rot_heads) : 0,
            half = on ? static_cast<int>(rope->rope_dim / 2) : 0;
  const bool neox = on && rope->neox;
  const int64_t seq = on ? rope->seq : 1;
  const float* cs = on ? rope->cs : nullptr;
  const float* sn = on ? rope->sn : nullptr;
  // Four columns a thread where the head and the rotated half are whole groups of four; the table's
  // rows (half floats) then stay 16-byte aligned too.
  const bool by4 = d % 4 == 0 && half % 4 == 0 && src.aligned4() && reinterpret_cast<uintptr_t>(dst) % 8 == 0;
  auto launch = [&](auto one, auto four) {
    if (by4)
      four<<<grid, kConvThreads, 0, s>>>(src, h, d, dst, rot, half, neox, seq, cs, sn);
    else
      one<<<grid, kConvThreads, 0, s>>>(src, h, d, dst, rot, half, neox, seq, cs, sn);
  };
  switch (hdp_of(hd)) {
    case 16:
      launch(to_heads_kernel<16>, to_heads4_kernel<16>);
      break;
    case 32:
      launch(to_heads_kernel<32>, to_heads4_kernel<32>);
      break;
    case 64:
      launch(to_heads_kernel<64>, to_heads4_kernel<64>);
      break;
    default:
      launch(to_heads_kernel<128>, to_heads4_kernel<128>);
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

size_t attention_operands_bytes(const AttnDims& d) {
  return qh_bytes(dims_of(d), d.batch);
}

void attention_operands(const ProductRows& qkv, const AttnDims& d, const RopeArgs* rope, bf16_t* qh,
                        cudaStream_t s) {
  const Dims D = dims_of(d);
  if (d.seq == 0 || d.batch == 0) return;
  to_heads(qkv, d.batch * D.seq, D.nh, D.hd, reinterpret_cast<bf16*>(qh), s, rope);
}

void attention_operands(const float* qkv, const AttnDims& d, const RopeArgs* rope, bf16_t* qh,
                        cudaStream_t s) {
  attention_operands(ProductRows{.y = qkv, .ld = dims_of(d).C}, d, rope, qh, s);
}

void attention_forward_from(const bf16_t* qh_bits, const AttnDims& d, float* out, float* lse,
                            cudaStream_t s) {
  const Dims D = dims_of(d);
  if (d.seq == 0 || d.batch == 0) return;
  const bf16* qh = reinterpret_cast<const bf16*>(qh_bits);
  switch (hdp_of(D.hd)) {
    case 16:
      return forward_hdp<16>(qh, D, d.batch, out, lse, s);
    case 32:
      return forward_hdp<32>(qh, D, d.batch, out, lse, s);
    case 64:
      return forward_hdp<64>(qh, D, d.batch, out, lse, s);
    default:
      return forward_hdp<128>(qh, D, d.batch, out, lse, s);
  }
}

size_t attention_backward_scratch(const AttnDims& d) {
  const Dims D = dims_of(d);
  return doh_bytes(D, d.batch) + sizeof(float) * static_cast<size_t>(d.batch * D.H * D.seq);
}

void attention_backward_from(const float* dout, const bf16_t* qh_bits, const float* out, const float* lse,
                             const AttnDims& d, void* scratch, float* dqkv, bool accumulate, cudaStream_t s) {
  Dims D = dims_of(d);
  D.accumulate = accumulate;
  if (d.seq == 0 || d.batch == 0) return;
  const bf16* qh = reinterpret_cast<const bf16*>(qh_bits);
  auto* doh = static_cast<bf16*>(scratch);
  auto* Dv = reinterpret_cast<float*>(static_cast<unsigned char*>(scratch) + doh_bytes(D, d.batch));
  const int64_t T = d.batch * D.seq, rows = T * D.H;
  to_heads(ProductRows{.y = dout, .ld = D.q_dim}, T, D.H, D.hd, doh, s);
  constexpr int kRowThreads = 256;
  rowdot_kernel<<<static_cast<unsigned>((rows + kRowThreads / 32 - 1) / (kRowThreads / 32)), kRowThreads, 0,
                  s>>>(dout, out, rows, D.H, D.hd, D.seq, Dv);
  BN_CUDA_LAUNCHED();
  switch (hdp_of(D.hd)) {
    case 16:
      return backward_hdp<16>(doh, qh, lse, Dv, D, d.batch, dqkv, s);
    case 32:
      return backward_hdp<32>(doh, qh, lse, Dv, D, d.batch, dqkv, s);
    case 64:
      return backward_hdp<64>(doh, qh, lse, Dv, D, d.batch, dqkv, s);
    default:
      return backward_hdp<128>(doh, qh, lse, Dv, D, d.batch, dqkv, s);
  }
}

void attention_forward(const float* qkv, const AttnDims& d, float* out, float* lse, void* scratch,
                       cudaStream_t s) {
  auto* qh = static_cast<bf16_t*>(scratch);
  attention_operands(qkv, d, nullptr, qh, s);
  attention_forward_from(qh, d, out, lse, s);
}

void attention_backward(const float* dout, const float* qkv, const float* out, const float* lse,
                        const AttnDims& d, void* scratch, float* dqkv, bool accumulate, cudaStream_t s) {
  auto* qh = static_cast<bf16_t*>(scratch);
  attention_operands(qkv, d, nullptr, qh, s);
  attention_backward_from(dout, qh, out, lse, d,
                          static_cast<unsigned char*>(scratch) + attention_operands_bytes(d), dqkv,
                          accumulate, s);
}

}  // namespace bitnet::cuda::kern
